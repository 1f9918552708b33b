"""With encryption on, the Temporal server's own database holds no prompt text."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

from temporalio.client import Client

from ai_orchestrator import Task, TaskClient, TaskStatus
from ai_orchestrator.local.devserver import DevServer
from ai_orchestrator.payloads.codec import EncryptionCodec
from ai_orchestrator.payloads.converter import data_converter
from ai_orchestrator.simulator import Fault, Simulator

from ..conftest import FAST_RETRY, running_worker, unique

PROMPT = "Draft the acquisition letter for Project Bluefinch"
ECHOED = "Bluefinch merger confidential appendix"


async def run_and_read_database(
    tmp_path: Path, sim: Simulator, codec: EncryptionCodec | None
) -> bytes:
    db = tmp_path / "temporal.db"
    async with DevServer(db_file=db) as server:
        client = await Client.connect(server.target, data_converter=data_converter(codec))
        queue = unique("enc")
        tasks = TaskClient(client, task_queue=queue, retry=FAST_RETRY)
        sim.tokens_per_second = 60  # streamed: chunk signals carry the text
        sim.script(Fault.status(400, message=f"cannot process: {ECHOED}"), Fault.ok())
        async with running_worker(client, queue, sim, checkpoint_interval=0.1):
            failed = await tasks.execute(Task(prompt=ECHOED, task_id=unique("fail")))
            done = await tasks.execute(
                Task(prompt=PROMPT, task_id=unique("ok"), context={"client": "Bluefinch Holdings"})
            )
        assert failed.status == TaskStatus.FAILED
        assert done.status == TaskStatus.COMPLETED and done.metadata["signals"] >= 1
        assert done.task.prompt == PROMPT  # the client decrypts transparently
        assert ECHOED not in (failed.error or "")  # the provider's echo of the prompt is redacted
    return await asyncio.to_thread(read_database, tmp_path)


def read_database(folder: Path) -> bytes:
    """The SQLite file and its WAL, byte for byte, as an attacker with disk access sees them."""
    return b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith("temporal.db"))


async def test_database_has_no_prompt_text_when_encrypted(tmp_path: Path, sim: Simulator) -> None:
    codec = EncryptionCodec({"k1": os.urandom(32)}, "k1")
    stored = await run_and_read_database(tmp_path, sim, codec)
    assert stored, "the SQLite file should not be empty"
    for secret in (PROMPT, "Bluefinch", "[simulated]", "cannot process"):
        assert secret.encode() not in stored, f"{secret!r} found in the server's database"
        assert base64.b64encode(secret.encode())[:12] not in stored


async def test_positive_control_plaintext_is_visible_without_encryption(
    tmp_path: Path, sim: Simulator
) -> None:
    stored = await run_and_read_database(tmp_path, sim, None)
    files = {p.name: p.stat().st_size for p in tmp_path.iterdir()}  # noqa: ASYNC240
    assert PROMPT.encode() in stored, (
        f"plain prompt not found in {files}"
    )  # so the test above can fail
