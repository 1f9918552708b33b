"""Activities: the only place where the provider is called."""

from ._batches import BatchActivities
from ._llm import LLMActivities

__all__ = ["BatchActivities", "LLMActivities"]
