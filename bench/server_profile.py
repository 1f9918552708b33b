"""What the Temporal server was asked to do during a case: frontend requests by operation.

The dev server publishes Prometheus metrics when started with ``--metrics-port``;
``service_requests`` counts every frontend call by operation. The difference
over a case says which calls made the server busy (heartbeats, describes,
starts...), which is the measured reason behind a missed target.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections import Counter

_LINE = re.compile(r"^service_requests\{(?P<labels>[^}]*)\} (?P<value>\S+)")
_OPERATION = re.compile(r'(?:^|,)operation="([^"]+)"')


def _parse(text: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match or 'service_name="frontend"' not in match["labels"]:
            continue
        operation = _OPERATION.search(match["labels"])
        try:
            value = float(match["value"])
        except ValueError:
            continue
        if operation:
            counts[operation.group(1)] += int(value)
    return counts


async def frontend_requests(url: str | None) -> Counter[str]:
    """Requests so far by operation; empty when the server exposes no metrics."""
    if url is None:
        return Counter()

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    try:
        return _parse(await asyncio.to_thread(fetch))
    except Exception:  # a profile is a nicety: never the reason a case fails
        return Counter()


def top(before: Counter[str], after: Counter[str], seconds: float, n: int = 6) -> dict[str, float]:
    """The ``n`` busiest operations between two snapshots, per second."""
    delta = after - before
    return {op: count / max(seconds, 1e-9) for op, count in delta.most_common(n)}


def describe(profile: dict[str, float]) -> str:
    return ", ".join(f"{op} {rate:.0f}/s" for op, rate in profile.items()) or "(no metrics)"
