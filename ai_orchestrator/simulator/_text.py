"""Deterministic fake completions.

Tests compare streamed and non-streamed answers and re-run the same prompt,
so the text must depend only on the request, never on time or process state.
It is derived from sha256 rather than :mod:`random` so that it stays identical
across Python versions and platforms.

Styles: ``"words"`` (readable) and ``"escapes"``, tokens made of what JSON
must escape (quotes, backslashes, tabs, newlines, control characters) plus
some non-ASCII. An answer's JSON form is then several times its UTF-8 size,
which is the real worst case for size limits on JSON payloads such as
Temporal's 2 MB: a limit checked on raw bytes would let it through.
``"escape_blocks"`` is the same in blocks of eight, for big answers in few events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

FIRST_TOKEN = "[simulated]"

# Short, boring words: easy to spot in logs, and one word is one "token".
WORDS: tuple[str, ...] = (
    "alpha", "amber", "apple", "arrow", "basil", "beach", "birch", "blue",
    "brick", "cable", "cedar", "cloud", "coral", "delta", "dune", "eagle",
    "ember", "fern", "field", "flint", "frost", "grain", "green", "harbor",
    "hazel", "iris", "ivory", "jade", "kite", "lake", "lemon", "linen",
    "maple", "marsh", "mint", "moss", "north", "oak", "olive", "orbit",
    "pearl", "pine", "plum", "quartz", "rain", "reed", "river", "sage",
    "sand", "slate", "snow", "stone", "storm", "tide", "tulip", "umber",
    "valley", "violet", "wave", "willow", "wind", "yarrow", "zinc", "zephyr",
)  # fmt: skip


# Each token JSON-encodes to at least twice its UTF-8 size, whether non-ASCII is
# escaped (json.dumps) or kept as UTF-8 (pydantic_core.to_json, as Temporal's
# pydantic converter does); an answer of more than a few tokens comes to 2.3x-2.7x.
ESCAPE_TOKENS: tuple[str, ...] = (
    ' \\"é\x01', '\t"✓\\\x02', '\n\\n\x02', ' "\x1b[0m"\x1b',
    '\\\\\t\x07', ' é\x1f\n', '\r\n"\\', ' ✓\x01\x02',
    '\t\t"é"\x03', ' \\u00e9\x03\x04', '\x0b"✓"', ' \x10\\\n',
    '\\t\t\x05', ' "é"\x06', '\n\n✓\\\x0e', ' \x1e\x1d"',
)  # fmt: skip

# The same text in eight-token blocks: as large an answer in an eighth of the
# stream events, for tests about payload sizes rather than about streaming.
ESCAPE_BLOCKS: tuple[str, ...] = tuple(
    "".join(ESCAPE_TOKENS[(i * 5 + j) % len(ESCAPE_TOKENS)] for j in range(8))
    for i in range(len(ESCAPE_TOKENS))
)

TEXT_STYLES: dict[str, tuple[str, ...]] = {
    "words": WORDS,
    "escapes": ESCAPE_TOKENS,
    "escape_blocks": ESCAPE_BLOCKS,
}


def check_text_style(value: object) -> str:
    if not isinstance(value, str) or value not in TEXT_STYLES:
        raise ValueError(f"text_style must be one of {', '.join(TEXT_STYLES)}, got {value!r}")
    return value


def _seed(messages: Sequence[Mapping[str, Any]], model: str) -> bytes:
    payload = json.dumps(
        {"model": model, "messages": list(messages)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).digest()


def simulated_tokens(
    messages: Sequence[Mapping[str, Any]], model: str, n: int, style: str = "words"
) -> list[str]:
    """Return ``n`` tokens; a shorter answer is always a prefix of a longer one.

    The prefix property means a ``max_tokens``-truncated answer looks exactly
    like a real truncation of the full one. Every style starts with
    :data:`FIRST_TOKEN`, so a simulated answer is always recognisable.
    """
    if n <= 0:
        return []
    vocabulary = TEXT_STYLES[check_text_style(style)]
    seed = _seed(messages, model)
    tokens = [FIRST_TOKEN]
    block = b""
    pos = 0
    counter = 0
    while len(tokens) < n:
        if pos + 2 > len(block):
            block = hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
            counter += 1
            pos = 0
        index = int.from_bytes(block[pos : pos + 2], "big") % len(vocabulary)
        pos += 2
        token = vocabulary[index]
        tokens.append(" " + token if vocabulary is WORDS else token)
    return tokens


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        # Multimodal content parts: only the text parts count as prompt words.
        parts = [
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        ]
        return " ".join(parts)
    return ""


def count_prompt_words(messages: Sequence[Mapping[str, Any]]) -> int:
    """Stand-in for a tokenizer: whitespace words, never 0 so usage looks real."""
    total = sum(len(_content_text(m.get("content")).split()) for m in messages)
    return max(total, 1)
