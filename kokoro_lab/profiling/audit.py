"""Placement audit: which graph nodes ran on which execution provider, and for how long.

The rule: placement is read from what ONNX Runtime *did*, not from what was asked. A fresh
session with ORT's profiler on runs the text twice (the first run pays for allocations and,
on CUDA, algorithm search); the kernel events of the second run carry each node's provider
(``args.provider``), op type and duration. Node names are those of the optimised graph ORT
executed, so fused nodes appear under their fused names.

When a GPU provider was asked for and most of the kernel time was spent on the CPU provider
(e.g. int8's ``ConvInteger``/``MatMulInteger``, which CUDA has no kernels for), the report
carries a warning and :func:`audit` emits it as a :class:`PlacementWarning`.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine import assets, sessions
from ..engine.chunking import MAX_PHONEMES
from ..engine.voices import VoiceBank, parse

FALLBACK_WARN_SHARE = 0.5  # warn when the CPU did more than this share of the kernel time
DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog."


class PlacementWarning(UserWarning):
    """Most of the work fell back to the CPU although another provider was asked for."""


@dataclass
class NodePlacement:
    name: str
    op_type: str
    provider: str
    calls: int
    time_us: float


@dataclass
class PlacementReport:
    """Where the nodes of one (provider, precision) session ran."""

    provider: str  # short name asked for
    precision: str
    active_providers: list[str]
    nodes: list[NodePlacement] = field(default_factory=list)
    graph_nodes: int = 0  # nodes in the model file before ORT's optimisations
    warning: str | None = None

    @property
    def total_us(self) -> float:
        return sum(n.time_us for n in self.nodes)

    def by_provider(self) -> dict[str, dict[str, float]]:
        """``{provider: {nodes, time_us, share}}``: how the work split between providers."""
        out: dict[str, dict[str, float]] = defaultdict(lambda: {"nodes": 0, "time_us": 0.0})
        for n in self.nodes:
            out[n.provider]["nodes"] += 1
            out[n.provider]["time_us"] += n.time_us
        total = self.total_us or 1.0
        for row in out.values():
            row["share"] = row["time_us"] / total
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["time_us"]))

    def by_op(self) -> list[dict]:
        """One row per (op type, provider), most time first."""
        groups: dict[tuple[str, str], dict] = {}
        for n in self.nodes:
            row = groups.setdefault((n.op_type, n.provider), {
                "op_type": n.op_type, "provider": n.provider, "nodes": 0, "time_us": 0.0})
            row["nodes"] += 1
            row["time_us"] += n.time_us
        total = self.total_us or 1.0
        rows = sorted(groups.values(), key=lambda r: -r["time_us"])
        for row in rows:
            row["share"] = row["time_us"] / total
        return rows

    def cpu_share(self) -> float:
        return self.by_provider().get("CPUExecutionProvider", {}).get("share", 0.0)

    def ops_on(self, provider: str) -> list[str]:
        """Op types that ran (at least partly) on ``provider`` (full ORT name)."""
        return sorted({n.op_type for n in self.nodes if n.provider == provider})

    def markdown(self, top: int = 12) -> str:
        lines = [f"**{self.provider}/{self.precision}** — active providers: "
                 f"{', '.join(self.active_providers)}; {len(self.nodes)} executed nodes "
                 f"({self.graph_nodes} in the file)", "",
                 "| provider | nodes | kernel ms | share |", "|---|---:|---:|---:|"]
        for provider, row in self.by_provider().items():
            lines.append(f"| {provider} | {row['nodes']:.0f} | {row['time_us'] / 1000:.1f} | "
                         f"{row['share']:.0%} |")
        lines += ["", "| op type | provider | nodes | kernel ms | share |",
                  "|---|---|---:|---:|---:|"]
        for row in self.by_op()[:top]:
            lines.append(f"| {row['op_type']} | {row['provider']} | {row['nodes']} | "
                         f"{row['time_us'] / 1000:.1f} | {row['share']:.0%} |")
        if self.warning:
            lines += ["", f"⚠ {self.warning}"]
        return "\n".join(lines)

    _repr_markdown_ = markdown

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame.from_records([n.__dict__ for n in self.nodes])


def _inputs(text: str, voice: str) -> dict[str, np.ndarray]:
    from kokoro_onnx.tokenizer import Tokenizer

    resolved = parse(voice)
    tokenizer = Tokenizer()
    phonemes = " ".join(tokenizer.phonemize(text, resolved.lang).split())
    tokens = tokenizer.tokenize(phonemes[:MAX_PHONEMES])
    if not tokens:
        raise ValueError(f"nothing speakable in {text!r}")
    bank = VoiceBank(assets.voices_path())
    return {
        "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
        "style": bank.style(resolved, len(tokens)),
        "speed": np.array([1.0], dtype=np.float32),
    }


def parse_profile(events: list[dict]) -> list[NodePlacement]:
    """Node placements from an ORT profile, counting only the last ``model_run``."""
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    start, end = -np.inf, np.inf
    if runs:
        last = max(runs, key=lambda e: e["ts"])
        start, end = last["ts"], last["ts"] + last["dur"]
    nodes: dict[tuple[str, str], NodePlacement] = {}
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        if not start <= event.get("ts", 0) <= end:
            continue
        args = event.get("args", {})
        provider = args.get("provider", "unknown")
        key = (name[: -len("_kernel_time")], provider)
        node = nodes.setdefault(key, NodePlacement(key[0], args.get("op_name", "?"), provider,
                                                   0, 0.0))
        node.calls += 1
        node.time_us += float(event.get("dur", 0))
    return list(nodes.values())


def fallback_warning(report: PlacementReport) -> str | None:
    """The warning for a report whose non-CPU provider left most kernel time to the CPU."""
    requested = sessions.provider_name(report.provider)
    share = report.cpu_share()
    if requested == "CPUExecutionProvider" or share <= FALLBACK_WARN_SHARE:
        return None
    cpu_ops = ", ".join(report.ops_on("CPUExecutionProvider")[:8])
    advice = ("int8's integer ops have no kernels there: try fp32 or fp16 on this provider"
              if report.precision == "int8" else "see by_op() for the ops that fell back")
    return (f"{share:.0%} of the kernel time of {report.precision} ran on the CPU although "
            f"{requested} was asked for (CPU ops: {cpu_ops}); {advice}")


def audit(precision: str = "int8", provider: str = "cpu", text: str = DEFAULT_TEXT,
          voice: str = "af_heart", threads: int | None = None,
          warn: bool = True) -> PlacementReport:
    """Run ``text`` once warm on a fresh profiled session and report node placement."""
    import onnx

    model = assets.model_path(precision)
    inputs = _inputs(text, voice)
    with tempfile.TemporaryDirectory(prefix="kokoro-lab-audit-") as folder:
        session, active = sessions.create_session(
            model, provider, threads, profile_prefix=str(Path(folder) / "ort"))
        for _ in range(2):  # the first run pays for allocation and algorithm search
            session.run(None, inputs)
        profile_file = session.end_profiling()
        with open(profile_file, encoding="utf-8") as events:
            placements = parse_profile(json.load(events))
    graph = onnx.load(str(model), load_external_data=False)
    report = PlacementReport(provider=provider.lower(), precision=precision,
                             active_providers=list(active), nodes=placements,
                             graph_nodes=len(graph.graph.node))
    report.warning = fallback_warning(report)
    if report.warning and warn:
        warnings.warn(report.warning, PlacementWarning, stacklevel=2)
    return report


__all__ = ["FALLBACK_WARN_SHARE", "NodePlacement", "PlacementReport", "PlacementWarning",
           "audit", "fallback_warning", "parse_profile"]
