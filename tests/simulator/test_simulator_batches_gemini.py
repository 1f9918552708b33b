"""The simulator's Gemini batches, driven by the real google-genai SDK (Developer API mode)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors, types

from ai_orchestrator.providers._tls import genai_http_options
from ai_orchestrator.simulator import BatchBehaviour, Simulator
from ai_orchestrator.simulator._text import simulated_tokens

API_KEY = "gm-test-simulator-0123456789"
MODEL = "gemini-2.5-flash"
ENDED = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")


@pytest_asyncio.fixture
async def gemini(sim: Simulator) -> AsyncIterator[genai.client.AsyncClient]:
    options = genai_http_options(base_url=sim.url, retry_options=types.HttpRetryOptions(attempts=1))
    async with genai.Client(api_key=API_KEY, http_options=options).aio as client:
        yield client


def _prompt(key: str) -> str:
    return f"Tell me about rivers, item {key}"


def _request(key: str, **config: Any) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": _prompt(key)}]}],
        "metadata": {"key": key},
        "config": config or None,
    }


async def _create(client: genai.client.AsyncClient, keys: str, name: str = "") -> types.BatchJob:
    src: Any = [_request(k) for k in keys]
    return await client.batches.create(model=MODEL, src=src, config={"display_name": name})


async def _until(
    client: genai.client.AsyncClient, name: str, done: Callable[[types.BatchJob], bool]
) -> types.BatchJob:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not done(job := await client.batches.get(name=name)):
        assert loop.time() < deadline, f"batch stuck at {job.state}"
        await asyncio.sleep(0.01)
    return job


def _ended(job: types.BatchJob) -> bool:
    return job.state is not None and job.state.value in ENDED


async def test_a_batch_answers_like_the_live_api(
    sim: Simulator, gemini: genai.client.AsyncClient
) -> None:
    # Validating takes a tenth of the turnaround: long enough for a loaded machine's answer.
    sim.batch_behaviour = BatchBehaviour(turnaround=2.0)
    created = await _create(gemini, "abc", name="run-1")
    assert created.name is not None and created.name.startswith("batches/")
    assert created.state == types.JobState.JOB_STATE_PENDING and created.display_name == "run-1"
    job = await _until(gemini, created.name, _ended)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED and job.end_time is not None
    assert job.dest is not None and job.dest.inlined_responses is not None
    answers = job.dest.inlined_responses
    assert [r.metadata for r in answers] == [{"key": k} for k in "abc"]
    live = await gemini.models.generate_content(model=MODEL, contents=_prompt("b"))
    for key, answer in zip("abc", answers, strict=True):
        assert answer.error is None and answer.response is not None
        seed = [{"role": "user", "content": [{"text": _prompt(key)}]}]
        assert answer.response.text == "".join(simulated_tokens(seed, MODEL, 16))
    assert answers[1].response is not None and answers[1].response.text == live.text
    assert sim.batches[created.name.removeprefix("batches/")].api == "gemini"
    assert sim.generated_tokens == 4 * 16


async def test_failing_and_cut_requests(sim: Simulator, gemini: genai.client.AsyncClient) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0, error_ids={"b"}, error_status=503)
    src: Any = [_request("a", max_output_tokens=3), _request("b")]
    job = await gemini.batches.create(model=MODEL, src=src)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert job.dest is not None and job.dest.inlined_responses is not None
    cut, failed = job.dest.inlined_responses
    assert cut.response is not None and cut.response.usage_metadata is not None
    assert cut.response.usage_metadata.candidates_token_count == 3
    assert failed.response is None and failed.error is not None
    assert failed.error.code == 503


async def test_cancel_keeps_the_answers_and_lines_up_the_rest(
    sim: Simulator, gemini: genai.client.AsyncClient
) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0.2, stall_after=1)
    created = await _create(gemini, "abc")
    assert created.name is not None
    await asyncio.sleep(0.1)  # "a" is answered at 0.073 s, then the batch stalls
    await gemini.batches.cancel(name=created.name)
    job = await _until(gemini, created.name, _ended)
    assert job.state == types.JobState.JOB_STATE_CANCELLED
    assert job.dest is not None and job.dest.inlined_responses is not None
    a, b, c = job.dest.inlined_responses
    assert a.response is not None and b.error is not None and c.error is not None
    assert (b.error.code, c.metadata) == (499, {"key": "c"})
    with pytest.raises(errors.ClientError) as ended:
        await gemini.batches.cancel(name=created.name)
    assert ended.value.code == 400


async def test_expired_and_failed_batches(sim: Simulator, gemini: genai.client.AsyncClient) -> None:
    sim.batch_behaviour = BatchBehaviour(turnaround=0, outcome="expired")
    expired = await _create(gemini, "ab")
    assert expired.state == types.JobState.JOB_STATE_EXPIRED
    assert expired.dest is not None and expired.dest.inlined_responses is not None
    assert {r.error.code for r in expired.dest.inlined_responses if r.error} == {504}
    sim.batch_behaviour = BatchBehaviour(turnaround=0, outcome="failed")
    failed = await _create(gemini, "ab")
    assert failed.state == types.JobState.JOB_STATE_FAILED


async def test_list_and_delete_share_v1_with_openai(
    sim: Simulator, gemini: genai.client.AsyncClient, openai_client: openai.AsyncOpenAI
) -> None:
    """google-genai's ``v1`` paths are OpenAI's too: the headers pick the vendor."""
    sim.batch_behaviour = BatchBehaviour(turnaround=60)
    names = [(await _create(gemini, "a", name=f"run-{i}")).name for i in range(3)]
    pager = await gemini.batches.list(config={"page_size": 2})
    assert [job.name async for job in pager] == names[::-1]  # pages through nextPageToken
    assert [b async for b in openai_client.batches.list()] == []
    with pytest.raises(openai.NotFoundError):
        await openai_client.batches.retrieve(str(names[0]).removeprefix("batches/"))
    await gemini.batches.delete(name=str(names[0]))
    with pytest.raises(errors.ClientError) as gone:
        await gemini.batches.get(name=str(names[0]))
    assert gone.value.code == 404


async def test_bad_requests_are_invalid_arguments(
    sim: Simulator, gemini: genai.client.AsyncClient
) -> None:
    bad: Any = [{"contents": [{"role": "user", "parts": []}]}]
    with pytest.raises(errors.ClientError) as invalid:
        await gemini.batches.create(model=MODEL, src=bad)
    assert invalid.value.code == 400 and "requests[0]" in str(invalid.value.message)
    assert sim.batches == {}
