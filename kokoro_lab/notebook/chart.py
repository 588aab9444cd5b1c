"""The live latency chart: how synthesis keeps ahead of playback, chunk by chunk.

Two panels, updated as chunks arrive (plotly ``FigureWidget``):

* per chunk, synthesis time against the audio duration it produced (a chunk whose bar is
  taller for synthesis than for audio was made slower than real time);
* a timeline since the cell ran: when each chunk was synthesized and when it played, with
  stalls (playback waiting for synthesis) drawn in red and time to first audio marked.

The rule for the playback row: a browser's own schedule (its reports) wins; until one arrives,
or with no browser at all (headless runs), playback is *estimated* the way the engine's
simulated player does it: each chunk starts when it is ready or when the previous one ends,
whichever is later.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..engine.metrics import SAMPLE_RATE, Chunk, first_audible_sample

STALL_MS = 1.0  # a gap in playback shorter than this is rounding, not a stall
SYN, AUD, SYN_T, PLAY_T, STALL_T, FIRST_T = range(6)


@dataclass
class _Row:
    index: int
    started_ms: float
    ready_ms: float
    synthesis_ms: float
    audio_ms: float
    audible_ms: float  # offset of the first audible sample within the chunk
    played_ms: float | None = None  # measured start in the browser, on the kernel's clock


class LatencyChart:
    """A plotly ``FigureWidget`` fed with :class:`Chunk` objects as they are synthesized."""

    def __init__(self, height: int = 420, origin: str = "the cell ran") -> None:
        """``origin`` names the moment the timeline counts from (``reset``'s ``t0``), e.g.
        "the cell ran" for ``%%speak`` or "Speak was pressed" in the Studio."""
        base = make_subplots(
            rows=2, cols=1, vertical_spacing=0.2, row_heights=[0.5, 0.5],
            subplot_titles=("Per chunk (by index): synthesis time vs audio duration",
                            f"Timeline since {origin}"),
        )
        self.figure = go.FigureWidget(base)
        self._lock = threading.Lock()
        self._rows: list[_Row] = []
        self._t0: float | None = None
        self._anchor: tuple[float, float] | None = None  # (kernel ms, browser start s) of seq 0
        with self.figure.batch_update():
            self.figure.add_bar(name="synthesis", marker_color="#ef6c00", row=1, col=1,
                                hovertemplate="chunk %{x}: %{y:.0f} ms synthesis<extra></extra>")
            self.figure.add_bar(name="audio", marker_color="#1e88e5", row=1, col=1,
                                hovertemplate="chunk %{x}: %{y:.0f} ms audio<extra></extra>")
            for name, color in (("synthesizing", "#ef6c00"), ("playing", "#1e88e5"),
                                ("stall", "#d32f2f")):
                # One offset group: the timeline rows are lanes, not grouped bars side by side.
                self.figure.add_bar(name=name, orientation="h", marker_color=color,
                                    offsetgroup="timeline", showlegend=name == "stall",
                                    row=2, col=1,
                                    hovertemplate="%{customdata}<extra></extra>")
            self.figure.add_scatter(name="first audio", mode="lines+text", row=2, col=1,
                                    line={"color": "#2e7d32", "dash": "dash", "width": 2},
                                    textposition="top right", hoverinfo="skip")
            self.figure.update_layout(
                height=height, barmode="group", margin={"l": 90, "r": 20, "t": 60, "b": 60},
                legend={"orientation": "h", "y": -0.12, "yanchor": "top", "x": 0.0},
                bargap=0.25,
                title={"text": "waiting for the first chunk…", "x": 0.0, "xanchor": "left",
                       "y": 0.99, "yanchor": "top", "font": {"size": 13}},
            )
            self.figure.update_xaxes(dtick=1, row=1, col=1)
            self.figure.update_yaxes(title_text="ms", row=1, col=1)
            self.figure.update_xaxes(ticksuffix=" ms", row=2, col=1)
            self.figure.update_yaxes(categoryorder="array", row=2, col=1,
                                     categoryarray=["playback", "synthesis"])

    # -- feeding ----------------------------------------------------------------------------

    def reset(self, t0: float) -> None:
        """Start a new utterance whose clock starts at ``t0`` (``time.perf_counter()``)."""
        with self._lock:
            self._t0 = t0
            self._rows = []
            self._anchor = None
            self._redraw()

    def add_chunk(self, chunk: Chunk) -> None:
        with self._lock:
            if self._t0 is None:
                self._t0 = chunk.queued
            hit = first_audible_sample(chunk.audio)
            self._rows.append(_Row(
                index=chunk.index,
                started_ms=(chunk.started - self._t0) * 1000,
                ready_ms=(chunk.finished - self._t0) * 1000,
                synthesis_ms=chunk.synthesis_ms,
                audio_ms=chunk.audio_ms,
                audible_ms=(hit if hit is not None else 0) / SAMPLE_RATE * 1000,
            ))
            self._redraw()

    def add_report(self, report: dict) -> None:
        """A browser's ``scheduled`` report for chunk ``report['seq']``: measured playback."""
        with self._lock:
            if self._t0 is None:
                return
            seq = int(report["seq"])
            if self._anchor is None:
                # The browser reports its schedule in its audio clock; place that on ours once,
                # using when the report reached the kernel, then keep the browser's own spacing.
                lead = (report["start"] - report["now"]) * 1000
                self._anchor = ((report["received"] - self._t0) * 1000 + lead, report["start"])
            kernel_ms, browser_s = self._anchor
            if seq < len(self._rows):
                self._rows[seq].played_ms = kernel_ms + (report["start"] - browser_s) * 1000
                self._redraw()

    # -- drawing ----------------------------------------------------------------------------

    def playback(self) -> list[tuple[float, float, bool]]:
        """(start ms, end ms, measured?) per chunk on the cell's clock."""
        spans = []
        clock = None
        for row in self._rows:
            if row.played_ms is not None:
                start, measured = row.played_ms, True
            else:
                start = row.ready_ms if clock is None else max(clock, row.ready_ms)
                measured = False
            spans.append((start, start + row.audio_ms, measured))
            clock = start + row.audio_ms
        return spans

    def first_audio_ms(self) -> float | None:
        spans = self.playback()
        if not spans:
            return None
        return spans[0][0] + self._rows[0].audible_ms

    def _redraw(self) -> None:
        rows = self._rows
        spans = self.playback()
        stalls = [(spans[i - 1][1], spans[i][0]) for i in range(1, len(spans))
                  if spans[i][0] - spans[i - 1][1] > STALL_MS]
        first = self.first_audio_ms()
        data = self.figure.data
        with self.figure.batch_update():
            data[SYN].x = [r.index for r in rows]
            data[SYN].y = [r.synthesis_ms for r in rows]
            data[AUD].x = [r.index for r in rows]
            data[AUD].y = [r.audio_ms for r in rows]
            data[SYN_T].base = [r.started_ms for r in rows]
            data[SYN_T].x = [r.synthesis_ms for r in rows]
            data[SYN_T].y = ["synthesis"] * len(rows)
            data[SYN_T].customdata = [
                f"chunk {r.index} synthesized {r.started_ms:.0f}–{r.ready_ms:.0f} ms "
                f"(RTF {r.synthesis_ms / r.audio_ms:.2f})" if r.audio_ms else f"chunk {r.index}"
                for r in rows
            ]
            data[PLAY_T].base = [s for s, _, _ in spans]
            data[PLAY_T].x = [e - s for s, e, _ in spans]
            data[PLAY_T].y = ["playback"] * len(spans)
            data[PLAY_T].customdata = [
                f"chunk {r.index} plays {s:.0f}–{e:.0f} ms ({'browser' if m else 'estimated'})"
                for r, (s, e, m) in zip(rows, spans, strict=True)
            ]
            data[STALL_T].base = [a for a, _ in stalls]
            data[STALL_T].x = [b - a for a, b in stalls]
            data[STALL_T].y = ["playback"] * len(stalls)
            data[STALL_T].customdata = [f"stall {b - a:.0f} ms" for a, b in stalls]
            if first is not None:
                data[FIRST_T].x = [first, first]
                data[FIRST_T].y = ["synthesis", "playback"]
                data[FIRST_T].text = ["", f"first audio {first:.0f} ms"]
                stall_ms = sum(b - a for a, b in stalls)
                source = "browser" if spans and spans[0][2] else "estimated"
                self.figure.layout.title.text = (
                    f"first audio {first:.0f} ms · {len(rows)} chunks · "
                    f"stalls {len(stalls)} ({stall_ms:.0f} ms) · playback {source}"
                )
            else:
                data[FIRST_T].x, data[FIRST_T].y, data[FIRST_T].text = [], [], []
                self.figure.layout.title.text = "waiting for the first chunk…"
