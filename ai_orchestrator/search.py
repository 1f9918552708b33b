"""Custom search attributes, so operators can find tasks in the Web UI and with ``list``.

They must be registered on a namespace before a workflow may carry them:
``ai-orchestrator dev`` registers them on its dev server and ``ai-orchestrator
setup`` on any namespace. A client checks once whether they are registered and
tells each workflow (in its input) whether to maintain them, so tasks still run
on a namespace where nobody ran ``setup``. Prompts and secrets never go into
search attributes: only model, type, platform, priority, status, tokens, cost.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from .core import Platform, Task

PLATFORM = SearchAttributeKey.for_keyword("AiPlatform")
MODEL = SearchAttributeKey.for_keyword("AiModel")
TASK_TYPE = SearchAttributeKey.for_keyword("AiTaskType")
PRIORITY = SearchAttributeKey.for_int("AiPriority")
STATUS = SearchAttributeKey.for_keyword("AiStatus")
TOKENS = SearchAttributeKey.for_int("AiTokens")
COST_USD = SearchAttributeKey.for_float("AiCostUsd")

ALL_KEYS: tuple[SearchAttributeKey, ...] = (  # type: ignore[type-arg]
    PLATFORM,
    MODEL,
    TASK_TYPE,
    PRIORITY,
    STATUS,
    TOKENS,
    COST_USD,
)

_INDEXED = {
    "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "INT": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "DOUBLE": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
}
_CLI_TYPE = {"KEYWORD": "Keyword", "INT": "Int", "DOUBLE": "Double"}


def dev_server_args() -> list[str]:
    """``temporal server start-dev`` flags registering every attribute at start."""
    args: list[str] = []
    for key in ALL_KEYS:
        args += ["--search-attribute", f"{key.name}={_CLI_TYPE[key.indexed_value_type.name]}"]
    return args


async def missing(client: Client) -> list[str]:
    """Names of our attributes not registered on the client's namespace."""
    response = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return [k.name for k in ALL_KEYS if k.name not in response.custom_attributes]


async def register(client: Client) -> list[str]:
    """Register what is missing; returns the names added (idempotent)."""
    names = await missing(client)
    if names:
        by_name = {k.name: k for k in ALL_KEYS}
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={n: _INDEXED[by_name[n].indexed_value_type.name] for n in names},
            )
        )
    return names


def initial(task: Task, model: str, platform: Platform | None = None) -> TypedSearchAttributes:
    """The attributes a task starts with.

    ``AiStatus`` is not among them: the workflow writes it (with ``AiTokens``
    and ``AiCostUsd``) when the task ends, completed, failed or cancelled. A
    "running" written at start would stay forever on a run an operator
    terminates, since a terminated run executes no more code; open tasks are
    found with Temporal's own ``ExecutionStatus = 'Running'``.
    """
    return TypedSearchAttributes(
        [
            SearchAttributePair(
                PLATFORM, (platform or task.platform_hint or Platform.CHATGPT).value
            ),
            SearchAttributePair(MODEL, model),
            SearchAttributePair(TASK_TYPE, task.type.value),
            SearchAttributePair(PRIORITY, task.priority),
        ]
    )
