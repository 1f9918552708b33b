"""Re-attaching to the answer an earlier attempt left generating, instead of paying twice.

A provider that keeps an answer going on its side (OpenAI's background
responses, a chat continued from its text so far) lets the next attempt take it
up where the workflow's durable checkpoint ends, in the same generation, so
readers see no restart. When that is no longer possible the attempt starts over
in a new generation: the text of two answers is never joined.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError

from ..errors import ContinuationLost
from ..messages import PROGRESS_QUERY, AttemptState, CompletionRequest, Progress, ProgressQuery
from ..providers import Provider, ProviderStream
from ._pacing import LastBeat
from ._stop import stop_continuation

logger = logging.getLogger(__name__)


async def reattach(
    provider: Provider,
    request: CompletionRequest,
    model: str,
    state: AttemptState,
    handle: WorkflowHandle[Any, Any],
    beat: LastBeat,
    to_error: Callable[[BaseException], ApplicationError],
) -> ProviderStream | None:
    """The rest of the answer an earlier attempt streamed, or None to start over.

    Starting over takes a new generation, so readers see a restart. A passing
    failure (an outage, a rate limit) fails this attempt and keeps the
    continuation for the next one; ``to_error`` says which failures pass.
    """
    token = state.continuation
    assert token is not None
    info = activity.info()
    try:
        extra: dict[str, str] = {}
        if token.startswith("chat:"):  # a chat continuation sends the text so far
            try:
                extra["prefix"] = await checkpoint_text(handle, state)
            except ContinuationLost:
                raise
            except Exception as exc:
                raise ContinuationLost(f"cannot read the text to continue: {exc}") from exc
        stream = provider.stream(request.task, model, continue_from=token, **extra)  # type: ignore[call-arg]
    except ContinuationLost as exc:
        stream, lost = None, exc
    else:
        try:
            await stream.__aenter__()
            return stream
        except ContinuationLost as exc:
            lost = exc
            await stream.close()
        except asyncio.CancelledError:
            await stream.close()
            details = activity.cancellation_details()
            if details is None or details.cancel_requested:
                await stop_continuation(provider, token)
            raise
        except Exception as exc:
            await stream.close()
            error = to_error(exc)
            if error.non_retryable:  # no attempt will re-attach: stop paying for it
                await stop_continuation(provider, token)
            else:
                state.closed = True  # nothing to bill: it never streamed
                await beat.last_word(state)
            raise error from None
    logger.info("cannot continue the earlier answer, starting over: %s", lost)
    state.continuation, state.continued_at, state.response_id = None, 0, None
    state.generation = request.generation_base + info.attempt
    return None


async def checkpoint_text(handle: WorkflowHandle[Any, Any], state: AttemptState) -> str:
    """The durable text a chat continuation resumes after (from the workflow)."""
    progress = await handle.query(PROGRESS_QUERY, ProgressQuery(offset=0), result_type=Progress)
    if progress.attempt != state.generation or progress.length < state.continued_at:
        raise ContinuationLost("the workflow's checkpoint does not hold the text to continue")
    return str(progress.text[: state.continued_at])
