"""What a quota run is measured against (:mod:`bench.quotas`): the quota's floor, the
capacity the provider left unused while work waited, and the tables.

The floor is the least wall time the provider's quota allows. It charges each
request its prompt plus ``max_tokens`` on arrival against a tokens-per-minute
bucket that starts full and refills continuously at TPM/60 a second, so with C
tokens charged in all the last request cannot be admitted before (C - TPM) / TPM
x 60 s after the start, and its answer then takes as long as an uncontended one
streams (measured in the same run). Nothing a client does can finish sooner.

Capacity is lost only while the provider's bucket is full: below full, what
refills is banked and a later burst spends it. Replaying the bucket over the
simulator's log of admitted requests (arrival time, tokens charged) gives each
stretch it spent full between the first and the last admission, when some task
was still waiting by definition.
"""

from __future__ import annotations

from typing import Any

from ai_orchestrator.simulator import RecordedRequest

FLOOR_FORMULA = (
    "floor = max(0, (C - TPM) / TPM x 60 s) + d; C = tokens the provider charged "
    "(prompt + max_tokens per admitted request), TPM = the quota (bucket full at the start, "
    "refilled continuously), d = one uncontended answer's time at the provider "
    "(request received -> last byte)"
)


def floor_seconds(charged: int, tpm: float, answer_s: float) -> float:
    return max(0.0, (charged - tpm) / tpm * 60.0) + answer_s


def capacity(requests: list[RecordedRequest], tpm: float, t0: float) -> dict[str, Any]:
    """The provider's token bucket replayed over the admitted requests of one run."""
    admitted = sorted((r.received_at, r.quota_tokens) for r in requests if r.quota_tokens > 0)
    if not admitted:
        return {"admitted": 0}
    rate = tpm / 60.0
    level, prev = tpm, admitted[0][0]
    lost = longest_full = longest_gap = 0.0
    full_at: float | None = None
    for at, cost in admitted:
        elapsed = at - prev
        idle = max(0.0, elapsed - (tpm - level) / rate)
        if idle > longest_full:
            longest_full, full_at = idle, at - idle - t0
        lost += idle
        longest_gap = max(longest_gap, elapsed)
        level = min(tpm, level + elapsed * rate) - cost
        prev = at
    return {
        "admitted": len(admitted),
        "first_admitted_s": admitted[0][0] - t0,
        "last_admitted_s": admitted[-1][0] - t0,
        "bucket_full_s": lost,
        "longest_full_s": longest_full,
        "longest_full_from_s": full_at,
        "longest_admission_gap_s": longest_gap,
    }


def answer_seconds(requests: list[RecordedRequest]) -> float:
    """The provider's time for the one (uncontended) answer: received -> last byte."""
    done = [r for r in requests if r.ended_at is not None and r.quota_tokens > 0]
    if not done:
        raise RuntimeError("the uncontended task left no finished request at the simulator")
    return max(r.ended_at - r.received_at for r in done if r.ended_at is not None)


def with_ratios(runs: list[dict[str, Any]]) -> None:
    """Each run's wall/floor, and its wall and 429s against the ``off`` run's."""
    off = next((r for r in runs if r["mode"] == "off" and r.get("available")), None)
    for r in runs:
        if not r.get("available"):
            continue
        r["ratio"] = r["wall_s"] / r["floor_s"]
        if off is not None:
            r["wall_vs_off"] = r["wall_s"] / off["wall_s"]
            r["rate_limited_off"] = off["rate_limited"]


_COLUMNS = (
    ("run", 30),
    ("workers", 8),
    ("429s", 6),
    ("requests", 9),
    ("charged", 8),
    ("floor s", 8),
    ("wall s", 8),
    ("wall/floor", 11),
    ("wall/off", 9),
    ("completed", 10),
    ("full s (longest)", 17),
    ("gap s", 6),
)


def _cells(r: dict[str, Any]) -> list[str]:
    c = r.get("capacity", {})
    return [
        str(r["workers"]) + (" (-1)" if r.get("killed_at_s") is not None else ""),
        str(r["rate_limited"]),
        str(r["requests"]),
        str(r["charged_tokens"]),
        f"{r['floor_s']:.1f}",
        f"{r['wall_s']:.1f}",
        f"{r['ratio']:.3f}",
        f"{r['wall_vs_off']:.2f}" if "wall_vs_off" in r else "-",
        f"{r['completed']}/{r['tasks']}",
        f"{c.get('bucket_full_s', 0):.1f} ({c.get('longest_full_s', 0):.1f})",
        f"{c.get('longest_admission_gap_s', 0):.1f}",
    ]


def render(report: dict[str, Any]) -> str:
    s = report["sizes"]
    lines = [
        f"quotas: {s['tasks']} tasks x max_tokens={s['max_tokens']} submitted at once, "
        f"TPM {s['tpm']}, answers at {s['tokens_per_second']:g} tok/s; "
        f"uncontended answer d = {report['answer_s']:.2f} s "
        f"(whole task {report['uncontended_task_s']:.2f} s)",
        f"  {FLOOR_FORMULA}",
        "  full s: time the provider's bucket sat full (capacity lost) between the first and "
        "the last admission; gap s: longest time between two admissions",
        "  " + " ".join(f"{name:{width}}" for name, width in _COLUMNS),
    ]
    for r in report["runs"]:
        name = f"{r['label']:{_COLUMNS[0][1]}}"
        if not r.get("available"):
            lines.append(f"  {name} {r.get('error', 'not available')}")
            continue
        cells = _cells(r)
        lines.append(
            f"  {name} "
            + " ".join(f"{v:{w}}" for v, (_, w) in zip(cells, _COLUMNS[1:], strict=True))
        )
    for r in report["runs"]:
        if r.get("killed_at_s") is not None and r.get("available"):
            c = r["capacity"]
            lines.append(
                f"  SIGKILL of 1 of {r['workers']} workers at {r['killed_at_s']:.1f} s "
                f"({r['completed_at_kill']} tasks done): bucket full {c['bucket_full_s']:.1f} s "
                f"in all, longest {c['longest_full_s']:.1f} s; longest admission gap "
                f"{c['longest_admission_gap_s']:.1f} s; lease {report['lease_s']:g} s, "
                f"dead waiter TTL {report['waiter_ttl_s']:g} s, "
                f"heartbeat timeout {report['heartbeat_timeout_s']:g} s"
            )
        for failure in r.get("not_completed", []):
            lines.append(f"  NOT COMPLETED [{r['label']}] {failure}")
    return "\n".join(lines)
