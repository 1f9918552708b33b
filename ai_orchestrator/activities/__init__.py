"""Activities: the only place where the provider is called."""

from ._llm import LLMActivities

__all__ = ["LLMActivities"]
