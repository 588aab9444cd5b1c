// The audio side of the streaming player: gapless Web Audio scheduling of PCM chunks.
//
// The rule: every chunk of a stream starts exactly where the previous one ends
// (`start = nextTime; nextTime += duration`). Only when a chunk arrives after that moment has
// passed (an underrun) does it start "as soon as possible" instead, and the gap is counted and
// reported. Chunks that arrive while the AudioContext is suspended (browser autoplay policy)
// are kept in order and scheduled, still gaplessly, once audio is enabled.
//
// One engine exists per player model per page (however many views show it), so a widget
// displayed twice plays its audio once. This module knows nothing of the DOM.

import { encodeWav } from "./wav.js";

export const PROTOCOL = 1;
// Safety margin between "now" and the first chunk's start, so the first buffer is never
// scheduled in the past while the audio thread is mid-quantum.
export const LEAD_S = 0.03;

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
    ctx.onstatechange = () => {
      for (const listener of shared.contextListeners) listener(ctx.state);
    };
    shared.ctx = ctx;
  }
  return shared.ctx;
}

/** Test and debugging hook: `window.__kokoroLab.players[player_id]` is the engine. */
export function registry() {
  const root = globalThis;
  if (!root.__kokoroLab) {
    root.__kokoroLab = { protocol: PROTOCOL, ctx: null, players: {}, contextListeners: new Set() };
  }
  return root.__kokoroLab;
}

function randomId() {
  return Math.random().toString(36).slice(2, 10);
}

function toFloat32(dataView) {
  // Copy: the message's buffer may be shared or unaligned for a Float32Array view.
  const bytes = dataView.buffer.slice(dataView.byteOffset, dataView.byteOffset + dataView.byteLength);
  return new Float32Array(bytes);
}

export class PlayerEngine {
  /**
   * @param {object} options
   * @param {string} options.playerId   the Python player's id
   * @param {(msg: object) => void} options.send  message to the kernel
   * @param {() => AudioContext} [options.context]  where audio goes (the page's shared context)
   * @param {() => number} [options.clock]  milliseconds, for latency records
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
    this.underruns = 0;
    this.views = new Set();
    this.errors = [];
    this.onContextState = () => {
      if (this.ctx && this.ctx.state === "running") this.flush();
      this.changed();
    };
    registry().contextListeners.add(this.onContextState);
    this.ctx = null;
    registry().players[playerId] = this;
  }

  // -- kernel messages ------------------------------------------------------------------------

  ready() {
    this.post({ type: "ready", audio_state: this.ctx ? this.ctx.state : "unstarted" });
  }

  post(msg) {
    try {
      this.send({ ...msg, client: this.clientId, protocol: PROTOCOL });
    } catch (error) {
      // The kernel side is gone (widget closed, kernel restarted): nothing to report to.
      this.errors.push(String(error));
    }
  }

  handle(msg, buffers = []) {
    const received = this.clock();
    switch (msg.type) {
      case "start":
        return this.onStart(msg);
      case "chunk":
        return this.onChunk(msg, buffers, received);
      case "end":
        return this.onEnd(msg);
      case "stop":
        return this.stop({ reason: msg.reason, fromUser: false, stream: msg.stream });
      default:
        this.errors.push(`unknown message type ${msg.type}`);
    }
  }

  onStart(msg) {
    if (this.streams.has(msg.stream)) return; // a replay for another client
    if (this.current && this.current !== msg.stream) {
      this.stop({ reason: "replaced by a new utterance", fromUser: false, stream: this.current });
    }
    this.streams.set(msg.stream, {
      id: msg.stream,
      sampleRate: msg.sample_rate,
      label: msg.label || "",
      live: !msg.ended, // a stream that had already ended when we joined is not auto-played
      chunks: new Map(), // seq -> {samples, meta}
      pending: [], // seqs waiting for the audio context
      sources: new Set(),
      nextTime: null,
      firstStart: null,
      scheduled: 0,
      underruns: 0,
      ended: false,
      endInfo: null,
      stopped: false,
      done: false,
      reported: false,
      url: null,
    });
    this.current = msg.stream;
    this.changed();
  }

  onChunk(msg, buffers, received) {
    const stream = this.streams.get(msg.stream);
    if (!stream || stream.chunks.has(msg.seq)) return; // unknown stream or a duplicate (replay)
    if (!buffers.length) {
      this.errors.push(`chunk ${msg.seq} arrived without its audio buffer`);
      return;
    }
    const samples = toFloat32(buffers[0]);
    if (samples.length !== msg.samples) {
      this.errors.push(`chunk ${msg.seq}: ${samples.length} samples, header says ${msg.samples}`);
    }
    stream.chunks.set(msg.seq, { samples, meta: msg, received });
    stream.url = null;
    if (stream.live && !stream.stopped && stream.id === this.current) {
      stream.pending.push(msg.seq);
      // A context created while the page may play starts running by itself; one created
      // before that stays suspended until "Enable audio" (no silent resume() attempts, so the
      // blocked state is visible and stable rather than racing the browser's policy).
      this.ensureContext(stream.sampleRate);
      if (this.ctx.state === "running") this.flush();
    }
    this.changed();
  }

  onEnd(msg) {
    const stream = this.streams.get(msg.stream);
    if (!stream) return;
    stream.ended = true;
    stream.endInfo = msg;
    this.checkDone(stream);
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
    return ctx.resume().then(() => this.flush());
  }

  flush() {
    const stream = this.streams.get(this.current);
    if (!stream || stream.stopped || !this.ctx || this.ctx.state !== "running") return;
    stream.pending.sort((a, b) => a - b);
    while (stream.pending.length) this.schedule(stream, stream.pending.shift());
    this.changed();
  }

  schedule(stream, seq) {
    const ctx = this.ctx;
    const { samples, meta, received } = stream.chunks.get(seq);
    const now = ctx.currentTime;
    const earliest = now + LEAD_S;
    let start = earliest;
    let underrun = false;
    let gap = 0;
    if (stream.nextTime !== null) {
      if (stream.nextTime >= earliest) {
        start = stream.nextTime;
      } else {
        underrun = true;
        gap = earliest - stream.nextTime;
        stream.underruns += 1;
        this.underruns += 1;
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
    stream.nextTime = start + duration;
    stream.scheduled += 1;
    const record = {
      stream: stream.id,
      seq,
      index: meta.index,
      samples: samples.length,
      start,
      duration,
      now,
      underrun,
      gap,
      received_ms: received,
      scheduled_ms: this.clock(),
    };
    this.log.push(record);
    this.post({ type: "scheduled", ...record });
  }

  stop({ reason = "stopped", fromUser = false, stream: id = this.current } = {}) {
    const stream = this.streams.get(id);
    if (!stream) return;
    if (!stream.stopped) {
      stream.stopped = true;
      stream.stopReason = reason;
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
    this.changed();
  }

  checkDone(stream) {
    if (stream.done) return;
    const drained = stream.sources.size === 0 && stream.pending.length === 0;
    if (stream.ended && (drained || stream.stopped || !stream.live)) {
      stream.done = true;
      if (stream.live && !stream.reported) {
        stream.reported = true;
        this.post({
          type: "played",
          stream: stream.id,
          scheduled: stream.scheduled,
          underruns: stream.underruns,
          stopped: stream.stopped,
          audio_end: stream.nextTime,
        });
      }
    }
  }

  // -- what views show ------------------------------------------------------------------------

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

  state() {
    const stream = this.streams.get(this.current);
    const ctx = this.ctx;
    const base = {
      audioState: ctx ? ctx.state : "unstarted",
      underruns: this.underruns,
      views: this.views.size,
    };
    if (!stream) return { ...base, phase: "waiting" };
    const now = ctx ? ctx.currentTime : 0;
    const played = stream.firstStart === null ? 0 : Math.max(0, Math.min(now, stream.nextTime) - stream.firstStart);
    const scheduledSeconds = stream.firstStart === null ? 0 : stream.nextTime - stream.firstStart;
    const receivedSeconds = [...stream.chunks.values()].reduce((n, c) => n + c.samples.length, 0) / stream.sampleRate;
    let phase = "streaming";
    if (stream.stopped) phase = "stopped";
    else if (stream.done) phase = "done";
    else if (stream.pending.length && (!ctx || ctx.state !== "running")) phase = "blocked";
    else if (stream.ended && !stream.live) phase = "done";
    return {
      ...base,
      phase,
      stream: stream.id,
      label: stream.label,
      chunks: stream.chunks.size,
      totalChunks: stream.endInfo ? stream.endInfo.chunks : null,
      scheduled: stream.scheduled,
      streamUnderruns: stream.underruns,
      pending: stream.pending.length,
      ended: stream.ended,
      played,
      scheduledSeconds,
      receivedSeconds,
      stopReason: stream.stopReason || "",
      endInfo: stream.endInfo,
    };
  }

  changed() {
    for (const view of this.views) view();
  }

  dispose() {
    for (const id of this.streams.keys()) this.stop({ reason: "widget closed", stream: id });
    registry().contextListeners.delete(this.onContextState);
    for (const stream of this.streams.values()) if (stream.url) URL.revokeObjectURL(stream.url);
    this.views.clear();
    const players = registry().players;
    if (players[this.playerId] === this) delete players[this.playerId];
  }
}
