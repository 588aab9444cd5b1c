// The audio engine's scheduling rules, with a stand-in AudioContext whose clock the test moves.
import assert from "node:assert/strict";
import { test } from "node:test";

import { LEAD_S, PlayerEngine } from "../src/audio.js";
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

function setup(state = "running") {
  const ctx = new FakeContext(state);
  const sent = [];
  const engine = new PlayerEngine({ playerId: `p${Math.random()}`, send: (m) => sent.push(m), context: () => ctx });
  return { ctx, sent, engine };
}

function chunk(engine, stream, seq, samples) {
  const data = new Float32Array(samples).fill(0.1);
  engine.handle({ type: "chunk", stream, seq, index: seq, samples }, [new DataView(data.buffer)]);
}

test("chunks start exactly where the previous one ended", () => {
  const { engine, sent } = setup();
  engine.handle({ type: "start", stream: "s", sample_rate: 24000 });
  chunk(engine, "s", 0, 24000);
  chunk(engine, "s", 1, 12000);
  chunk(engine, "s", 2, 6000);
  const starts = engine.log.map((r) => r.start);
  assert.deepEqual(starts, [LEAD_S, LEAD_S + 1, LEAD_S + 1.5]);
  assert.equal(engine.underruns, 0);
  assert.deepEqual(sent.filter((m) => m.type === "scheduled").map((m) => m.seq), [0, 1, 2]);
});

test("a late chunk is an underrun, counted and started as soon as possible", () => {
  const { engine, ctx } = setup();
  engine.handle({ type: "start", stream: "s", sample_rate: 24000 });
  chunk(engine, "s", 0, 2400); // 0.1 s
  ctx.currentTime = 1.0; // the previous chunk ended at 0.13
  chunk(engine, "s", 1, 2400);
  const late = engine.log[1];
  assert.equal(late.underrun, true);
  assert.ok(Math.abs(late.start - (1.0 + LEAD_S)) < 1e-9);
  assert.ok(Math.abs(late.gap - (1.0 + LEAD_S - (LEAD_S + 0.1))) < 1e-9);
  assert.equal(engine.underruns, 1);
});

test("a suspended context keeps the queue until audio is enabled", async () => {
  const { engine, ctx } = setup("suspended");
  engine.handle({ type: "start", stream: "s", sample_rate: 24000 });
  chunk(engine, "s", 1, 2400); // out of order on purpose
  chunk(engine, "s", 0, 2400);
  assert.equal(engine.state().phase, "blocked");
  assert.equal(engine.log.length, 0);
  ctx.currentTime = 5;
  await engine.enable();
  assert.deepEqual(engine.log.map((r) => r.seq), [0, 1]);
  assert.ok(Math.abs(engine.log[1].start - (engine.log[0].start + 0.1)) < 1e-9);
});

test("duplicates from a replay are ignored and stop silences every source", () => {
  const { engine, ctx, sent } = setup();
  engine.handle({ type: "start", stream: "s", sample_rate: 24000 });
  chunk(engine, "s", 0, 2400);
  engine.handle({ type: "start", stream: "s", sample_rate: 24000 });
  chunk(engine, "s", 0, 2400);
  assert.equal(ctx.started.length, 1);
  engine.stop({ reason: "Stop pressed", fromUser: true });
  assert.ok(ctx.started.every((s) => s.stopped));
  assert.equal(sent.at(-1).type, "stop_request");
  chunk(engine, "s", 1, 2400); // kept for the full audio, not played
  assert.equal(ctx.started.length, 1);
  assert.equal(engine.audio().length, 2);
});

test("a new stream replaces the old one", () => {
  const { engine, ctx } = setup();
  engine.handle({ type: "start", stream: "a", sample_rate: 24000 });
  chunk(engine, "a", 0, 2400);
  engine.handle({ type: "start", stream: "b", sample_rate: 24000 });
  assert.ok(ctx.started[0].stopped);
  chunk(engine, "b", 0, 2400);
  assert.equal(engine.current, "b");
  assert.equal(ctx.started.length, 2);
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
