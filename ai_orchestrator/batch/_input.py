"""Reading a batch file into tasks, every line checked before anything is submitted.

Apart from running: a bad line must cost nothing, so the whole file is parsed
and validated first, and the CLI reports the file's problems without
connecting to Temporal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..core import Task
from ._types import BatchInputError


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"])
        parts.append(f"{loc}: {error['msg']}" if loc else str(error["msg"]))
    return "; ".join(parts)


def _with_delivery(value: dict[str, Any], delivery: str) -> dict[str, Any]:
    """The line's task fields with ``delivery``, unless the line chose one."""
    constraints = value.get("constraints")
    if constraints is None:
        return {**value, "constraints": {"delivery": delivery}}
    if isinstance(constraints, dict) and "delivery" not in constraints:
        return {**value, "constraints": {**constraints, "delivery": delivery}}
    return value  # its own delivery, or constraints that fail validation anyway


def _parse_line(path: Path, number: int, line: str, delivery: str | None) -> Task:
    where = f"{path} line {number}"
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BatchInputError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
    if isinstance(value, str):
        value = {"prompt": value}
    try:
        if isinstance(value, dict):
            return Task.model_validate(_with_delivery(value, delivery) if delivery else value)
    except ValidationError as exc:
        raise BatchInputError(f"{where}: {_validation_summary(exc)}") from None
    raise BatchInputError(
        f"{where}: expected a JSON string (the prompt) or an object with task fields, "
        f"got {type(value).__name__}"
    )


def read_tasks(path: Path, *, delivery: str | None = None) -> list[Task]:
    """Parse a JSONL batch file into tasks, in file order; blank lines are skipped.

    All validation happens here, before anything is submitted, so a bad line
    costs nothing. Explicit ``task_id`` values must be unique: two lines with
    one id would silently share one run. ``delivery`` (``realtime``, ``batch``,
    ``auto``) is each task's unless its line sets ``constraints.delivery``; the
    line is validated with it (a ``batch`` line with a cost cap is refused).

    Raises:
        BatchInputError: unreadable file, invalid JSON or task fields (with the
            1-based line number), duplicate task ids, or no tasks at all.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BatchInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        number = data.count(b"\n", 0, exc.start) + 1
        raise BatchInputError(f"{path} line {number}: not valid UTF-8") from None
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        task = _parse_line(path, number, line, delivery)
        if task.task_id is not None:
            if task.task_id in seen:
                raise BatchInputError(
                    f"{path} line {number}: duplicate task_id {task.task_id!r} "
                    f"(first on line {seen[task.task_id]})"
                )
            seen[task.task_id] = number
        tasks.append(task)
    if not tasks:
        raise BatchInputError(f"{path}: no tasks (the file is empty)")
    return tasks
