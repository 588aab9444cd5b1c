// The audio side of the streaming player: gapless Web Audio scheduling of PCM chunks, one
// page-wide queue of utterances, and the figures of what this page actually played.
//
// The rules:
// * Gapless: every chunk of a stream starts exactly where the previous one ends
//   (`start = nextTime; nextTime += duration`). Only a chunk that arrives after that moment has
//   passed (a stall) starts "as soon as possible" instead; the gap is counted as a stall.
// * Queued utterances: a stream that names a predecessor (`after`) starts when that one has
//   played out (plus CELL_GAP_S), so a notebook's speaking cells are heard one after another,
//   never over each other. A predecessor stopped, finished or unknown to this page holds
//   nothing back.
// * A stream this page first sees after it has ended (a reload, a tab opened later) is not
//   auto-played: it is offered, complete, behind one play button. One first seen while it is
//   still being made plays from its start.
// * Nothing plays unseen: audio is scheduled only while at least one view of the player (with
//   its Stop) is on the page; a view that appears later starts what was held.
// * Chunks that arrive while the AudioContext is suspended (autoplay policy) are kept in order
//   and scheduled, still gaplessly, once audio is enabled.
// * What was heard is measured here, on the page's clocks: first audible sample after the cell
//   ran, stalls (count and duration), seconds played. Those are the figures the user got.
//
// One engine exists per player model per page (however many views show it), so a widget
// displayed twice plays its audio once. This module knows nothing of the DOM or of Jupyter.

import { heardFigures } from "./heard.js";
import { PROTOCOL, audioToPage, getAudioContext, randomId, registry } from "./registry.js";
import { encodeWav } from "./wav.js";

export { PROTOCOL, getAudioContext, registry };
// The start margin of a chunk that starts at once (the first, or one after a stall), so it is
// never scheduled inside audio already rendered: one output buffer (the context's baseLatency,
// ~10 ms for "interactive") and one render quantum; LEAD_S where a context does not say.
export const LEAD_S = 0.03;
const RENDER_QUANTUM = 128;

/** The start margin on `ctx`: its output buffer plus one render quantum, never over LEAD_S. */
export function leadSeconds(ctx) {
  const base = ctx.baseLatency;
  if (!(base > 0) || !ctx.sampleRate) return LEAD_S;
  return Math.min(base + RENDER_QUANTUM / ctx.sampleRate, LEAD_S);
}
// Silence between two queued utterances (one cell's speech and the next).
export const CELL_GAP_S = 0.35;
// A gap shorter than this is scheduling jitter, not a stall a listener hears.
export const STALL_S = 0.005;
// An amplitude above this is audible (the engine's definition, metrics.AUDIBLE).
export const AUDIBLE = 0.02;
// A page that first sees a stream this long after its cell ran joined late (a reload, a tab
// opened afterwards, Voila): its first-sound figure then counts from when it joined.
export const LATE_JOIN_MS = 4000;

/** Index of the first audible sample, or -1. */
export function firstAudible(samples) {
  for (let i = 0; i < samples.length; i++) if (Math.abs(samples[i]) > AUDIBLE) return i;
  return -1;
}

export class PlayerEngine {
  /**
   * @param {object} options
   * @param {string} options.playerId   the Python player's id
   * @param {(msg: object) => void} options.send  message to the kernel (may never arrive while
   *        the kernel is busy: nothing on the path to sound waits for an answer)
   * @param {() => AudioContext} [options.context]  where audio goes (the page's shared context)
   * @param {() => number} [options.clock]  page milliseconds (performance.now)
   */
  constructor({ playerId, send, context = getAudioContext, clock = () => performance.now() }) {
    this.playerId = playerId;
    this.clientId = randomId();
    this.send = send;
    this.context = context;
    this.clock = clock;
    this.streams = new Map();
    this.current = null;
    this.log = []; // one record per scheduled chunk, all streams
    this.views = new Set();
    this.errors = [];
    this.ctx = null;
    registry().players[playerId] = this;
  }

  // -- what the kernel says (through the widget state) ------------------------------------------

  post(msg) {
    // Every report about a stream says when it was made, in ms since the request on this
    // page's clock (aligned once per stream by observeAge): the kernel reads reports only when
    // its main thread is free, and must not take a late report's buffer for a current one.
    const stream = msg.stream ? this.streams.get(msg.stream) : null;
    const age = stream && stream.requestAt !== null ? this.clock() - stream.requestAt : null;
    try {
      this.send({ ...msg, age_ms: age, client: this.clientId, protocol: PROTOCOL });
    } catch (error) {
      // The kernel side is gone (widget closed, kernel restarted): nothing to report to.
      this.errors.push(String(error));
    }
  }

  /**
   * The kernel's description of the player's current stream (the `stream` trait): called when
   * the page first sees the player and on every change. `seen` is the page time it arrived.
   */
  update(desc, seen = this.clock()) {
    if (!desc || !desc.id) return;
    let stream = this.streams.get(desc.id);
    if (!stream) stream = this.open(desc, seen);
    this.observeAge(stream, desc.age_ms, seen);
    stream.desc = desc;
    stream.total = desc.state === "live" ? null : desc.chunks;
    if (desc.state === "stopped") this.stop({ reason: desc.stop_reason || "stopped", stream: desc.id });
    if (desc.state !== "live") {
      stream.ended = true;
      stream.endInfo = desc.end || null;
    }
    this.checkDone(stream);
    registry().notify();
    this.changed();
  }

  open(desc, seen) {
    if (this.current && this.current !== desc.id) {
      this.stop({ reason: "replaced by a new utterance", stream: this.current });
    }
    const stream = {
      id: desc.id,
      order: desc.order ?? 0,
      after: desc.after || null,
      sampleRate: desc.sample_rate || 24000,
      label: desc.label || "",
      origin: desc.origin || "cell ran", // what the request was, for the figures' labels
      // Seen while still being made: it plays (from its start). Seen complete: it is offered.
      live: desc.state === "live",
      lateJoin: desc.state === "live" && (desc.age_ms ?? 0) > LATE_JOIN_MS && desc.chunks > 0,
      joinedAt: seen,
      desc,
      chunks: new Map(), // seq -> {samples, meta, received}
      pending: [], // seqs waiting to be scheduled (context, queue or start margin)
      sources: new Set(),
      requestAt: null, // page time the cell ran, estimated from the kernel's message ages
      queueOrigin: null, // page time the speech queued ahead of this one ended
      nextTime: null,
      firstStart: null,
      firstAudibleAt: null, // page time of the first audible sample
      scheduled: [], // {seq, start, duration, gap}
      stalls: 0,
      stallS: 0,
      largestGapS: 0,
      stoppedAt: null, // audio-clock time of a stop
      ended: false,
      endInfo: null,
      total: null,
      stopped: false,
      stopReason: "",
      done: false,
      reported: false,
      url: null,
    };
    this.streams.set(desc.id, stream);
    registry().streams.set(desc.id, stream);
    this.current = desc.id;
    return stream;
  }

  /** Each kernel message says how long after the cell ran it was sent; the earliest arrival
   * minus its age is the best estimate of when the cell ran, on this page's clock. */
  observeAge(stream, ageMs, seen) {
    if (typeof ageMs !== "number") return;
    const candidate = seen - ageMs;
    if (stream.requestAt === null || candidate < stream.requestAt) stream.requestAt = candidate;
  }

  /** One chunk of a stream (from its chunk model): float32 samples and the kernel's metadata. */
  addChunk(streamId, seq, samples, meta = {}, received = this.clock()) {
    const stream = this.streams.get(streamId);
    if (!stream || stream.chunks.has(seq)) return; // unknown stream or a duplicate
    this.observeAge(stream, meta.age_ms, received);
    stream.chunks.set(seq, { samples, meta, received });
    stream.url = null;
    if (stream.live && !stream.stopped) {
      stream.pending.push(seq);
      // A context created while the page may play starts running by itself; one created
      // before that stays suspended until "Enable audio" (no silent resume() attempts, so the
      // blocked state is visible and stable rather than racing the browser's policy).
      this.ensureContext(stream.sampleRate);
      this.flush();
    }
    this.changed();
  }

  // -- audio ----------------------------------------------------------------------------------

  ensureContext(sampleRate) {
    if (!this.ctx) this.ctx = this.context(sampleRate);
    return this.ctx;
  }

  /** Ask the browser to start audio (call from a click: that is what autoplay policy wants). */
  enable() {
    const ctx = this.ensureContext(24000);
    return ctx.resume().then(() => registry().notify());
  }

  /** Where the queue lets this stream start (audio-clock seconds), or null to keep waiting. */
  queueStart(stream) {
    if (!stream.after) return 0;
    const before = registry().streams.get(stream.after);
    if (!before || before.stopped || before.done || !before.live) return 0;
    const complete = before.ended && before.pending.length === 0 && before.total !== null
      && before.scheduled.length === before.total;
    if (!complete) return null;
    return before.nextTime === null ? 0 : before.nextTime + CELL_GAP_S;
  }

  flush() {
    const stream = this.streams.get(this.current);
    if (!stream || stream.stopped || !this.ctx || this.ctx.state !== "running") return;
    // Sound only where its player is on screen, with its Stop: a page that restored the widget
    // without showing it (reloaded before the notebook was saved) keeps the audio silent.
    if (this.views.size === 0) return;
    if (!stream.pending.length) return;
    stream.pending.sort((a, b) => a - b);
    let floor = 0;
    if (stream.nextTime === null) {
      floor = this.queueStart(stream);
      if (floor === null) return this.changed(); // queued behind another cell's speech
    }
    // In order only: a chunk that overtook its predecessor waits for it.
    const expected = () => stream.scheduled.length;
    while (stream.pending.length && stream.pending[0] === expected()) {
      this.schedule(stream, stream.pending.shift(), floor);
    }
    this.changed();
  }

  schedule(stream, seq, floor) {
    const ctx = this.ctx;
    const { samples, meta, received } = stream.chunks.get(seq);
    const now = ctx.currentTime;
    const lead = leadSeconds(ctx);
    const earliest = now + lead;
    let start;
    let gap = 0;
    if (stream.nextTime === null) {
      // The kernel may ask for a short start margin when synthesis is slower than playback:
      // one wait before the first word instead of several stalls inside the text.
      const margin = (meta.start_margin_ms || 0) / 1000;
      start = Math.max(earliest + margin, floor);
      if (floor > earliest) {
        // Held by the queue: this speech's wait is the previous one's length, not latency.
        stream.queueOrigin = audioToPage(ctx, floor - CELL_GAP_S, this.clock);
      }
    } else if (stream.nextTime >= earliest) {
      start = stream.nextTime;
    } else {
      start = earliest;
      gap = earliest - stream.nextTime;
      if (gap > STALL_S) {
        stream.stalls += 1;
        stream.stallS += gap;
        stream.largestGapS = Math.max(stream.largestGapS, gap);
      }
    }
    const buffer = ctx.createBuffer(1, samples.length, stream.sampleRate);
    buffer.copyToChannel(samples, 0);
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    source.onended = () => {
      stream.sources.delete(source);
      this.checkDone(stream);
      this.changed();
    };
    source.start(start);
    stream.sources.add(source);
    const duration = samples.length / stream.sampleRate;
    if (stream.firstStart === null) stream.firstStart = start;
    if (stream.firstAudibleAt === null) {
      const hit = firstAudible(samples);
      if (hit >= 0) {
        stream.firstAudibleAt = audioToPage(ctx, start + hit / stream.sampleRate, this.clock);
        this.report(stream, false);
      }
    }
    stream.nextTime = start + duration;
    stream.scheduled.push({ seq, start, duration, gap });
    const record = {
      stream: stream.id,
      seq,
      index: meta.index ?? seq,
      samples: samples.length,
      start,
      duration,
      now,
      lead, // the start margin used: a late chunk starts at now + lead
      underrun: gap > STALL_S,
      gap,
      received_ms: received,
      scheduled_ms: this.clock(),
    };
    this.log.push(record);
    this.post({ type: "scheduled", ...record, ahead_s: stream.nextTime - now });
  }

  /** Seconds of audio queued ahead of the speakers now (what the kernel's scheduler wants). */
  aheadSeconds(id = this.current) {
    const stream = this.streams.get(id);
    if (!stream || !this.ctx || stream.nextTime === null || stream.stopped) return 0;
    return Math.max(0, stream.nextTime - this.ctx.currentTime);
  }

  stop({ reason = "stopped", fromUser = false, stream: id = this.current } = {}) {
    const stream = this.streams.get(id);
    if (!stream) return;
    if (!stream.stopped) {
      stream.stopped = true;
      stream.stopReason = reason;
      stream.stoppedAt = this.ctx ? this.ctx.currentTime : null;
      stream.pending = [];
      for (const source of stream.sources) {
        try {
          source.stop();
        } catch {
          // never started: nothing to stop
        }
      }
      if (fromUser) this.post({ type: "stop_request", stream: id, reason });
    }
    this.checkDone(stream);
    registry().notify();
    this.changed();
  }

  checkDone(stream) {
    if (stream.done) return;
    const drained = stream.sources.size === 0 && stream.pending.length === 0;
    if (stream.stopped || (stream.ended && (drained || !stream.live))) {
      if (stream.live && !stream.stopped && stream.total !== null
          && stream.scheduled.length < stream.total) return; // chunks still on their way
      stream.done = true;
      if (stream.live) this.report(stream, true);
      registry().notify();
    }
  }

  // -- what was heard ---------------------------------------------------------------------------

  /** Seconds of this stream that reached the speakers (stalls excluded, cut at a stop). */
  playedSeconds(stream) {
    if (!this.ctx) return 0;
    const until = stream.stoppedAt ?? this.ctx.currentTime;
    return stream.scheduled.reduce(
      (sum, s) => sum + Math.min(s.duration, Math.max(0, until - s.start)), 0);
  }

  heard(stream) {
    return heardFigures(stream, this.log, {
      played: this.playedSeconds(stream), received: this.receivedSeconds(stream),
    });
  }

  report(stream, final) {
    if (stream.reported) return;
    if (final) stream.reported = true;
    this.post({ type: "heard", stream: stream.id, final, stopped: stream.stopped, ...this.heard(stream) });
  }

  /** The periodic "how much is buffered" report, while a stream plays. */
  tick() {
    const stream = this.streams.get(this.current);
    if (!stream || stream.done || stream.nextTime === null || !this.ctx) return;
    this.post({ type: "buffer", stream: stream.id, ahead_s: this.aheadSeconds(), page_ms: this.clock() });
  }

  // -- the word being heard -------------------------------------------------------------------

  /**
   * The word heard at audio-clock time `t` on this page's live schedule: `{seq, word}` (chunk
   * sequence number, index into its `meta.words`), or null before the first word. Between
   * words, during a stall and after a stop it holds the last word heard: the listener's place.
   */
  wordAt(t = this.ctx ? this.ctx.currentTime : 0, id = this.current) {
    const stream = this.streams.get(id);
    if (!stream) return null;
    if (stream.stoppedAt !== null) t = Math.min(t, stream.stoppedAt);
    let found = null;
    for (const s of stream.scheduled) {
      if (s.start > t) break;
      found = s;
    }
    if (!found) return null;
    return this.wordIn(stream, found.seq, Math.min(t - found.start, found.duration));
  }

  /** The word heard `position` seconds into the whole recording (the <audio> element). */
  wordAtPosition(position, id = this.current) {
    const stream = this.streams.get(id);
    if (!stream) return null;
    let offset = 0;
    let last = null;
    for (const seq of [...stream.chunks.keys()].sort((a, b) => a - b)) {
      const duration = stream.chunks.get(seq).samples.length / stream.sampleRate;
      if (offset > position) break;
      last = this.wordIn(stream, seq, Math.min(position - offset, duration)) ?? last;
      offset += duration;
    }
    return last;
  }

  wordIn(stream, seq, offset) {
    const words = stream.chunks.get(seq)?.meta.words || [];
    let index = -1;
    for (let i = 0; i < words.length && words[i][1] <= offset; i++) index = i;
    if (index >= 0) return { seq, word: index };
    // Before this chunk's first word: still on the previous chunk's last one.
    for (let previous = seq - 1; previous >= 0; previous--) {
      const earlier = stream.chunks.get(previous)?.meta.words || [];
      if (earlier.length) return { seq: previous, word: earlier.length - 1 };
    }
    return null;
  }

  // -- what views show ------------------------------------------------------------------------

  receivedSeconds(stream) {
    let samples = 0;
    for (const chunk of stream.chunks.values()) samples += chunk.samples.length;
    return samples / stream.sampleRate;
  }

  /** Float32 pieces of a stream in order, for the full-audio element. */
  audio(id = this.current) {
    const stream = this.streams.get(id);
    if (!stream) return [];
    return [...stream.chunks.keys()].sort((a, b) => a - b).map((k) => stream.chunks.get(k).samples);
  }

  wavUrl(id = this.current) {
    const stream = this.streams.get(id);
    if (!stream || !stream.chunks.size) return null;
    if (!stream.url) {
      const blob = new Blob([encodeWav(this.audio(id), stream.sampleRate)], { type: "audio/wav" });
      stream.url = URL.createObjectURL(blob);
    }
    return stream.url;
  }

  phase(stream) {
    const ctx = this.ctx;
    if (!stream) return "idle";
    if (stream.stopped) return "stopped";
    if (!stream.live) return stream.chunks.size ? "offered" : "idle";
    if (stream.done) return "done";
    if (stream.pending.length && ctx && ctx.state !== "running") return "blocked";
    if (stream.pending.length && !ctx) return "blocked";
    if (stream.nextTime === null && stream.pending.length) return "queued";
    if (stream.nextTime === null) return stream.ended ? "done" : "preparing";
    if (stream.queueOrigin !== null && ctx && ctx.currentTime < stream.firstStart) return "queued";
    return "playing";
  }

  state() {
    const stream = this.streams.get(this.current);
    const ctx = this.ctx;
    const base = { audioState: ctx ? ctx.state : "unstarted", views: this.views.size };
    if (!stream) return { ...base, phase: "idle" };
    const before = stream.after ? registry().streams.get(stream.after) : null;
    return {
      ...base,
      phase: this.phase(stream),
      stream: stream.id,
      label: stream.label,
      queuedBehind: before ? before.label : "",
      chunks: stream.chunks.size,
      totalChunks: stream.total,
      scheduled: stream.scheduled.length,
      pending: stream.pending.length,
      ended: stream.ended,
      heard: this.heard(stream),
      played: this.playedSeconds(stream),
      receivedSeconds: this.receivedSeconds(stream),
      stopReason: stream.stopReason || "",
      endInfo: stream.endInfo,
    };
  }

  changed() {
    for (const view of this.views) view();
  }

  dispose() {
    for (const id of this.streams.keys()) this.stop({ reason: "widget closed", stream: id });
    const shared = registry();
    for (const stream of this.streams.values()) {
      if (stream.url) URL.revokeObjectURL(stream.url);
      if (shared.streams.get(stream.id) === stream) shared.streams.delete(stream.id);
    }
    this.views.clear();
    if (shared.players[this.playerId] === this) delete shared.players[this.playerId];
  }
}
