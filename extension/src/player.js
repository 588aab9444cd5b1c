// kokoro_lab streaming player: the anywidget front-end (built into kokoro_lab/static/player.js).
//
// Lifecycle: `initialize` runs once per player model on the page; it owns the audio engine and
// answers the kernel's chunks. It tells the kernel it is listening with a "ready" message (the
// handshake: the kernel holds chunks until then, since messages sent to a front-end that has
// not attached its handler yet would be lost). `render` runs once per view and only draws.

import { PlayerEngine, registry } from "./audio.js";

const engines = new Map(); // player_id -> PlayerEngine
const ORPHAN_GRACE_MS = 1000;

function engineFor(model) {
  const id = model.get("player_id");
  let engine = engines.get(id);
  if (!engine) {
    engine = new PlayerEngine({ playerId: id, send: (msg) => model.send(msg) });
    engines.set(id, engine);
  }
  return engine;
}

function initialize({ model }) {
  const engine = engineFor(model);
  const onMessage = (msg, buffers) => engine.handle(msg, buffers);
  model.on("msg:custom", onMessage);
  // Create the audio context now if the page may already play (the user has interacted with
  // it), so the first chunk does not wait for the context to start. Otherwise it is created
  // with the first chunk and, if the browser keeps it suspended, "Enable audio" appears.
  if (globalThis.navigator?.userActivation?.hasBeenActive) engine.ensureContext(24000);
  engine.ready();
  return () => {
    model.off("msg:custom", onMessage);
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

function describe(state) {
  const underruns = state.streamUnderruns ?? 0;
  const tail = underruns ? ` · ${underruns} underrun${underruns > 1 ? "s" : ""}` : "";
  const total = state.totalChunks ?? "…";
  switch (state.phase) {
    case "waiting":
      return "Waiting for audio…";
    case "blocked":
      return `The browser blocked autoplay: ${state.pending} chunk(s) waiting. Click “Enable audio”.`;
    case "streaming":
      return `Playing · chunk ${state.scheduled}/${total} · ${seconds(state.played)} of ${seconds(state.receivedSeconds)}${tail}`;
    case "stopped":
      return `Stopped (${state.stopReason}) after ${seconds(state.played)}${tail}`;
    case "done":
      return `Done · ${state.chunks} chunks · ${seconds(state.receivedSeconds)}${tail}`;
    default:
      return state.phase;
  }
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
  root.append(row, progress, message, note, full);
  el.append(root);

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
    root.dataset.underruns = String(state.streamUnderruns ?? 0);
    status.textContent = describe(state);
    enable.hidden = state.phase !== "blocked";
    stop.disabled = !(state.phase === "streaming" || state.phase === "blocked");
    const total = Math.max(state.receivedSeconds || 0, 1e-6);
    const expected = Math.max(total, state.scheduledSeconds || 0);
    received.style.width = `${Math.min(100, (100 * total) / expected)}%`;
    played.style.width = `${Math.min(100, (100 * (state.played || 0)) / expected)}%`;
    const text = model.get("message");
    message.textContent = text;
    message.hidden = !text;
    note.hidden = [...engine.views].indexOf(update) <= 0;
    const finished = state.ended && (state.phase === "done" || state.phase === "stopped");
    full.hidden = !finished;
    if (finished) {
      const url = engine.wavUrl();
      if (url && url !== shownUrl) {
        shownUrl = url;
        audio.src = url;
        download.href = url;
      }
    }
    // Animate the progress bar only while audio is actually playing.
    if (state.phase === "streaming" && state.audioState === "running") {
      if (frame === null) {
        frame = requestAnimationFrame(() => {
          frame = null;
          update();
        });
      }
    }
  };
  engine.views.add(update);
  model.on("change:message", update);
  update();
  return () => {
    engine.views.delete(update);
    model.off("change:message", update);
    if (frame !== null) cancelAnimationFrame(frame);
    engine.changed(); // another view may now be the first
    // Output cleared or cell deleted while playing: no view is left to stop the audio, so
    // stop it (and the kernel's stream) unless a view comes back at once (a re-render).
    setTimeout(() => {
      if (engine.views.size === 0 && engine.state().phase === "streaming") {
        engine.stop({ reason: "player removed from the page", fromUser: true });
      }
    }, ORPHAN_GRACE_MS);
  };
}

registry();
export default { initialize, render };
