"""Why a task is refused before anything is started.

Every check that can fail without the server (a platform no worker runs, a
model outside a strict price list, an input over Temporal's payload limit)
runs here first, so a refused task costs nothing and starts nothing; a
re-run applies the same rules to the input it reads back.
"""

from __future__ import annotations

from ..core import Task
from ..exceptions import TaskValidationError
from ..messages import MAX_INPUT_BYTES, RetrySettings, TaskInput
from ..pricing import PricingTable, UnknownModelError
from ..providers import RUNNABLE, route


def validate(task: Task, default_model: str, pricing: PricingTable | None) -> str:
    """The model that will answer first; every model of the route must be runnable."""
    constraints = task.effective_constraints
    fallbacks = [
        task.model_copy(update={"constraints": constraints.model_copy(update={"model": m})})
        for m in constraints.fallback_models
    ]
    first = ""
    for candidate in (task, *fallbacks):
        platform, model = route(candidate, default_model)
        first = first or model
        if platform not in RUNNABLE:
            raise TaskValidationError(
                f"platform {platform.value!r} is not supported yet: tasks run on "
                f"{', '.join(sorted(p.value for p in RUNNABLE))}"
            )
        if pricing is not None:
            try:
                pricing.check(model)
            except UnknownModelError as exc:
                raise TaskValidationError(str(exc)) from None
    return first


def checked_input(task: Task, retry: RetrySettings, searchable: bool) -> TaskInput:
    """The workflow's input for ``task`` (a copy), refused if too large to store."""
    built = TaskInput(task=task.model_copy(deep=True), retry=retry, search_attributes=searchable)
    # The JSON is what the converter stores (encryption adds a few dozen bytes).
    size = len(built.model_dump_json().encode())
    if size > MAX_INPUT_BYTES:
        raise TaskValidationError(
            f"task is {size:,} bytes once encoded; the limit is {MAX_INPUT_BYTES:,} bytes "
            "(Temporal's payload limit is 2 MB per payload). Shorten the prompt or context."
        )
    return built
