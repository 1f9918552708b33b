"""Platform adapters: the plans' lifecycle contract and the ChatGPT implementations."""

from ._base import AsyncBasePlatformAdapter, BasePlatformAdapter
from ._chatgpt import AsyncChatGPTAdapter, ChatGPTAdapter

__all__ = [
    "AsyncBasePlatformAdapter",
    "AsyncChatGPTAdapter",
    "BasePlatformAdapter",
    "ChatGPTAdapter",
]
