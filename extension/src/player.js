// kokoro_lab streaming player: the anywidget front-end (built into kokoro_lab/static/player.js).
//
// Transport (protocol 2): everything the kernel says lives in widget *state*, never only in a
// message, because a message that reaches the page before this module has attached its
// listener is lost, and a page that connects late (a reload, a tab opened afterwards, Voila)
// only ever gets state. The player's `stream` trait describes the current utterance (id, label,
// state, how many chunks exist); each chunk is its own small widget model whose id follows
// from the stream id and the chunk's sequence number, so this module fetches chunk `n` from the
// widget manager whenever `stream.chunks` says it exists. Nothing on the path to sound waits for
// an answer from the kernel: the kernel handles the page's messages (schedule, buffer and
// "heard" reports, Stop) on its main thread, which may be busy with another cell for minutes.

import { PlayerEngine, registry } from "./audio.js";

const engines = new Map(); // player_id -> PlayerEngine
const ORPHAN_GRACE_MS = 1000;
// While audio plays the view refreshes this often (progress, highlight): ten times a second is
// smooth enough to read and leaves the CPU to synthesis and audio (no 60 fps redraw loop).
const REFRESH_MS = 100;
const FETCH_RETRY_MS = 200;
const FETCH_TRIES = 100; // a page restoring widgets may create chunk models after the player
const TICK_MS = 1000;

/** The chunk model's id; the kernel names it the same way (player.py `chunk_model_id`). */
export function chunkModelId(playerId, streamId, seq) {
  return `kokoro-lab-${playerId}-${streamId}-${seq}`;
}

function engineFor(model) {
  const id = model.get("player_id");
  let engine = engines.get(id);
  if (!engine) {
    engine = new PlayerEngine({ playerId: id, send: (msg) => model.send(msg) });
    engines.set(id, engine);
  }
  return engine;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function fetchChunk(model, playerId, streamId, seq) {
  const id = chunkModelId(playerId, streamId, seq);
  for (let attempt = 0; attempt < FETCH_TRIES; attempt++) {
    try {
      return await model.widget_manager.get_model(id);
    } catch {
      await sleep(FETCH_RETRY_MS);
    }
  }
  throw new Error(`chunk ${seq} of stream ${streamId} never arrived`);
}

function samplesOf(pcm) {
  // int16 little-endian PCM, scaled back the way the kernel scaled it (× 32767).
  const view = pcm instanceof DataView ? pcm : new DataView(pcm.buffer ?? pcm);
  const count = view.byteLength >> 1;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = view.getInt16(2 * i, true) / 32767;
  return out;
}

/** Keep the engine in step with the `stream` trait: describe it, then fetch chunks in order. */
function follow(model, engine) {
  let fetching = false;
  const fetched = new Map(); // stream id -> chunks fetched so far
  const pump = async () => {
    if (fetching) return;
    fetching = true;
    try {
      for (;;) {
        const desc = model.get("stream");
        if (!desc || !desc.id) return;
        const done = fetched.get(desc.id) ?? 0;
        if (done >= desc.chunks) return;
        const chunk = await fetchChunk(model, engine.playerId, desc.id, done);
        const meta = chunk.get("meta") || {};
        engine.addChunk(desc.id, done, samplesOf(chunk.get("pcm")), meta);
        fetched.set(desc.id, done + 1);
      }
    } catch (error) {
      engine.errors.push(String(error));
      engine.changed();
    } finally {
      fetching = false;
    }
  };
  const sync = () => {
    engine.update(model.get("stream"));
    pump().then(() => {
      const desc = model.get("stream");
      if (desc && (fetched.get(desc.id) ?? 0) < desc.chunks) pump();
    });
  };
  return sync;
}

function initialize({ model }) {
  const engine = engineFor(model);
  const sync = follow(model, engine);
  model.on("change:stream", sync);
  // Create the audio context now if the page may already play (the user has interacted with
  // it), so the first chunk does not wait for the context to start. Otherwise it is created
  // with the first chunk and, if the browser keeps it suspended, "Enable audio" appears.
  if (globalThis.navigator?.userActivation?.hasBeenActive) engine.ensureContext(24000);
  sync(); // whatever the kernel already made, this page plays or offers now
  const timer = setInterval(() => engine.tick(), TICK_MS);
  return () => {
    clearInterval(timer);
    model.off("change:stream", sync);
    engine.dispose();
    engines.delete(engine.playerId);
  };
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function seconds(s) {
  return `${s.toFixed(1)} s`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function stallText(heard) {
  if (!heard || !heard.stalls) return "no stalls";
  return `${plural(heard.stalls, "stall")} (${seconds(heard.stall_ms / 1000)})`;
}

function firstText(heard) {
  if (!heard || heard.first_audible_ms === null || heard.first_audible_ms === undefined) return "";
  return `first sound ${seconds(heard.first_audible_ms / 1000)} after the ${heard.since || "request"}`;
}

/** The status line: what the listener is getting, in the page's own measurements. */
export function describe(state) {
  const heard = state.heard;
  const chunkOf = state.totalChunks ? `chunk ${state.scheduled} of ${state.totalChunks}`
    : `chunk ${state.scheduled}`;
  switch (state.phase) {
    case "idle":
      return "No audio yet.";
    case "preparing":
      return "Preparing the first chunk…";
    case "queued":
      return `Queued: plays when “${state.queuedBehind || "the cell above"}” has been heard.`;
    case "blocked":
      return `The browser blocked autoplay: ${plural(state.pending, "chunk")} waiting. Click “Enable audio”.`;
    case "playing":
      return [`Playing · ${seconds(state.played)} heard of ${seconds(state.receivedSeconds)} made`,
        chunkOf, stallText(heard)].join(" · ");
    case "done":
      return ["Done", `heard ${seconds(state.played)}`, firstText(heard), stallText(heard)]
        .filter(Boolean).join(" · ");
    case "stopped":
      return `Stopped (${state.stopReason}) after ${seconds(state.played)} heard`;
    case "offered":
      return `Made before this page connected (${seconds(state.receivedSeconds)}): press ▶ below to listen.`;
    default:
      return state.phase;
  }
}

const CAPTION_CHUNKS_BEFORE = 2;
const CAPTION_CHUNKS_AFTER = 3;

/**
 * The cell's text under the player, with the word being heard highlighted. Driven by the
 * audio clock (the live schedule, or the <audio> element's position when the whole recording
 * is played), never by when messages arrived; only a window of chunks around the current one
 * is in the DOM, so a book-length reading stays light.
 */
function captionsView(engine) {
  const box = element("div", "kl-captions");
  let key = "";
  let spans = new Map(); // "seq:word" -> span
  let lit = null;
  const draw = (stream, around) => {
    const seqs = [...stream.chunks.keys()].sort((a, b) => a - b);
    const from = Math.max(0, around - CAPTION_CHUNKS_BEFORE);
    const to = around + CAPTION_CHUNKS_AFTER;
    const shown = seqs.filter((seq) => seq >= from && seq <= to);
    const next = `${stream.id}:${shown.join(",")}`;
    if (next === key) return;
    key = next;
    spans = new Map();
    lit = null;
    box.replaceChildren();
    for (const seq of shown) {
      const { text = "", words = [] } = stream.chunks.get(seq).meta;
      const part = element("span", "kl-chunk");
      let at = 0;
      words.forEach(([, , , start, end], index) => {
        if (start > at) part.append(text.slice(at, start));
        const span = element("span", "kl-word", text.slice(start, end));
        spans.set(`${seq}:${index}`, span);
        part.append(span);
        at = end;
      });
      part.append(`${text.slice(at)} `);
      box.append(part);
    }
  };
  const update = (position) => {
    const stream = engine.streams.get(engine.current);
    if (!stream || !stream.chunks.size) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    // The clock this frame was drawn for is kept beside the word it lit, so what is shown can
    // be checked against the audio exactly (the browser tests read both).
    const clock = position === null ? (engine.ctx ? engine.ctx.currentTime : 0) : null;
    const now = position === null ? engine.wordAt(clock) : engine.wordAtPosition(position);
    box.dataset.wordClock = clock === null ? "" : String(clock);
    draw(stream, now ? now.seq : 0);
    const span = now ? spans.get(`${now.seq}:${now.word}`) : null;
    box.dataset.wordAt = now ? `${now.seq}:${now.word}` : "";
    if (span === lit) return;
    if (lit) lit.classList.remove("kl-word-now");
    lit = span;
    box.dataset.word = span ? span.textContent : "";
    if (span) {
      span.classList.add("kl-word-now");
      // Keep the word in view inside the box without scrolling the notebook.
      const top = span.offsetTop - box.offsetTop;
      if (top < box.scrollTop || top > box.scrollTop + box.clientHeight - span.offsetHeight) {
        box.scrollTop = Math.max(0, top - box.clientHeight / 3);
      }
    }
  };
  return { box, update };
}

function render({ model, el }) {
  const engine = engineFor(model);
  const root = element("div", "kokoro-player");
  const row = element("div", "kl-row");
  const enable = element("button", "kl-enable", "▶ Enable audio");
  const stop = element("button", "kl-stop", "■ Stop");
  const status = element("span", "kl-status");
  row.append(enable, stop, status);
  const progress = element("div", "kl-progress");
  const received = element("div", "kl-received");
  const played = element("div", "kl-played");
  progress.append(received, played);
  const message = element("div", "kl-message");
  const note = element("div", "kl-note", "This player is shown more than once; its audio plays once.");
  const full = element("div", "kl-full");
  const audio = element("audio");
  audio.controls = true;
  const download = element("a", "kl-download", "Download WAV");
  download.download = "kokoro.wav";
  full.append(audio, download);
  const captions = captionsView(engine);
  root.append(row, progress, message, note, captions.box, full);
  el.append(root);
  // The whole recording played from the <audio> element moves the highlight too.
  for (const event of ["timeupdate", "seeked", "play"]) {
    audio.addEventListener(event, () => update());
  }

  enable.addEventListener("click", () => engine.enable());
  stop.addEventListener("click", () => engine.stop({ reason: "Stop pressed", fromUser: true }));

  let frame = null;
  let shownUrl = null;
  const update = () => {
    const state = engine.state();
    root.dataset.playerId = engine.playerId;
    root.dataset.phase = state.phase;
    root.dataset.audioState = state.audioState;
    root.dataset.scheduled = String(state.scheduled ?? 0);
    root.dataset.stalls = String(state.heard ? state.heard.stalls : 0);
    const line = describe(state);
    if (status.textContent !== line) status.textContent = line;
    enable.hidden = state.phase !== "blocked";
    stop.hidden = !["preparing", "queued", "blocked", "playing"].includes(state.phase);
    const made = state.receivedSeconds || 0;
    progress.hidden = state.phase === "idle" || state.phase === "offered";
    received.style.width = made > 0 ? "100%" : "0%";
    played.style.width = made > 0 ? `${Math.min(100, (100 * (state.played || 0)) / made)}%` : "0%";
    const text = model.get("message");
    message.textContent = text;
    message.hidden = !text;
    note.hidden = [...engine.views].indexOf(update) <= 0;
    const finished = ["done", "stopped", "offered"].includes(state.phase) && state.chunks > 0;
    full.hidden = !finished;
    if (finished) {
      const url = engine.wavUrl();
      if (url && url !== shownUrl) {
        shownUrl = url;
        audio.src = url;
        download.href = url;
      }
    }
    if (model.get("captions")) {
      const recording = ["offered", "done", "stopped"].includes(state.phase) && audio.currentTime > 0;
      captions.update(recording ? audio.currentTime : null);
    } else {
      captions.box.hidden = true;
    }
    // Refresh the progress bar and the highlight only while audio is actually playing.
    const playing = (state.phase === "playing" && state.audioState === "running") || !audio.paused;
    if (playing && frame === null) {
      frame = setTimeout(() => {
        frame = null;
        update();
      }, REFRESH_MS);
    }
  };
  engine.views.add(update);
  model.on("change:message", update);
  model.on("change:captions", update);
  engine.flush(); // audio held while no view showed this player may start now
  update();
  return () => {
    engine.views.delete(update);
    model.off("change:message", update);
    model.off("change:captions", update);
    if (frame !== null) clearTimeout(frame);
    engine.changed(); // another view may now be the first
    // Output cleared or cell deleted while playing: no view is left to stop the audio, so
    // stop it (and the kernel's stream) unless a view comes back at once (a re-render).
    setTimeout(() => {
      const phase = engine.state().phase;
      if (engine.views.size === 0 && ["playing", "queued", "blocked"].includes(phase)) {
        engine.stop({ reason: "player removed from the page", fromUser: true });
      }
    }, ORPHAN_GRACE_MS);
  };
}

registry();
export default { initialize, render };
