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
"""

from ._base import (
    FILTERED_REASONS,
    FINISH_FILTERED,
    FINISH_LENGTH,
    FINISH_STOP,
    Provider,
    ProviderStream,
)
from ._route import DEFAULT_CLAUDE_MODEL, DEFAULT_GEMINI_MODEL, RUNNABLE, route

__all__ = [
    "DEFAULT_CLAUDE_MODEL",
    "DEFAULT_GEMINI_MODEL",
    "FILTERED_REASONS",
    "FINISH_FILTERED",
    "FINISH_LENGTH",
    "FINISH_STOP",
    "RUNNABLE",
    "Provider",
    "ProviderStream",
    "route",
]
