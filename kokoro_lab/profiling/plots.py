"""Plotly figures of a :class:`~kokoro_lab.profiling.runner.ProfileReport`.

* ``bars``: time to first audio, RTF and session load per cell, grouped by precision and
  coloured by provider, with whiskers from the fastest to the slowest repeat.
* ``rtf_vs_length``: every measured chunk's RTF against its phoneme count (the fixed cost of
  a call makes short chunks expensive; this shows where each cell's curve flattens).
* ``timeline``: for each cell's median run, when each chunk was synthesized against when it
  would play, with the stalls (player waiting for a late chunk) shaded.

Playback is simulated exactly as :func:`kokoro_lab.engine.metrics.simulate_playback` does:
each chunk plays when it is ready and the previous one has finished.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
BAR_FIGURES = (("first_audio_ms", "time to first audio (ms)"), ("rtf", "real-time factor"),
               ("load_ms", "session load (ms)"))


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def bars(report) -> go.Figure:
    """Grouped bars (x: precision, colour: provider) with min–max whiskers per figure."""
    fig = make_subplots(rows=1, cols=len(BAR_FIGURES),
                        subplot_titles=[title for _, title in BAR_FIGURES])
    providers = list(dict.fromkeys(c.provider for c in report.cells))
    for p_index, provider in enumerate(providers):
        cells = [c for c in report.cells if c.provider == provider]
        for col, (figure, _) in enumerate(BAR_FIGURES, start=1):
            if figure == "load_ms":
                medians = [c.load_ms for c in cells]
                error = None
            else:
                spreads = [c.spread(figure) for c in cells]
                medians = [s["median"] for s in spreads]
                error = dict(type="data", symmetric=False,
                             array=[s["max"] - s["median"] for s in spreads],
                             arrayminus=[s["median"] - s["min"] for s in spreads])
            fig.add_trace(go.Bar(
                x=[c.precision for c in cells], y=medians, error_y=error, name=provider,
                legendgroup=provider, showlegend=col == 1, marker_color=_colour(p_index),
                hovertext=[c.model for c in cells],
            ), row=1, col=col)
    fig.add_hline(y=1.0, line_dash="dot", line_color="grey", row=1, col=2)
    title = f"{len(report.cells)} cells × {report.repeats} repeats · median, whiskers min–max"
    fig.update_layout(barmode="group", title=title, height=380,
                      margin=dict(t=80, b=40 + 18 * len(report.absent_groups())))
    if report.absent:
        lines = [f"absent {provider} ({', '.join(precisions)}): {_clip(reason, 110)}"
                 for provider, precisions, reason in report.absent_groups()]
        fig.add_annotation(text="<br>".join(html.escape(line) for line in lines),
                           xref="paper", yref="paper", x=0, y=-0.12, showarrow=False,
                           align="left", xanchor="left", yanchor="top",
                           font=dict(size=10, color="grey"))
    return fig


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
    """Synthesis against playback per chunk for each cell's median run; stalls shaded red."""
    cells = [c for c in report.cells if c.runs]
    fig = make_subplots(rows=max(1, len(cells)), cols=1, shared_xaxes=True,
                        subplot_titles=[f"{c.key} (median-RTF run)" for c in cells],
                        vertical_spacing=0.08)
    for row, cell in enumerate(cells, start=1):
        run = cell.median_run()
        spans, stalls = playback_schedule(run.chunks)
        synth_base = [c["start_ms"] for c in run.chunks]
        fig.add_trace(go.Bar(
            y=["synthesis"] * len(run.chunks), base=synth_base, orientation="h",
            x=[c["ready_ms"] - c["start_ms"] for c in run.chunks], marker_color="#1f77b4",
            name="synthesis", legendgroup="synthesis", showlegend=row == 1,
            text=[str(c["index"]) for c in run.chunks], textposition="inside",
            hovertemplate="chunk %{text}: %{base:.0f} → %{x:.0f} ms<extra>synthesis</extra>",
        ), row=row, col=1)
        fig.add_trace(go.Bar(
            y=["playback"] * len(spans), base=[s for s, _ in spans], orientation="h",
            x=[e - s for s, e in spans], marker_color="#2ca02c", name="playback",
            legendgroup="playback", showlegend=row == 1,
            text=[str(c["index"]) for c in run.chunks], textposition="inside",
            hovertemplate="chunk %{text}: plays %{base:.0f} ms for %{x:.0f} ms<extra></extra>",
        ), row=row, col=1)
        for start, end in stalls:
            fig.add_vrect(x0=start, x1=end, fillcolor="red", opacity=0.2, line_width=0,
                          row=row, col=1)
        first_audio = run.figures.get("first_audio_ms")
        if first_audio is not None and first_audio == first_audio:
            fig.add_vline(x=first_audio, line_dash="dash", line_color="black", row=row, col=1)
    fig.update_layout(barmode="overlay", height=150 + 170 * max(1, len(cells)),
                      title="per-chunk synthesis vs playback (red: stalls, dashed: first audio)")
    fig.update_xaxes(title_text="ms since the call", row=max(1, len(cells)), col=1)
    return fig


def figures(report) -> dict[str, go.Figure]:
    """All figures of a report by name."""
    return {"bars": bars(report), "rtf_vs_length": rtf_vs_length(report),
            "timeline": timeline(report)}


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(report) -> str:
    rows = report.summary()
    columns = ["provider", "precision", "first_audio_ms", "rtf", "load_ms", "load_rss_mb",
               "model", "absent"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c, "")
            if isinstance(value, float):
                value = f"{value:.3f}" if c == "rtf" else f"{value:.0f}"
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
    for i, fig in enumerate(figures(report).values()):
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=i == 0))
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


__all__ = ["bars", "figures", "playback_schedule", "rtf_vs_length", "timeline", "write_html"]
