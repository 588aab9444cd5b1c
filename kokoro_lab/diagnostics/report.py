"""One doctor run's findings: :class:`Check` (what was looked at, a status, the fix) and the
:class:`Report` that renders them as text, HTML or JSON."""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
STATUSES = (OK, INFO, WARN, FAIL)


@dataclass(frozen=True)
class Check:
    """One finding: what was looked at, its status, what was found and the fix."""

    section: str
    name: str
    status: str
    detail: str
    fix: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {self.status!r}")


@dataclass
class Report:
    """Every check of one doctor run; renders as text, HTML (notebooks) or JSON."""

    checks: list[Check]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 otherwise."""
        return 1 if self.failures else 0

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts().items())
        verdict = "consistent" if not self.failures else "NOT consistent: see the fixes"
        return f"kokoro-lab doctor: {verdict} ({counts})"

    def as_dict(self) -> dict:
        return {"ok": not self.failures, "exit_code": self.exit_code, "counts": self.counts(),
                "checks": [asdict(c) for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def text(self) -> str:
        """A terminal table: one line per check, its fix indented under it."""
        width = max(len(c.name) for c in self.checks) if self.checks else 0
        lines, section = [], None
        for c in self.checks:
            if c.section != section:
                section = c.section
                lines.append(f"\n{section}")
            mark = c.status.upper() if c.status == FAIL else c.status
            lines.append(f"  {mark:<5} {c.name:<{width}}  {c.detail}")
            if c.fix:
                lines.append(f"  {'':<5} {'':<{width}}  fix: {c.fix}")
        return "\n".join(lines).lstrip("\n") + "\n\n" + self.summary()

    __str__ = text

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        colours = {OK: "#1a7f37", INFO: "#57606a", WARN: "#9a6700", FAIL: "#cf222e"}
        rows = []
        for c in self.checks:
            fix = (f"<br><code>{html.escape(c.fix)}</code>" if c.fix else "")
            rows.append(
                f"<tr><td>{html.escape(c.section)}</td><td>{html.escape(c.name)}</td>"
                f"<td style='color:{colours[c.status]};font-weight:bold'>{c.status}</td>"
                f"<td style='text-align:left'>{html.escape(c.detail)}{fix}</td></tr>")
        return ("<table><thead><tr><th>section</th><th>check</th><th>status</th>"
                "<th style='text-align:left'>detail / fix</th></tr></thead><tbody>"
                + "".join(rows) + f"</tbody></table><p>{html.escape(self.summary())}</p>")

