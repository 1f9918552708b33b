"""Local OpenAI-, Anthropic- and Gemini-compatible server for tests, demos and benchmarks.

It stands in for OpenAI when no API key is set (Chat Completions, and the
Responses API with background mode and stream re-attachment), speaks
Anthropic's Messages API (``anthropic`` SDK, Claude Code via
``ANTHROPIC_BASE_URL``) and Gemini's generateContent API (``google-genai``
via ``GOOGLE_GEMINI_BASE_URL``), and can be scripted to fail the way real
providers fail (429s, 5xx, overload, dropped or malformed streams, stalls,
error events inside a 200 stream, refusals and safety cuts), so retry and
streaming code is exercised over real HTTP with the real SDKs. Chaos mode (a
seeded ``fault_rate``) and an ``rpm_limit`` make it fail at random and
throttle like a busy provider, reproducibly, for soak tests; both apply to
every API. :class:`Quotas` limit each API key and model the way providers do
(requests and tokens per minute, with each vendor's rate-limit headers and
429s), so clients that pace themselves can be measured offline. The batch APIs
(OpenAI's Files + Batches, Anthropic's Message Batches, Gemini's
batchGenerateContent with inlined requests) run on a clock that a
:class:`BatchBehaviour` scripts: turnaround, failing items, expiry, cancel.
"""

from ._banner import SIMULATOR_BANNER
from ._batch_state import BatchBehaviour, BatchItem, BatchRecord
from ._faults import Fault
from ._quotas import QuotaLimits, Quotas, QuotaUsage, parse_model_limits
from ._records import RecordedRequest, ResponseRecord
from ._server import Simulator, serve_forever

__all__ = [
    "SIMULATOR_BANNER",
    "BatchBehaviour",
    "BatchItem",
    "BatchRecord",
    "Fault",
    "QuotaLimits",
    "QuotaUsage",
    "Quotas",
    "RecordedRequest",
    "ResponseRecord",
    "Simulator",
    "parse_model_limits",
    "serve_forever",
]
