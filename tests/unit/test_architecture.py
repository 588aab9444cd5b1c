"""The house rules, checked on the source: rooms import downward only, no import cycles, no
module over 500 lines, and no string imports of our own modules.

Imports are read with :mod:`ast`, function-level ones included (they are still dependencies);
imports under ``if TYPE_CHECKING:`` are not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "kokoro_lab"
MAX_LINES = 500
# What each room may import from the package (besides itself). The engine knows nothing above.
ALLOWED = {
    "engine": set(),
    "diagnostics": {"engine"},
    "quality": set(),
    "profiling": {"engine", "quality"},
    "batch": {"engine", "options"},
    "notebook": {"engine", "profiling", "quality"},
    "lab": {"engine", "quality", "profiling"},
    "cli": {"engine", "batch", "profiling", "options", "diagnostics", "lab"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that ``name`` imports at run time (resolved to the module, not a name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("kokoro_lab"):
                found.add(target)
    return found


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "kokoro_lab"


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = set(sources())
    return {name: imports_of(name, path, known) for name, path in sources().items()}


def test_rooms_import_only_what_is_below_them(graph):
    wrong = []
    for module, targets in graph.items():
        here = room(module)
        if here not in ALLOWED:
            continue
        for target in targets:
            there = room(target)
            if there != here and there != "kokoro_lab" and there not in ALLOWED[here]:
                wrong.append(f"{module} -> {target}")
            if here == "engine" and there != "engine":
                wrong.append(f"{module} -> {target} (the engine imports nothing above it)")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_no_import_cycles(graph):
    """Package __init__ modules re-exporting their children are not edges back to the parent."""
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, "\n".join(cycles)


def test_no_module_over_500_lines():
    long = {str(p.relative_to(ROOT)): n for p in [*PACKAGE.rglob("*.py"),
                                                   *(ROOT / "benchmarks").glob("*.py"),
                                                   *(ROOT / "tests").rglob("*.py"),
                                                   *(ROOT / "extension" / "src").glob("*.js")]
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_our_modules_are_imported_by_name_not_by_string():
    offenders = []
    for name, path in sources().items():
        text = path.read_text(encoding="utf-8")
        if "import_module(" in text or "__import__(" in text:
            offenders.append(name)
    assert not offenders, offenders
