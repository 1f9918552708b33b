"""Keys and echoed prompts taken out of error messages before they are stored.

Errors are stored in workflow history, and providers echo keys (masked) and
sometimes the prompt or context in their error bodies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

#: Shorter echoes are too likely to occur by chance in unrelated text.
_MIN_ECHO_CHARS = 16
#: Providers often truncate what they quote; this prefix is removed too.
_ECHO_PREFIX_CHARS = 64


_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{3,})")


def redact(text: str, *secrets: str | None) -> str:
    """Remove secrets (and anything shaped like an OpenAI key) from ``text``.

    Error messages end up in workflow history and logs; providers echo masked
    keys in 401 bodies, and a configured key must never appear at all.
    """
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("sk-[redacted]", text)


def _render(value: Any) -> str:
    # Same rendering as chat.build_messages (which imports this module, hence the copy).
    return value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)


def redaction_echoes(prompt: str, context: Mapping[str, Any]) -> tuple[str, ...]:
    """The strings an error message must not echo, longest first, for :func:`redact`.

    Providers quote inputs in error bodies (e.g. "invalid prompt: ..."), and
    error messages are stored in workflow history and logs. ``context`` is as
    private as the prompt, so each rendered value counts too. Each one and its
    first 64 characters are listed (providers truncate what they quote); values
    under 16 characters are left out, as they would match unrelated text.
    Longest first, so a prefix is never replaced before the whole it starts.
    """
    echoes: set[str] = set()
    for text in (prompt, *(_render(value) for value in context.values())):
        if len(text) >= _MIN_ECHO_CHARS:
            echoes.add(text)
            echoes.add(text[:_ECHO_PREFIX_CHARS])
    return tuple(sorted(echoes, key=lambda s: (-len(s), s)))
