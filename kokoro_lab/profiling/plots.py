"""Plotly figures of a :class:`~kokoro_lab.profiling.runner.ProfileReport`.

* ``bars``: time to first audio, RTF and session load per cell, grouped by precision and
  coloured by provider, with whiskers from the fastest to the slowest repeat; for a report
  judged by ear (``quality=True``) a second row below, cell for cell: PESQ-WB against the
  reference rendering, DNSMOS OVRL and the ASR's word error rate, with the reference's own
  scores as dashed lines.
* ``rtf_vs_length``: every measured chunk's RTF against its phoneme count (the fixed cost of
  a call makes short chunks expensive; this shows where each cell's curve flattens).
* ``timeline``: for each cell's median run, when each chunk was synthesized against when it
  would play, in the ``%%speak`` latency chart's colours (synthesis orange, playing blue,
  stalls red, first audio dashed green).

* ``ops_figure``: an :class:`~kokoro_lab.profiling.ops.OpsProfile`: one horizontal bar per
  stage of the first chunk (text → inputs → front → generator → finish → hand-off), the
  model's stages split by op type, each op type in one colour wherever it appears.

Playback is simulated exactly as :func:`kokoro_lab.engine.metrics.simulate_playback` does:
each chunk plays when it is ready and the previous one has finished.
"""

from __future__ import annotations

import html
import os
import textwrap
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from .judges import reference_note

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
BAR_FIGURES = (("first_audio_ms", "time to first audio (ms)"), ("rtf", "real-time factor"),
               ("load_ms", "session load (ms)"))
QUALITY_BARS = (("pesq_wb", "PESQ-WB vs reference"), ("dnsmos_ovrl", "DNSMOS OVRL"),
                ("wer", "word error rate (ASR)"))
# The timeline speaks the %%speak latency chart's colours (kokoro_lab.notebook.chart), so one
# reading of a colour holds everywhere.
SYNTHESIS, PLAYING, STALL, FIRST_AUDIO = "#ef6c00", "#1e88e5", "#d32f2f", "#2e7d32"
NOTE_WIDTH = 120  # characters per line of the absent-cell notes under the bars


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def bars(report) -> go.Figure:
    """Grouped bars (x: precision, colour: provider): speed on top (medians, whiskers from the
    fastest to the slowest repeat) and, for a judged report, quality below it, cell for cell."""
    rows = [BAR_FIGURES, QUALITY_BARS] if report.judged else [BAR_FIGURES]
    fig = make_subplots(rows=len(rows), cols=len(BAR_FIGURES), vertical_spacing=0.22,
                        subplot_titles=[title for row in rows for _, title in row])
    providers = list(dict.fromkeys(c.provider for c in report.cells))
    for p_index, provider in enumerate(providers):
        cells = [c for c in report.cells if c.provider == provider]
        for row, figures in enumerate(rows, start=1):
            for col, (figure, _) in enumerate(figures, start=1):
                medians, error = _bar_values(cells, figure)
                fig.add_trace(go.Bar(
                    x=[c.precision for c in cells], y=medians, error_y=error, name=provider,
                    legendgroup=provider, showlegend=row == col == 1,
                    marker_color=_colour(p_index), hovertext=[c.model for c in cells],
                ), row=row, col=col)
    fig.add_hline(y=1.0, line_dash="dot", line_color="grey", row=1, col=2)
    if report.judged:
        fig.update_yaxes(range=[1.0, 4.64], row=2, col=1)  # PESQ-WB's scale
        fig.update_yaxes(range=[1.0, 5.0], row=2, col=2)  # DNSMOS's
        fig.update_yaxes(rangemode="nonnegative", row=2, col=3)  # WER: 0 is perfect
        if report.reference:
            _reference_lines(fig, report.reference)
    title = (f"{plural(len(report.cells), 'cell')} × {plural(report.repeats, 'repeat')} · "
             "median, whiskers min–max" + (" · quality of the last run" if report.judged else ""))
    notes = absent_notes(report)
    height = 340 * len(rows) + 14 * len(notes)
    fig.update_layout(barmode="group", title=title, height=height,
                      margin=dict(t=80, b=50 + 14 * len(notes)))
    if notes:
        fig.add_annotation(text="<br>".join(html.escape(line) for line in notes),
                           xref="paper", yref="paper", x=0, y=0, yshift=-36, showarrow=False,
                           align="left", xanchor="left", yanchor="top",
                           font=dict(size=10, color="grey"))
    return fig


def _bar_values(cells: list, figure: str) -> tuple[list[float], dict | None]:
    """Per cell: the bar's height, and the min–max whiskers of a timed figure (None for the
    load time, measured once, and for quality, judged once)."""
    if figure == "load_ms":
        return [c.load_ms for c in cells], None
    if figure in dict(QUALITY_BARS):
        return [c.quality.get(figure, float("nan")) for c in cells], None
    spreads = [c.spread(figure) for c in cells]
    return [s["median"] for s in spreads], dict(
        type="data", symmetric=False, array=[s["max"] - s["median"] for s in spreads],
        arrayminus=[s["median"] - s["min"] for s in spreads])


def _reference_lines(fig: go.Figure, reference: dict) -> None:
    """The reference's own DNSMOS and WER as dashed lines: the bar each row is read against."""
    for col, (figure, _) in enumerate(QUALITY_BARS, start=1):
        value = reference.get(figure)
        if isinstance(value, (int, float)) and value == value:
            fig.add_hline(y=value, line_dash="dash", line_color="#616161", row=2, col=col,
                          annotation_text="reference", annotation_position="top left",
                          annotation_font_size=10)


def absent_notes(report, width: int = NOTE_WIDTH) -> list[str]:
    """The absent cells' reasons as lines of at most ``width`` characters, wrapped between
    words: a reason is read whole or not at all, never cut mid-word."""
    lines = []
    for provider, precisions, reason in report.absent_groups():
        lines += textwrap.wrap(f"absent {provider} ({', '.join(precisions)}): {reason}",
                               width=width, subsequent_indent="    ", break_long_words=False,
                               break_on_hyphens=False)
    return lines


def plural(count: int, word: str) -> str:
    """``"1 cell"``, ``"3 cells"``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def rtf_vs_length(report) -> go.Figure:
    """Per-chunk RTF against phoneme count, one colour per cell."""
    fig = go.Figure()
    for i, cell in enumerate(report.cells):
        chunks = [c for m in cell.runs for c in m.chunks]
        fig.add_trace(go.Scatter(
            x=[c["phonemes"] for c in chunks], y=[c["rtf"] for c in chunks], mode="markers",
            name=cell.key, marker=dict(color=_colour(i), size=7, opacity=0.75),
            hovertemplate="%{x} phonemes<br>RTF %{y:.3f}<extra>" + cell.key + "</extra>",
        ))
    fig.add_hline(y=1.0, line_dash="dot", line_color="grey",
                  annotation_text="real time", annotation_position="top left")
    fig.update_layout(title="RTF against chunk length", xaxis_title="phonemes in the chunk",
                      yaxis_title="synthesis time / audio time", height=380)
    return fig


def playback_schedule(chunks: list[dict]) -> tuple[list[tuple[float, float]], list]:
    """(play start, play end) per chunk and the stalls (from, to) after playback began."""
    clock, spans, stalls = 0.0, [], []
    for i, chunk in enumerate(chunks):
        ready = chunk["ready_ms"]
        if i and ready > clock:
            stalls.append((clock, ready))
        start = max(clock, ready)
        clock = start + chunk["audio_ms"]
        spans.append((start, clock))
    return spans, stalls


def timeline(report) -> go.Figure:
    """Synthesis against simulated playback per chunk for each cell's median run, in the
    latency chart's colours: synthesis orange, playing blue, stalls red, first audio green."""
    cells = [c for c in report.cells if c.runs]
    fig = make_subplots(rows=max(1, len(cells)), cols=1, shared_xaxes=True,
                        subplot_titles=[f"{c.key} (median-RTF run)" for c in cells],
                        vertical_spacing=0.08)
    for row, cell in enumerate(cells, start=1):
        run = cell.median_run()
        spans, stalls = playback_schedule(run.chunks)
        first = row == 1
        fig.add_trace(_lane("synthesis", SYNTHESIS, "synthesis",
                            [(c["start_ms"], c["ready_ms"]) for c in run.chunks], run.chunks,
                            "chunk %{text}: synthesized %{base:.0f} ms + %{x:.0f} ms", first),
                      row=row, col=1)
        fig.add_trace(_lane("playing", PLAYING, "playback", spans, run.chunks,
                            "chunk %{text}: plays %{base:.0f} ms for %{x:.0f} ms", first),
                      row=row, col=1)
        if stalls:
            fig.add_trace(_lane("stall", STALL, "playback", stalls, None,
                                "stall %{x:.0f} ms", first), row=row, col=1)
        first_audio = run.figures.get("first_audio_ms")
        if first_audio is not None and first_audio == first_audio:
            fig.add_vline(x=first_audio, line_dash="dash", line_color=FIRST_AUDIO, line_width=2,
                          row=row, col=1)
    fig.update_layout(barmode="overlay", height=150 + 170 * max(1, len(cells)),
                      title="synthesis vs simulated playback per chunk (red: stall, dashed "
                            "green: first audio)")
    # synthesis above playback, as in the %%speak chart (category arrays list bottom first)
    fig.update_yaxes(categoryorder="array", categoryarray=["playback", "synthesis"])
    fig.update_xaxes(title_text="ms since the call", row=max(1, len(cells)), col=1)
    return fig


def _lane(name: str, colour: str, lane: str, spans: list[tuple[float, float]],
          chunks: list[dict] | None, hover: str, legend: bool) -> go.Bar:
    """One lane of the timeline: a horizontal bar per (start, end) span."""
    labels = [str(c["index"]) for c in chunks] if chunks is not None else None
    return go.Bar(y=[lane] * len(spans), base=[a for a, _ in spans], x=[b - a for a, b in spans],
                  orientation="h", marker_color=colour, name=name, legendgroup=name,
                  showlegend=legend, text=labels, textposition="inside" if labels else None,
                  hovertemplate=hover + "<extra></extra>")


def figures(report) -> dict[str, go.Figure]:
    """All figures of a report by name."""
    return {"bars": bars(report), "rtf_vs_length": rtf_vs_length(report),
            "timeline": timeline(report)}


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(report) -> str:
    rows = report.summary()
    columns = ["provider", "precision", "first_audio_ms", "rtf", "load_ms", "load_rss_mb"]
    if report.judged:
        columns += ["wer", "pesq_wb", "dnsmos_ovrl", "dnsmos_sig", "dnsmos_p808"]
    columns += ["model", "absent"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            if isinstance(value, float):
                value = f"{value:.0f}" if c.endswith(("_ms", "_mb")) else f"{value:.3f}"
            cells.append(f"<td>{html.escape(str(value if value is not None else ''))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_html(report, path: str | os.PathLike) -> Path:
    """One self-contained HTML page (plotly.js inlined once, works offline)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = report.machine
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>kokoro-lab profile</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px}</style></head><body>",
        "<h1>kokoro-lab profile</h1>",
        f"<p>{html.escape(machine.get('cpu', ''))} · GPU: "
        f"{html.escape(machine.get('gpu') or 'none')} · {machine.get('cores')} cores · "
        f"onnxruntime {html.escape(str(machine.get('versions', {}).get('onnxruntime', '?')))}"
        f"</p><p>text: {html.escape(_clip(report.text, 300))}</p>",
        _table(report),
    ]
    if report.judged and report.reference:
        parts.append(f"<p>{html.escape(reference_note(report.reference).strip('*'))}</p>")
    for i, fig in enumerate(figures(report).values()):
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=i == 0))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


OPS_PALETTE = ("#d62728", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")
OPS_SHOWN = 7  # op types named in the legend; the rest are "other ops"


def ops_figure(profile) -> go.Figure:
    """Stacked horizontal bars: where the first chunk's milliseconds went, stage by stage,
    the model's stages split by op type (the heaviest :data:`OPS_SHOWN` named)."""
    heaviest: dict[str, float] = {}
    for row in profile.rows:
        heaviest[row.op_type] = heaviest.get(row.op_type, 0.0) + row.ms
    named = sorted(heaviest, key=heaviest.get, reverse=True)[:OPS_SHOWN]
    colours = {op: OPS_PALETTE[i % len(OPS_PALETTE)] for i, op in enumerate(named)}
    stages = list(profile.stages)
    segments: dict[str, dict[str, float]] = {}  # legend entry -> stage -> ms
    for stage, ms in profile.stages.items():
        rows = profile.stage_ops(stage) or profile.stage_ops("model" if stage == "front" else "")
        if not rows:
            segments.setdefault(stage, {})[stage] = ms
            continue
        kernel = sum(r.ms for r in rows)
        for row in rows:  # the stage's wall time, shared out by its ops' kernel time
            name = row.op_type if row.op_type in colours else "other ops"
            segments.setdefault(name, {})
            segments[name][stage] = segments[name].get(stage, 0.0) + ms * row.ms / kernel
    fig = go.Figure()
    for name, per_stage in segments.items():
        fig.add_trace(go.Bar(
            y=stages, x=[per_stage.get(stage, 0.0) for stage in stages], orientation="h",
            name=name, marker_color=colours.get(name, "#c7c7c7" if name == "other ops"
                                               else "#9e9e9e"),
            hovertemplate=f"{html.escape(name)}: %{{x:.1f}} ms<extra>%{{y}}</extra>"))
    total = sum(profile.stages.values())
    fig.update_layout(
        barmode="stack", height=360, margin={"l": 90, "r": 20, "t": 60, "b": 40},
        title=(f"First chunk: {total:.0f} ms for {profile.audio_s:.2f} s of audio · "
               f"{profile.precision}/{profile.provider}, {profile.decoder}, "
               f"{profile.threads} threads"),
        xaxis_title="ms (median of warm runs)", yaxis={"autorange": "reversed"},
        legend={"orientation": "h", "y": -0.25})
    return fig


__all__ = ["bars", "figures", "ops_figure", "playback_schedule", "rtf_vs_length", "timeline",
           "write_html"]
