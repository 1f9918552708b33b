"""Which provider answers a task: one pure rule, shared by clients and workers.

The client uses it to validate and label a task before submitting it; the
worker uses it to pick the vendor client. A model name is enough to choose
(``claude-*`` is Anthropic's, ``gemini-*`` Google's) and ``platform_hint``
chooses when there is no model (``claude_code`` always chooses: it is an agent
session on a Claude model, not a model); anything else goes to the OpenAI-compatible
endpoint, which is what Ollama, vLLM and gateways speak.
"""

from __future__ import annotations

from ..core import Platform, Task

DEFAULT_CLAUDE_MODEL = "claude-sonnet-4-6"
DEFAULT_GEMINI_MODEL = "gemini-2.5-flash"

#: Platforms a worker can run.
RUNNABLE = frozenset({Platform.CHATGPT, Platform.CLAUDE, Platform.GEMINI, Platform.CLAUDE_CODE})


def route(task: Task, default_model: str) -> tuple[Platform, str]:
    """The platform and model that will answer ``task``.

    Args:
        default_model: the worker's default for OpenAI-compatible tasks.
    """
    constraints = task.constraints
    model = constraints.model if constraints and constraints.model else None
    if task.platform_hint == Platform.CLAUDE_CODE:
        # An agent session, whichever Claude model it runs on.
        return Platform.CLAUDE_CODE, model or DEFAULT_CLAUDE_MODEL
    if model is not None:
        lowered = model.lower()
        if lowered.startswith("claude-"):
            return Platform.CLAUDE, model
        if lowered.startswith(("gemini-", "models/gemini-")):
            return Platform.GEMINI, model
        hint = task.platform_hint
        if hint in (Platform.CLAUDE, Platform.GEMINI):
            return hint, model  # a custom model name on a named platform
        return Platform.CHATGPT, model
    if task.platform_hint == Platform.CLAUDE:
        return Platform.CLAUDE, DEFAULT_CLAUDE_MODEL
    if task.platform_hint == Platform.GEMINI:
        return Platform.GEMINI, DEFAULT_GEMINI_MODEL
    return Platform.CHATGPT, default_model
