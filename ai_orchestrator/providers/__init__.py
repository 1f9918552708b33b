"""The provider layer: one small module per vendor behind one stream shape.

* :mod:`.openai`: OpenAI Chat Completions (and every compatible server), or
  the Responses API in background mode (:mod:`.openai_responses`), whose broken
  streams a retry re-attaches instead of regenerating;
* :mod:`.anthropic`: Anthropic's Messages API (Claude models);
* :mod:`.gemini`: Google's Gemini API.

Each streams through its vendor's own SDK with the SDK's retries off, maps
events, usage and stop reasons onto :class:`ProviderStream`, and leaves error
classification to :func:`ai_orchestrator.errors.classify`. Vendor modules are
imported only when a worker configures them, so the optional SDKs stay optional
(and this package stays importable from the chat module they build on).

Provider batch APIs (issue 18) sit behind :class:`BatchProvider`
(:mod:`._batch_types`, no SDK): :class:`OpenAIBatches` and
:class:`AnthropicBatches` are loaded on first use (PEP 562), so a workflow can
use the batch types without loading either SDK.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ._base import (
    FILTERED_REASONS,
    FINISH_FILTERED,
    FINISH_LENGTH,
    FINISH_STOP,
    Provider,
    ProviderStream,
)
from ._batch_types import (
    BatchItem,
    BatchLookupPending,
    BatchNotEnded,
    BatchProvider,
    ItemResult,
    ProviderBatchState,
)
from ._route import DEFAULT_CLAUDE_MODEL, DEFAULT_GEMINI_MODEL, RUNNABLE, route

if TYPE_CHECKING:
    from .batch_anthropic import AnthropicBatches
    from .batch_gemini import GeminiBatches
    from .batch_openai import OpenAIBatches

__all__ = [
    "DEFAULT_CLAUDE_MODEL",
    "DEFAULT_GEMINI_MODEL",
    "FILTERED_REASONS",
    "FINISH_FILTERED",
    "FINISH_LENGTH",
    "FINISH_STOP",
    "RUNNABLE",
    "AnthropicBatches",
    "BatchItem",
    "BatchLookupPending",
    "BatchNotEnded",
    "BatchProvider",
    "GeminiBatches",
    "ItemResult",
    "OpenAIBatches",
    "Provider",
    "ProviderBatchState",
    "ProviderStream",
    "route",
]

#: Names whose modules load a vendor SDK: imported on first use.
_LAZY = {
    "AnthropicBatches": ".batch_anthropic",
    "GeminiBatches": ".batch_gemini",
    "OpenAIBatches": ".batch_openai",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
