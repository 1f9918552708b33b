"""The codec server answers the Web UI under either name it is opened by.

``dev`` and ``run`` print the Web UI as ``http://127.0.0.1:PORT``; the README
says ``http://localhost:PORT``. A browser sends whichever origin the operator
opened, and CORS needs that exact origin back, or the UI says "Codec Server
could not connect".
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from ai_orchestrator.cli import cli
from ai_orchestrator.payloads.codec import EncryptionCodec
from ai_orchestrator.payloads.codec_server import codec_app


def codec() -> EncryptionCodec:
    return EncryptionCodec({"k1": bytes(range(32))}, "k1")


async def allowed_origin(app: web.Application, origin: str) -> str:
    """The Access-Control-Allow-Origin the server sends to a page from ``origin``."""
    async with TestClient(TestServer(app)) as client:
        preflight = await client.options(
            "/decode",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        posted = await client.post("/decode", json={"payloads": []}, headers={"Origin": origin})
        assert posted.status == 200
        assert (
            preflight.headers["Access-Control-Allow-Origin"]
            == (posted.headers["Access-Control-Allow-Origin"])
        )
        return posted.headers["Access-Control-Allow-Origin"]


async def test_default_accepts_the_dev_ui_as_localhost_and_127_0_0_1() -> None:
    app = codec_app(codec())
    for origin in ("http://localhost:8233", "http://127.0.0.1:8233"):
        assert await allowed_origin(app, origin) == origin
    assert await allowed_origin(app, "https://evil.example") != "https://evil.example"


async def test_ui_on_another_port_is_accepted_under_both_names() -> None:
    from ai_orchestrator.payloads.codec_server import ui_origins

    app = codec_app(codec(), allow_origin=ui_origins(18233))
    for origin in ("http://localhost:18233", "http://127.0.0.1:18233"):
        assert await allowed_origin(app, origin) == origin
    assert await allowed_origin(app, "http://127.0.0.1:8233") != "http://127.0.0.1:8233"


def test_codec_server_command_takes_the_ui_port() -> None:
    """The command's help offers --ui-port, the port `dev`/`run` printed."""
    result = CliRunner().invoke(cli, ["codec-server", "--help"])
    assert result.exit_code == 0 and "--ui-port" in result.output
