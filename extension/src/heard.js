// What a page measured it played of one stream, on its own clocks: the figures the kernel's
// result, the player's status line and the chart report (first audible sample after the
// request, stalls, seconds played) and where the first sound's time went.

/**
 * Where the first sound's time went, as [step, ms since the request] in order: the kernel's
 * steps (its own clock, counted from the request it sent ages from) then the page's (this
 * clock, from the request as estimated from the kernel's message ages). Steps not reached yet
 * are left out. `log` is the engine's schedule records.
 */
export function breakdown(stream, log, origin) {
  const steps = Object.entries(stream.desc.milestones || {});
  const first = stream.chunks.get(0);
  if (first) {
    if (typeof first.meta.made_ms === "number") steps.push(["first chunk made", first.meta.made_ms]);
    if (typeof first.meta.age_ms === "number") steps.push(["sent to the page", first.meta.age_ms]);
    steps.push(["received by the page", first.received - origin]);
  }
  const scheduled = log.find((r) => r.stream === stream.id && r.seq === 0);
  if (scheduled) steps.push(["scheduled", scheduled.scheduled_ms - origin]);
  if (stream.firstAudibleAt !== null) steps.push(["audible", stream.firstAudibleAt - origin]);
  return steps.map(([step, ms]) => [step, Math.round(ms * 10) / 10]);
}

/** The heard figures of `stream`; `seconds` holds what was played and received (seconds). */
export function heardFigures(stream, log, seconds) {
  let origin = stream.requestAt === null ? stream.joinedAt : stream.requestAt;
  let since = stream.origin;
  if (stream.lateJoin) [origin, since] = [stream.joinedAt, "page joined"];
  if (stream.queueOrigin !== null && stream.queueOrigin > origin) {
    [origin, since] = [stream.queueOrigin, "speech before it ended"];
  }
  const first = stream.firstAudibleAt === null ? null : stream.firstAudibleAt - origin;
  return {
    breakdown: since === stream.origin ? breakdown(stream, log, origin) : [],
    first_audible_ms: first === null ? null : Math.round(first),
    since,
    stalls: stream.stalls,
    stall_ms: Math.round(stream.stallS * 1000),
    largest_gap_ms: Math.round(stream.largestGapS * 1000),
    played_s: Math.round(seconds.played * 1000) / 1000,
    made_s: Math.round(seconds.received * 1000) / 1000,
    chunks: stream.scheduled.length,
    late_join: stream.lateJoin,
  };
}
