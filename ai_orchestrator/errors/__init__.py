"""Provider failures: their names, the verdict on each, and the classifier.

The names, :class:`Verdict` and :func:`redact` import no vendor SDK, so the
workflow's sandbox can use them. :func:`classify` needs the SDKs' exception
types: importing it from here loads the classifier on first use (PEP 562), so
``from ai_orchestrator.errors import classify`` keeps working without the
workflow paying for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._redact import redact, redaction_echoes
from ._types import (
    BUDGET_EXCEEDED,
    CANCELLED_BEFORE_START,
    CONFIGURATION_ERROR,
    CONNECTION_FAILED,
    CONTENT_FILTERED,
    DEADLINE_EXCEEDED,
    INCOMPLETE_STREAM,
    NAMED_BUDGET_EXCEEDED,
    OUTPUT_TOO_LARGE,
    PROVIDER_FAULTS_EXHAUSTED,
    PROVIDER_NOT_CONFIGURED,
    PROVIDER_REJECTED,
    PROVIDER_UNAVAILABLE,
    QUOTA_EXHAUSTED,
    RATE_LIMITED,
    TASK_FAILED,
    WORKER_SHUTDOWN,
    ContinuationLost,
    IncompleteStreamError,
    Verdict,
    connection_verdict,
    parse_retry_after,
)

if TYPE_CHECKING:
    from ._classify import classify

__all__ = [
    "BUDGET_EXCEEDED",
    "CANCELLED_BEFORE_START",
    "CONFIGURATION_ERROR",
    "CONNECTION_FAILED",
    "CONTENT_FILTERED",
    "DEADLINE_EXCEEDED",
    "INCOMPLETE_STREAM",
    "NAMED_BUDGET_EXCEEDED",
    "OUTPUT_TOO_LARGE",
    "PROVIDER_FAULTS_EXHAUSTED",
    "PROVIDER_NOT_CONFIGURED",
    "PROVIDER_REJECTED",
    "PROVIDER_UNAVAILABLE",
    "QUOTA_EXHAUSTED",
    "RATE_LIMITED",
    "TASK_FAILED",
    "WORKER_SHUTDOWN",
    "ContinuationLost",
    "IncompleteStreamError",
    "Verdict",
    "classify",
    "connection_verdict",
    "parse_retry_after",
    "redact",
    "redaction_echoes",
]


def __getattr__(name: str) -> Any:
    if name == "classify":
        return importlib.import_module("._classify", __name__).classify
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
