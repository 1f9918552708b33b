"""Workflow code stays deterministic without the sandbox re-importing it.

The worker passes ``ai_orchestrator`` through Temporal's sandbox (a quarter more
short tasks a second), so the sandbox no longer stops ``workflows/`` from reading
the clock, drawing random numbers, doing I/O or keeping state between runs. These
checks read the code instead, and fail on the first such use.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

WORKFLOWS = Path(__file__).resolve().parents[2] / "ai_orchestrator" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.py"))

#: What workflow modules may import (anything of our own package is passed through
#: already, and is pure data and options; ``tests/unit/test_layout.py`` keeps vendor
#: SDKs out of what they import).
ALLOWED_IMPORTS = {
    *("__future__", "asyncio", "datetime", "typing", "collections", "dataclasses", "temporalio")
}
ALLOWED_FROM = {"datetime": {"timedelta", "datetime"}}  # datetime.now() is caught below
#: Calls that read the world; workflow code has ``workflow.now()``, ``workflow.uuid4()``,
#: ``workflow.random()`` and ``workflow.sleep()`` instead.
FORBIDDEN_CALLS = {
    "now",
    "utcnow",
    "today",
    "time",
    "monotonic",
    "perf_counter",
    "uuid4",
    "urandom",
    "open",
    "getenv",
    "run_in_executor",
    "to_thread",
}
#: Workflow-safe spellings of the names above.
SAFE_OWNERS = {"workflow"}


def _module_imports(tree: ast.Module) -> list[str]:
    """Imports from outside the allowed modules (relative ones are our own package)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] not in ALLOWED_IMPORTS]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = {a.name for a in node.names}
            if node.module in ALLOWED_FROM:
                allowed = names <= ALLOWED_FROM[node.module]
            else:
                allowed = node.module.split(".")[0] in ALLOWED_IMPORTS
            if not allowed:
                found.append(f"{node.module}: {', '.join(sorted(names))}")
    return found


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_workflow_code_imports_nothing_that_reads_the_world(path: Path) -> None:
    assert _module_imports(ast.parse(path.read_text())) == []


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_workflow_code_calls_no_clock_randomness_or_io(path: Path) -> None:
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        owner = (
            func.value.id
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            else ""
        )
        if name in FORBIDDEN_CALLS and owner not in SAFE_OWNERS:
            bad.append(f"line {node.lineno}: {ast.unparse(func)}()")
    assert bad == []


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_workflow_modules_keep_no_state_between_runs(path: Path) -> None:
    """Module-level names are constants: a dict or list there is read, never changed
    (the module is now shared by every run of the worker)."""
    tree = ast.parse(path.read_text())
    module_names = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    changed = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Global | ast.Nonlocal):
            changed += [f"line {node.lineno}: global {n}" for n in node.names]
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
        for target in targets:
            if isinstance(target, ast.Subscript | ast.Attribute):
                base = target.value
                if isinstance(base, ast.Name) and base.id in module_names:
                    changed.append(f"line {node.lineno}: {ast.unparse(target)}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"append", "extend", "update", "pop", "clear", "add", "insert"}
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in module_names
        ):
            changed.append(f"line {node.lineno}: {ast.unparse(node.func)}()")
    assert changed == []
