// The page-wide state every player shares (and the page's clocks): one AudioContext (browsers limit how many a page
// may have), every player engine and every stream the page knows (for the queue of
// utterances). It lives on `window.__kokoroLab`, because anywidget may instantiate the player
// module once per widget; it is also the test and debugging hook.

export const PROTOCOL = 2;

/** The page's one AudioContext (browsers limit how many a page may have), created lazily.
 * It lives on the page-wide registry: anywidget may instantiate this module once per widget. */
export function getAudioContext(sampleRate = 24000) {
  const shared = registry();
  if (shared.ctx === null) {
    const Ctor = globalThis.AudioContext || globalThis.webkitAudioContext;
    let ctx;
    try {
      // Running the context at the model's rate means buffers are never resampled one by one,
      // so chunk joins stay sample-exact; the browser converts once, at the output.
      ctx = new Ctor({ sampleRate, latencyHint: "interactive" });
    } catch {
      ctx = new Ctor({ latencyHint: "interactive" });
    }
    ctx.onstatechange = () => shared.notify();
    shared.ctx = ctx;
  }
  return shared.ctx;
}

/** The page-wide state: the audio context, every player engine and every stream this page
 * knows (for the queue). Also the test and debugging hook `window.__kokoroLab`. */
export function registry() {
  const root = globalThis;
  if (!root.__kokoroLab) {
    const shared = {
      protocol: PROTOCOL,
      ctx: null,
      players: {},
      streams: new Map(), // stream id -> stream record (any player)
      notify() {
        // Something changed that may unblock a queued stream or a suspended context.
        for (const engine of Object.values(shared.players)) engine.flush();
      },
    };
    root.__kokoroLab = shared;
  }
  return root.__kokoroLab;
}

/** A short random id for a stream or a player. */
export function randomId() {
  return Math.random().toString(36).slice(2, 10);
}

/** Page time (performance.now() ms) at which audio-clock time `t` reaches the speakers. */
export function audioToPage(ctx, t, clock) {
  const stamp = typeof ctx.getOutputTimestamp === "function" ? ctx.getOutputTimestamp() : null;
  if (stamp && stamp.performanceTime > 0) {
    return stamp.performanceTime + (t - stamp.contextTime) * 1000;
  }
  const latency = ctx.outputLatency || ctx.baseLatency || 0;
  return clock() + (t - ctx.currentTime + latency) * 1000;
}
