"""The latency chart: how synthesis kept ahead of playback, chunk by chunk (inline plotly).

Two panels:

* per chunk, synthesis time against the audio duration it produced (a chunk whose synthesis
  bar is taller than its audio bar was made slower than real time);
* a timeline since the cell ran: when each chunk was synthesized and, once a page has reported
  it, when it played there, with stalls in red and the first audible sample marked.

The rules:

* **Nothing here stands before the sound.** The figure is a plain plotly JSON document drawn by
  JupyterLab's plotly renderer inside an ``ipywidgets.Output``: no ``FigureWidget`` (whose
  multi-megabyte front-end bundle travels through the kernel for every chart), no plotly or
  pandas import on a background thread (an import racing the main thread's leaves a
  half-initialised module behind). It is redrawn by its own thread, at most once per
  :data:`REDRAW_S`, and only while the player has enough audio buffered (``may_draw``); the
  final state is always drawn, and it is what a page that connects later receives.
* **Only measured playback is drawn as playback.** The playback lane comes from a page's own
  reports (where each chunk was scheduled, when the first audible sample played); without a
  page (a headless run) the chart shows synthesis only and says so, with no first-audio marker
  and no stalls. Engine figures are labelled as the engine's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ipywidgets import Layout, Output

from ..engine.metrics import SAMPLE_RATE, Chunk, first_audible_sample, plural

STALL_MS = 5.0  # a gap in playback shorter than this is scheduling jitter, not a stall
REDRAW_S = 1.0
PLOTLY_MIME = "application/vnd.plotly.v1+json"
SYNTHESIS, AUDIO, STALL, FIRST = "#ef6c00", "#1e88e5", "#d32f2f", "#2e7d32"
CACHED = "#9e9e9e"  # a chunk the engine had made before: no synthesis now


@dataclass
class _Row:
    index: int
    started_ms: float
    ready_ms: float
    synthesis_ms: float
    audio_ms: float
    audible_ms: float  # offset of the first audible sample within the chunk
    start_s: float | None = None  # where a page scheduled it (its audio clock)
    cached: bool = False  # played from the engine's chunk cache (made before, not now)


# A page measures first sound from the request (the cell ran, Speak was pressed) unless it
# joined late or the speech was queued behind another; it then says so in ``since``.
NOT_FROM_REQUEST = ("page joined", "speech before it ended")
# How long a chart holds its drawing back while another utterance gets to its first sound.
FIRST_SOUND_HOLD_S = 3.0


class FirstSoundGate:
    """Utterances getting to their first sound; charts of other utterances wait for them.

    Why: after a busy cell, the speech that played during it reports its end, and its chart's
    final drawing (a plotly figure built in the kernel, rendered on the page's main thread)
    landed just as the next cell's first chunk was being made and received: the first sound
    came ~0.6 s late. A drawing can wait; the first sound cannot. Each hold lasts until the
    holder's first chunk is scheduled by a page, its end, or :data:`FIRST_SOUND_HOLD_S`.
    """

    def __init__(self) -> None:
        self._holders: set[int] = set()
        self._changed = threading.Condition()

    def hold(self, holder: object) -> None:
        with self._changed:
            self._holders.add(id(holder))

    def release(self, holder: object) -> None:
        with self._changed:
            self._holders.discard(id(holder))
            self._changed.notify_all()

    def wait_for_others(self, holder: object, timeout: float = FIRST_SOUND_HOLD_S) -> bool:
        """Wait until no utterance but ``holder`` is getting to its first sound; False if
        ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._holders - {id(holder)}, timeout)


FIRST_SOUND = FirstSoundGate()


def _on_request_clock(heard: dict) -> bool:
    return heard.get("since") not in NOT_FROM_REQUEST


class LatencyChart:
    """Per-chunk synthesis and playback of one utterance, drawn off the audio's path.

    Feed it with :meth:`add_chunk` (engine chunks), :meth:`add_report` (a page's ``scheduled``
    reports) and :meth:`set_heard` (a page's ``heard`` figures); display :attr:`widget`.
    """

    def __init__(self, height: int = 420, origin: str = "the cell ran",
                 may_draw: Callable[[], bool] | None = None) -> None:
        """``origin`` names the moment the timeline counts from (``reset``'s ``t0``), e.g.
        "the cell ran" for ``%%speak`` or "Speak was pressed" in the Studio. ``may_draw`` says
        whether a redraw may run now (the player has audio to spare)."""
        self.height = height
        self.origin = origin
        self.may_draw = may_draw or (lambda: True)
        self.owner: object = self  # the utterance it draws (see FirstSoundGate)
        # "auto", not 100 %: a widget's own margin would push a 100 % chart past the output.
        self.widget = Output(layout=Layout(width="auto", max_width="900px"))
        self._lock = threading.Lock()
        self._rows: list[_Row] = []
        self._t0: float | None = None
        self._heard: dict = {}
        self._dirty = threading.Event()
        self._final = False
        self._painter: threading.Thread | None = None
        self.tuning = ""  # which tuning made the audio (kokoro_lab.engine.tuning), for the title
        self.draws = 0  # how many times the figure was published (for tests and benchmarks)
        self.draw_cpu_s = 0.0  # kernel CPU time spent building and publishing it

    @property
    def figure(self) -> Output:
        """The displayable chart (kept for code written against the earlier FigureWidget)."""
        return self.widget

    # -- feeding ----------------------------------------------------------------------------

    def reset(self, t0: float) -> None:
        """Start a new utterance whose clock starts at ``t0`` (``time.perf_counter()``)."""
        with self._lock:
            self._t0, self._rows, self._heard, self._final = t0, [], {}, False
        self.request()

    def add_chunk(self, chunk: Chunk) -> None:
        with self._lock:
            if self._t0 is None:
                self._t0 = chunk.queued
            hit = first_audible_sample(chunk.audio)
            self._rows.append(_Row(
                index=chunk.index, started_ms=(chunk.started - self._t0) * 1000,
                ready_ms=(chunk.finished - self._t0) * 1000, synthesis_ms=chunk.synthesis_ms,
                audio_ms=chunk.audio_ms,
                audible_ms=(hit if hit is not None else 0) / SAMPLE_RATE * 1000,
                cached=chunk.cached,
            ))
        self.request()

    def add_report(self, report: dict) -> None:
        """A page's ``scheduled`` report for chunk ``report['seq']``: where it played."""
        with self._lock:
            seq = int(report["seq"])
            if seq < len(self._rows):
                self._rows[seq].start_s = float(report["start"])
        self.request()

    def set_heard(self, heard: dict) -> None:
        """A page's measured figures: first audible sample, stalls, seconds played."""
        with self._lock:
            self._heard = dict(heard)
        self.request()

    def take_report(self, report: dict) -> None:
        """Any page report: a ``scheduled`` one places a chunk's playback, a ``heard`` one
        brings the page's figures (and the final drawing once the page is done)."""
        kind = report.get("type")
        if kind == "scheduled":
            self.add_report(report)
        elif kind == "heard":
            self.set_heard(report)
            if report.get("final"):
                self.finish()

    def finish(self) -> None:
        """Draw the final state now (the utterance ended, or a page reported what it heard)."""
        with self._lock:
            self._final = True
        self.request()

    # -- drawing ----------------------------------------------------------------------------

    def request(self) -> None:
        """Ask for a redraw; the painter thread does it when allowed."""
        self._dirty.set()
        if self._painter is None:
            self._painter = threading.Thread(target=self._paint, name="kokoro-lab-chart",
                                             daemon=True)
            self._painter.start()

    def _paint(self) -> None:
        last = 0.0
        while True:
            self._dirty.wait()
            final = self._final
            wait = REDRAW_S - (time.monotonic() - last)
            if not final and (wait > 0 or not self._allowed()):
                time.sleep(max(wait, 0.2))
                continue
            FIRST_SOUND.wait_for_others(self.owner)
            self._dirty.clear()
            self.draw()
            last = time.monotonic()

    def _allowed(self) -> bool:
        try:
            return bool(self.may_draw())
        except Exception:  # a broken predicate must not stop the chart
            return True

    def draw(self) -> None:
        """Build the figure and publish it into :attr:`widget` (any thread)."""
        started = time.thread_time()
        try:
            figure = self.to_dict()
            output = {"output_type": "display_data", "metadata": {},
                      "data": {PLOTLY_MIME: figure, "text/plain": self.title()}}
            self.widget.outputs = (output,)
            self.draws += 1
        except Exception as error:  # shown in this chart's own output, never in another cell
            self.widget.outputs = ({"output_type": "stream", "name": "stderr",
                                    "text": f"latency chart failed: {error!r}\n"},)
        finally:
            self.draw_cpu_s += time.thread_time() - started

    def playback(self) -> list[tuple[float, float]]:
        """(start ms, end ms) per chunk a page played, on the cell's clock; [] without a page.

        The page's schedule (its audio clock) is placed on the cell's clock by its own first
        audible sample, which the page measured against when the cell ran.
        """
        with self._lock:
            rows, heard = list(self._rows), dict(self._heard)
        first = heard.get("first_audible_ms")
        if not rows or rows[0].start_s is None or first is None:
            return []
        if not _on_request_clock(heard):
            return []  # a late page or a queued speech: no common clock with the synthesis
        zero = first - rows[0].audible_ms - rows[0].start_s * 1000
        spans = []
        left_ms = heard["played_s"] * 1000 if heard.get("final") else float("inf")
        for row in rows:  # what was played: after a Stop, only until the Stop
            if row.start_s is None or left_ms <= 0:
                break
            start = zero + row.start_s * 1000
            spans.append((start, start + min(row.audio_ms, left_ms)))
            left_ms -= row.audio_ms
        return spans

    def first_sound_steps(self) -> list[tuple[str, float]]:
        """The page's breakdown of the first sound: (step, ms since the request), in order."""
        with self._lock:
            heard = dict(self._heard)
        if not _on_request_clock(heard):
            return []
        return [(str(step), float(ms)) for step, ms in heard.get("breakdown") or []]

    def first_audio_ms(self) -> float | None:
        """The page's first audible sample after the cell ran (None until a page reports it,
        or when the page joined late or the speech was queued behind another)."""
        with self._lock:
            heard = dict(self._heard)
        if not _on_request_clock(heard):
            return None
        return heard.get("first_audible_ms")

    def title(self) -> str:
        with self._lock:
            rows, heard = list(self._rows), dict(self._heard)
        if not rows:
            return "waiting for the first chunk…"
        cached = sum(r.cached for r in rows)
        suffix = (f" · {cached} cached" if cached else "") + (
            f" · tuning: {self.tuning}" if self.tuning else "")
        return self._headline(rows, heard) + suffix

    def _headline(self, rows: list[_Row], heard: dict) -> str:
        if heard.get("first_audible_ms") is not None:
            stalls = heard.get("stalls", 0)
            stall_text = (f"{plural(stalls, 'stall')} ({heard.get('stall_ms', 0) / 1000:.1f} s)"
                          if stalls else "no stalls")
            since = heard.get("since", "cell ran")
            first = (f"first sound {heard['first_audible_ms'] / 1000:.2f} s after the {since}")
            if not heard.get("final"):
                return f"heard so far: {first} · {plural(len(rows), 'chunk')} made"
            played = heard.get("chunks", len(rows))  # the status line's count: what played
            made = f" of {len(rows)} made" if played != len(rows) else ""
            return (f"heard: {first} · {stall_text} · {heard.get('played_s', 0):.1f} s played · "
                    f"{plural(played, 'chunk')}{made}")
        return (f"engine (internal): first chunk ready {rows[0].ready_ms:.0f} ms · "
                f"{plural(len(rows), 'chunk')} · no page has reported playback")

    def to_dict(self) -> dict:
        """The plotly figure as JSON-able data."""
        with self._lock:
            rows = list(self._rows)
        spans = self.playback()
        first = self.first_audio_ms() if spans else None
        stalls = [(spans[i - 1][1], spans[i][0]) for i in range(1, len(spans))
                  if spans[i][0] - spans[i - 1][1] > STALL_MS]
        lanes = ["synthesis", "playback"] if spans else ["synthesis"]
        data = [
            _bar("synthesis", [CACHED if r.cached else SYNTHESIS for r in rows],
                 [r.index for r in rows], [r.synthesis_ms for r in rows],
                 "chunk %{x}: %{y:.0f} ms %{customdata}",
                 ["(cached: made before)" if r.cached else "synthesis" for r in rows]),
            _bar("audio", AUDIO, [r.index for r in rows], [r.audio_ms for r in rows],
                 "chunk %{x}: %{y:.0f} ms of audio"),
            _lane("synthesizing", SYNTHESIS, [(r.started_ms, r.ready_ms) for r in rows],
                  "synthesis", [f"chunk {r.index} synthesized {r.started_ms:.0f}–"
                                f"{r.ready_ms:.0f} ms" for r in rows], legend=False),
        ]
        if spans:
            data.append(_lane("playing", AUDIO, spans, "playback",
                              [f"chunk {r.index} played {s:.0f}–{e:.0f} ms"
                               for r, (s, e) in zip(rows, spans, strict=False)], legend=False))
        if stalls:
            data.append(_lane("stall", STALL, stalls, "playback",
                              [f"stall {b - a:.0f} ms" for a, b in stalls], legend=True))
        steps = self.first_sound_steps()
        if steps:
            lanes.append("first sound")
            step_spans = [(start, end) for (_, start), (_, end)
                          in zip([("", 0.0), *steps], steps, strict=False)]
            shades = [FIRST if i % 2 == 0 else "#81c784" for i in range(len(steps))]
            data.append(_lane("first sound", shades, step_spans, "first sound",
                              [f"{step}: {end:.0f} ms (+{end - start:.0f})"
                               for (step, end), (start, _) in zip(steps, step_spans,
                                                                  strict=True)],
                              legend=False))
        shapes, annotations = [], []
        if first is not None:
            shapes.append({"type": "line", "xref": "x2", "yref": "y2 domain", "x0": first,
                           "x1": first, "y0": 0, "y1": 1,
                           "line": {"color": FIRST, "dash": "dash", "width": 2}})
            # Above the lanes, not on the bars.
            annotations.append({"xref": "x2", "yref": "y2 domain", "x": first, "y": 1.0,
                                "yanchor": "bottom", "xanchor": "left", "showarrow": False,
                                "text": f"first sound {first:.0f} ms",
                                "font": {"color": FIRST, "size": 11}})
        elif rows:
            with self._lock:
                since = self._heard.get("since")
            note = {None: "playback: not reported by a page yet",
                    "speech before it ended": "playback: queued, after the speech before it",
                    "page joined": "playback: this page joined after the cell ran"}
            annotations.append({"xref": "x2 domain", "yref": "y2 domain", "x": 1.0, "y": 1.0,
                                "yanchor": "bottom", "xanchor": "right", "showarrow": False,
                                "text": note.get(since, note[None]),
                                "font": {"color": "#757575", "size": 11}})
        return {"data": data, "layout": self._layout(lanes, shapes, annotations),
                "config": {"displaylogo": False}}

    def _layout(self, lanes: list[str], shapes: list[dict], annotations: list[dict]) -> dict:
        panel_titles = [
            {"xref": "paper", "yref": "paper", "x": 0, "y": 0.9, "xanchor": "left",
             "yanchor": "bottom", "showarrow": False, "font": {"size": 12},
             "text": "Per chunk: synthesis time vs audio made"},
            {"xref": "paper", "yref": "paper", "x": 0, "y": 0.42, "xanchor": "left",
             "yanchor": "bottom", "showarrow": False, "font": {"size": 12},
             "text": f"Timeline since {self.origin}"},
        ]
        return {
            "height": self.height, "barmode": "group", "bargap": 0.25,
            "margin": {"l": 80, "r": 20, "t": 64, "b": 40},
            "title": {"text": self.title(), "x": 0, "xanchor": "left", "y": 0.985,
                      "yanchor": "top", "font": {"size": 13}},
            # Top right of the first panel, under the title row where the modebar appears.
            "legend": {"orientation": "h", "x": 1.0, "xanchor": "right", "y": 0.9,
                       "yanchor": "bottom"},
            "xaxis": {"dtick": 1, "tickprefix": "chunk ", "anchor": "y"},
            "yaxis": {"title": {"text": "ms"}, "domain": [0.58, 0.88], "anchor": "x"},
            "xaxis2": {"title": {"text": f"ms since {self.origin}"}, "anchor": "y2",
                       "rangemode": "tozero"},
            "yaxis2": {"domain": [0.0, 0.36], "type": "category", "categoryorder": "array",
                       "categoryarray": list(reversed(lanes)), "anchor": "x2"},
            "shapes": shapes, "annotations": panel_titles + annotations,
        }


def _bar(name: str, color: str | list[str], x: list, y: list, hover: str,
         customdata: list | None = None) -> dict:
    extra = {"customdata": customdata} if customdata is not None else {}
    return {"type": "bar", "name": name, "x": x, "y": y, "marker": {"color": color}, **extra,
            "xaxis": "x", "yaxis": "y", "hovertemplate": hover + "<extra></extra>"}


def _lane(name: str, color: str | list[str], spans: list[tuple[float, float]], lane: str,
          hover: list[str], legend: bool) -> dict:
    return {"type": "bar", "orientation": "h", "name": name, "marker": {"color": color},
            "base": [a for a, _ in spans], "x": [b - a for a, b in spans],
            "y": [lane] * len(spans), "xaxis": "x2", "yaxis": "y2", "offsetgroup": "timeline",
            "showlegend": legend, "customdata": hover,
            "hovertemplate": "%{customdata}<extra></extra>"}
