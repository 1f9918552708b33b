"""What operators see of a task without reading its history: the Web UI's summary
and details of a run, and the rows of ``list`` (from search attributes).
"""

from __future__ import annotations

from temporalio.client import WorkflowExecution, WorkflowExecutionStatus

from ..core import Task, TaskStatus
from ..search import COST_USD, MODEL, PLATFORM, PRIORITY, STATUS, TASK_TYPE, TOKENS
from ._events import TaskSummary

CLOSED_TO_STATUS = {
    WorkflowExecutionStatus.COMPLETED: TaskStatus.COMPLETED,
    WorkflowExecutionStatus.FAILED: TaskStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT: TaskStatus.FAILED,
    WorkflowExecutionStatus.TERMINATED: TaskStatus.FAILED,
    WorkflowExecutionStatus.CANCELED: TaskStatus.CANCELLED,
}


def web_ui_summary(task: Task, model: str) -> str:
    prompt = " ".join(task.prompt.split())
    preview = prompt if len(prompt) <= 120 else prompt[:117] + "..."
    return f"{task.type.value} · {model} · {preview}"


def web_ui_details(task: Task, model: str) -> str:
    c = task.effective_constraints
    prompt = task.prompt if len(task.prompt) <= 4000 else task.prompt[:4000] + "\n[... truncated]"
    options = (
        f"model={model}, max_tokens={c.max_tokens}, temperature={c.temperature}, "
        f"timeout_seconds={c.timeout_seconds}, priority={task.priority}, type={task.type.value}"
    )
    context = f"\n\n**Context keys**: {', '.join(task.context)}" if task.context else ""
    files = f"\n\n**Files**: {', '.join(task.files)}" if task.files else ""
    return f"**Prompt**\n\n{prompt}\n\n**Options**: {options}{context}{files}"


def summary_row(wf: WorkflowExecution) -> TaskSummary:
    """One task as visibility knows it, without reading its history.

    ``AiStatus`` is written only when a task ends, so an open run is running
    and a closed one takes Temporal's own status (a terminated run has no
    ``AiStatus`` at all).
    """
    attrs = wf.typed_search_attributes
    status = attrs.get(STATUS)
    if wf.status in CLOSED_TO_STATUS:
        status = CLOSED_TO_STATUS[wf.status].value
    elif wf.status == WorkflowExecutionStatus.RUNNING:
        status = TaskStatus.RUNNING.value
    return TaskSummary(
        task_id=wf.id,
        status=status or TaskStatus.PENDING.value,
        model=attrs.get(MODEL),
        task_type=attrs.get(TASK_TYPE),
        priority=attrs.get(PRIORITY),
        tokens=attrs.get(TOKENS),
        cost_usd=attrs.get(COST_USD),
        started_at=wf.start_time,
        closed_at=wf.close_time,
        platform=attrs.get(PLATFORM),
    )
