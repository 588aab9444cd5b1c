// The audio engine's rules, with a stand-in AudioContext whose clock the test moves.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CELL_GAP_S,
  LEAD_S,
  LATE_JOIN_MS,
  PlayerEngine,
  leadSeconds,
  registry,
} from "../src/audio.js";
import { describe } from "../src/player.js";
import { encodeWav } from "../src/wav.js";

class FakeContext {
  constructor(state = "running") {
    this.state = state;
    this.currentTime = 0;
    this.started = [];
    this.destination = {};
  }
  createBuffer(channels, length, sampleRate) {
    return { length, sampleRate, duration: length / sampleRate, copyToChannel() {} };
  }
  createBufferSource() {
    const ctx = this;
    return {
      connect() {},
      start(when) {
        this.when = when;
        ctx.started.push(this);
      },
      stop() {
        this.stopped = true;
      },
    };
  }
  resume() {
    this.state = "running";
    return Promise.resolve();
  }
}

// One fake page: a shared context and a clock, like the real registry's.
function page(state = "running") {
  const ctx = new FakeContext(state);
  const clock = { ms: 0 };
  const make = () => {
    const sent = [];
    const engine = new PlayerEngine({
      playerId: `p${Math.random()}`, send: (m) => sent.push(m), context: () => ctx,
      clock: () => clock.ms,
    });
    engine.views.add(() => {}); // one view on screen, as when the player is displayed
    return { engine, sent };
  };
  return { ctx, clock, make };
}

function setup(state = "running") {
  const p = page(state);
  return { ...p, ...p.make() };
}

function live(engine, id, extra = {}) {
  engine.update({ id, state: "live", chunks: 0, sample_rate: 24000, age_ms: 0, ...extra });
}

function chunk(engine, stream, seq, samples, meta = {}) {
  engine.addChunk(stream, seq, new Float32Array(samples).fill(0.1), meta);
}

test("chunks start exactly where the previous one ended", () => {
  const { engine, sent } = setup();
  live(engine, "s");
  chunk(engine, "s", 0, 24000);
  chunk(engine, "s", 1, 12000);
  chunk(engine, "s", 2, 6000);
  assert.deepEqual(engine.log.map((r) => r.start), [LEAD_S, LEAD_S + 1, LEAD_S + 1.5]);
  assert.deepEqual(sent.filter((m) => m.type === "scheduled").map((m) => m.seq), [0, 1, 2]);
  assert.equal(engine.state().heard.stalls, 0);
});

test("a chunk that overtook its predecessor waits for it", () => {
  const { engine } = setup();
  live(engine, "s");
  chunk(engine, "s", 1, 2400);
  assert.equal(engine.log.length, 0);
  chunk(engine, "s", 0, 2400);
  assert.deepEqual(engine.log.map((r) => r.seq), [0, 1]);
});

test("a late chunk is a stall, counted and started as soon as possible", () => {
  const { engine, ctx } = setup();
  live(engine, "s");
  chunk(engine, "s", 0, 2400); // 0.1 s
  ctx.currentTime = 1.0; // the previous chunk ended at 0.13
  chunk(engine, "s", 1, 2400);
  const late = engine.log[1];
  assert.equal(late.underrun, true);
  assert.ok(Math.abs(late.start - (1.0 + LEAD_S)) < 1e-9);
  const heard = engine.state().heard;
  assert.equal(heard.stalls, 1);
  assert.equal(heard.stall_ms, Math.round((1.0 + LEAD_S - (LEAD_S + 0.1)) * 1000));
});

test("played seconds never exceed what was made, and exclude stalls", () => {
  const { engine, ctx } = setup();
  live(engine, "s");
  chunk(engine, "s", 0, 24000); // 1 s from LEAD_S
  ctx.currentTime = 3.0; // played out, then a 2 s stall
  chunk(engine, "s", 1, 24000);
  ctx.currentTime = 3.5;
  const state = engine.state();
  assert.ok(Math.abs(state.played - 1.47) < 1e-6, state.played);
  ctx.currentTime = 100;
  assert.equal(engine.state().played, 2);
  assert.equal(engine.state().receivedSeconds, 2);
});

test("first audible sample is measured from when the cell ran", () => {
  const { engine, clock } = setup();
  clock.ms = 1000;
  // The kernel sent this 400 ms after the cell ran: the cell ran at page time 600.
  live(engine, "s", { age_ms: 400 });
  clock.ms = 1500;
  const samples = new Float32Array(2400);
  samples[1200] = 0.5; // audible 50 ms into the chunk
  engine.addChunk("s", 0, samples, { age_ms: 950 }); // 1500 - 950 = 550: an earlier estimate
  const heard = engine.state().heard;
  // scheduled at currentTime 0 + LEAD_S, audible 50 ms later, on a clock at 1500 ms
  assert.equal(heard.first_audible_ms, Math.round(1500 + (LEAD_S + 0.05) * 1000 - 550));
  assert.equal(heard.since, "cell ran");
});

test("a suspended context keeps the queue until audio is enabled", async () => {
  const { engine, ctx } = setup("suspended");
  live(engine, "s");
  chunk(engine, "s", 1, 2400); // out of order on purpose
  chunk(engine, "s", 0, 2400);
  assert.equal(engine.state().phase, "blocked");
  assert.equal(engine.log.length, 0);
  ctx.currentTime = 5;
  await engine.enable();
  assert.deepEqual(engine.log.map((r) => r.seq), [0, 1]);
  assert.ok(Math.abs(engine.log[1].start - (engine.log[0].start + 0.1)) < 1e-9);
});

test("stop silences every source; later chunks are kept, not played", () => {
  const { engine, ctx, sent } = setup();
  live(engine, "s");
  chunk(engine, "s", 0, 2400);
  chunk(engine, "s", 0, 2400); // a duplicate
  assert.equal(ctx.started.length, 1);
  engine.stop({ reason: "Stop pressed", fromUser: true });
  assert.ok(ctx.started.every((s) => s.stopped));
  assert.equal(sent.filter((m) => m.type === "stop_request").length, 1);
  chunk(engine, "s", 1, 2400);
  assert.equal(ctx.started.length, 1);
  assert.equal(engine.audio().length, 2);
  assert.equal(engine.state().phase, "stopped");
});

test("the kernel's stop arrives as state", () => {
  const { engine, ctx } = setup();
  live(engine, "s");
  chunk(engine, "s", 0, 2400);
  engine.update({ id: "s", state: "stopped", stop_reason: "kernel interrupted", chunks: 1 });
  assert.ok(ctx.started[0].stopped);
  assert.equal(describe(engine.state()), "Stopped (kernel interrupted) after 0.0 s heard");
});

test("a new stream replaces the old one", () => {
  const { engine, ctx } = setup();
  live(engine, "a");
  chunk(engine, "a", 0, 2400);
  live(engine, "b");
  assert.ok(ctx.started[0].stopped);
  chunk(engine, "b", 0, 2400);
  assert.equal(engine.current, "b");
  assert.equal(ctx.started.length, 2);
});

test("a queued stream starts when the one ahead has played out, gaplessly", () => {
  const { make, ctx } = page();
  const first = make().engine;
  const second = make().engine;
  live(first, "a");
  chunk(first, "a", 0, 24000);
  live(second, "b", { after: "a" });
  chunk(second, "b", 0, 2400);
  assert.equal(second.log.length, 0, "waits while the one ahead is still being made");
  assert.equal(second.state().phase, "queued");
  chunk(first, "a", 1, 24000);
  first.update({ id: "a", state: "ended", chunks: 2, end: {} });
  assert.equal(second.log.length, 1);
  assert.ok(Math.abs(second.log[0].start - (LEAD_S + 2 + CELL_GAP_S)) < 1e-9);
  ctx.currentTime = 0.5;
  assert.equal(second.state().phase, "queued", "not playing before its start");
  ctx.currentTime = LEAD_S + 2 + CELL_GAP_S + 0.01;
  assert.equal(second.state().phase, "playing");
  assert.equal(second.state().heard.since, "speech before it ended");
});

test("stopping the stream ahead releases the queue at once", () => {
  const { make } = page();
  const first = make().engine;
  const second = make().engine;
  live(first, "a");
  chunk(first, "a", 0, 24000);
  live(second, "b", { after: "a" });
  chunk(second, "b", 0, 2400);
  first.stop({ reason: "Stop pressed", fromUser: true });
  assert.equal(second.log.length, 1);
  assert.ok(second.log[0].start <= LEAD_S + 1e-9);
});

test("a stream first seen complete is offered, not auto-played", () => {
  const { engine, ctx } = setup();
  engine.update({ id: "s", state: "ended", chunks: 1, sample_rate: 24000, age_ms: 60000, end: {} });
  chunk(engine, "s", 0, 2400);
  assert.equal(ctx.started.length, 0);
  assert.equal(engine.state().phase, "offered");
  assert.match(describe(engine.state()), /press ▶ below to listen/);
});

test("a page that joins a live stream late plays it from its start", () => {
  const { engine, ctx, clock } = setup();
  clock.ms = 50000;
  live(engine, "s", { age_ms: LATE_JOIN_MS + 1000, chunks: 2 });
  chunk(engine, "s", 0, 2400);
  chunk(engine, "s", 1, 2400);
  assert.equal(ctx.started.length, 2);
  assert.equal(engine.state().heard.since, "page joined");
  assert.equal(engine.state().heard.late_join, true);
});

test("status lines: no full bar or zero counts while waiting, plurals", () => {
  const { engine } = setup();
  assert.equal(describe(engine.state()), "No audio yet.");
  live(engine, "s");
  assert.equal(describe(engine.state()), "Preparing the first chunk…");
  chunk(engine, "s", 0, 24000);
  engine.update({ id: "s", state: "ended", chunks: 1, end: {} });
  assert.match(describe(engine.state()), /chunk 1 of 1/);
});

test("heard reports go to the kernel: one on first sound, one final", () => {
  const { engine, ctx, sent } = setup();
  live(engine, "s");
  chunk(engine, "s", 0, 2400);
  engine.update({ id: "s", state: "ended", chunks: 1, end: {} });
  const sources = ctx.started;
  for (const source of sources) source.onended();
  const heard = sent.filter((m) => m.type === "heard");
  assert.deepEqual(heard.map((m) => m.final), [false, true]);
  assert.equal(engine.state().phase, "done");
});

test("WAV encoding: header and 16-bit samples", () => {
  const wav = new DataView(encodeWav([new Float32Array([0, 1, -1]), new Float32Array([0.5])], 24000));
  const text = (o, n) => String.fromCharCode(...new Uint8Array(wav.buffer, o, n));
  assert.equal(text(0, 4), "RIFF");
  assert.equal(text(8, 4), "WAVE");
  assert.equal(wav.getUint32(24, true), 24000);
  assert.equal(wav.getUint32(40, true), 8);
  assert.deepEqual([0, 1, 2, 3].map((i) => wav.getInt16(44 + 2 * i, true)), [0, 32767, -32767, 16383]);
});

test("the registry is page-wide", () => {
  assert.equal(registry(), registry());
});

test("the word heard follows the audio clock, holding through pauses, stalls and a stop", () => {
  const { engine, ctx } = setup();
  live(engine, "s");
  // chunk 0: 1 s with words at 0.1–0.4 and 0.5–0.9; chunk 1: 0.5 s, one word at 0.05–0.3
  chunk(engine, "s", 0, 24000, { text: "Hello there", words: [["Hello", 0.1, 0.4, 0, 5], ["there", 0.5, 0.9, 6, 11]] });
  chunk(engine, "s", 1, 12000, { text: "friend.", words: [["friend.", 0.05, 0.3, 0, 7]] });
  const at = (t) => engine.wordAt(t);
  assert.equal(at(0.0), null); // before the first word
  assert.deepEqual(at(LEAD_S + 0.2), { seq: 0, word: 0 });
  assert.deepEqual(at(LEAD_S + 0.45), { seq: 0, word: 0 }); // the pause holds the last word
  assert.deepEqual(at(LEAD_S + 0.6), { seq: 0, word: 1 });
  assert.deepEqual(at(LEAD_S + 1.02), { seq: 0, word: 1 }); // chunk 1 before its first word
  assert.deepEqual(at(LEAD_S + 1.1), { seq: 1, word: 0 });
  assert.deepEqual(at(LEAD_S + 5), { seq: 1, word: 0 }); // a stall: the place is kept
  ctx.currentTime = LEAD_S + 0.6;
  engine.stop({ reason: "Stop pressed" });
  assert.deepEqual(at(LEAD_S + 1.1), { seq: 0, word: 1 }); // where it stopped
});

test("the whole recording's position maps to the same words", () => {
  const { engine } = setup();
  engine.update({ id: "s", state: "ended", chunks: 2, sample_rate: 24000, age_ms: 60000, end: {} });
  chunk(engine, "s", 0, 24000, { words: [["Hello", 0.1, 0.4, 0, 5], ["there", 0.5, 0.9, 6, 11]] });
  chunk(engine, "s", 1, 12000, { words: [["friend.", 0.05, 0.3, 0, 7]] });
  assert.deepEqual(engine.wordAtPosition(0.55), { seq: 0, word: 1 });
  assert.deepEqual(engine.wordAtPosition(1.2), { seq: 1, word: 0 });
});

test("nothing plays while no view of the player is on the page", () => {
  const { engine } = setup();
  const view = [...engine.views][0];
  engine.views.delete(view); // a reloaded page restored the widget but shows no output
  live(engine, "s");
  chunk(engine, "s", 0, 2400);
  chunk(engine, "s", 1, 2400);
  assert.equal(engine.log.length, 0);
  engine.views.add(view);
  engine.flush(); // what a view does when it renders
  assert.deepEqual(engine.log.map((r) => r.seq), [0, 1]);
});

test("every report about a stream says how long after the request the page made it", () => {
  const { engine, sent, clock } = setup();
  live(engine, "s", { age_ms: 100 });
  clock.ms = 500;
  chunk(engine, "s", 0, 2400);
  const scheduled = sent.find((m) => m.type === "scheduled");
  assert.equal(scheduled.age_ms, 600); // the request was 100 ms before the page saw the stream
});

test("the first chunk starts one output buffer and one render quantum ahead", () => {
  const { ctx, engine } = setup();
  ctx.baseLatency = 0.01;
  ctx.sampleRate = 24000;
  live(engine, "s");
  chunk(engine, "s", 0, 24000);
  assert.ok(Math.abs(engine.log[0].start - (0.01 + 128 / 24000)) < 1e-12);
  assert.equal(engine.log[0].lead, 0.01 + 128 / 24000); // logged for the continuity checks
  // a context that reports no (or an implausible) buffer keeps the fixed margin
  assert.equal(leadSeconds({ sampleRate: 24000 }), LEAD_S);
  assert.equal(leadSeconds({ sampleRate: 24000, baseLatency: 0.2 }), LEAD_S);
  // a buffer just under LEAD_S: its quantum would take the margin past it; capped
  assert.equal(leadSeconds({ sampleRate: 24000, baseLatency: 0.028 }), LEAD_S);
});
