"""The package's shape, measured from its imports: the layout is the architecture.

Each wing may import only the wings below it (and its own modules), so no import
circle can form and following a task from the CLI down to a provider never
climbs back up. Imports inside functions count too: a lazy import is still a
dependency. The package's own ``__init__`` (the public names, loaded lazily) is
the one module allowed to reach everywhere.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ai_orchestrator"

#: Bottom to top. A module may import from its own wing and from lower rows.
LAYERS: list[set[str]] = [
    {"core", "pricing", "metrics", "streaming", "simulator"},  # vocabulary, no deps
    {"exceptions", "messages", "config", "search"},
    {"redis_urls"},
    {"output", "errors", "delivery"},
    {"payloads", "retry", "limits", "budgets"},
    {"providers"},
    {"live"},
    {"activities", "workflows"},
    {"adapters"},
    {"client"},
    {"batch", "worker"},
    {"local"},
    {"cli"},
    {"__main__"},
]
MAX_LINES = 500


def _rank() -> dict[str, int]:
    return {wing: row for row, wings in enumerate(LAYERS) for wing in wings}


@functools.cache
def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@functools.cache
def _imports(module: str, path: Path) -> frozenset[str]:
    """Every package module ``module`` imports, at any depth of its code."""
    is_package = path.name == "__init__.py"
    known = _modules()
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: None if is_package else -1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            names = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in known else origin
                for alias in node.names
            ]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name.split(".")[0] != "ai_orchestrator":
                continue
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            if name != module:
                targets.add(name)
    return frozenset(targets)


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_belongs_to_a_wing() -> None:
    rank = _rank()
    unplaced = sorted({_wing(m) for m in _modules()} - set(rank) - {""})
    assert unplaced == [], f"add these to LAYERS: {unplaced}"


def test_imports_only_run_downward() -> None:
    rank = _rank()
    upward = []
    for module, path in sorted(_modules().items()):
        wing = _wing(module)
        if not wing:
            continue  # the public face: lazy re-exports of every wing
        for target in sorted(_imports(module, path)):
            other = _wing(target)
            if other == wing:
                continue
            if not other or rank[other] >= rank[wing]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_circle_inside_a_wing() -> None:
    graph = {m: _imports(m, p) for m, p in _modules().items()}
    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_no_package_file_over_the_limit() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize("module", ["ai_orchestrator.workflows", "ai_orchestrator"])
def test_the_workflow_sandbox_loads_no_vendor_sdk(module: str) -> None:
    """The workflow imports its names through the sandbox: a vendor SDK there is
    loaded for nothing, and ``import ai_orchestrator`` must stay light for the CLI."""
    probe = (
        f"import sys, {module}\n"
        "print(sorted(m for m in ('openai', 'anthropic', 'google.genai', 'httpx') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
