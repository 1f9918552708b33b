"""Payload encryption and the codec server, without a Temporal server.

The point of encryption is that the Temporal server's database holds no prompt
text, so most tests look at the encoded bytes themselves, not only at the round
trip.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from ai_orchestrator.payloads.codec import (
    ENV_ACCEPT_PLAINTEXT,
    ENV_ENCRYPTION_KEYS,
    METADATA_KEY_ID,
    EncryptionCodec,
    PayloadDecryptionError,
    generate_key,
)
from ai_orchestrator.payloads.codec_server import codec_app, serve_codec
from ai_orchestrator.payloads.converter import encrypted_data_converter

KEY_OLD = bytes(range(32))
KEY_NEW = bytes(range(100, 132))
SECRET = b"secret prompt text: summarise the merger memo"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def plain_payload(data: bytes = b'"' + SECRET + b'"') -> Payload:
    return Payload(
        metadata={"encoding": b"json/plain", "messageType": b"myapp.Prompt"},
        data=data,
    )


@pytest.fixture
def codec() -> EncryptionCodec:
    return EncryptionCodec({"k1": KEY_OLD}, "k1")


# --- the codec --------------------------------------------------------------


async def test_round_trip_restores_payload_exactly(codec: EncryptionCodec) -> None:
    original = plain_payload()
    [encoded] = await codec.encode([original])
    [decoded] = await codec.decode([encoded])
    assert decoded == original
    assert dict(decoded.metadata) == {"encoding": b"json/plain", "messageType": b"myapp.Prompt"}


async def test_encoded_payload_hides_data_and_metadata(codec: EncryptionCodec) -> None:
    [encoded] = await codec.encode([plain_payload()])
    assert dict(encoded.metadata) == {
        "encoding": b"binary/encrypted",
        "encryption-key-id": b"k1",
    }
    stored = encoded.SerializeToString()
    for clear in (SECRET, b"secret prompt", b"json/plain", b"myapp.Prompt"):
        assert clear not in stored


async def test_same_payload_encrypts_differently_each_time(codec: EncryptionCodec) -> None:
    first, second = await codec.encode([plain_payload(), plain_payload()])
    assert first.data != second.data
    assert first.data[:12] != second.data[:12]  # fresh nonce


async def test_rotation_reads_old_payloads_and_writes_with_the_new_key(
    codec: EncryptionCodec,
) -> None:
    [old] = await codec.encode([plain_payload()])
    rotated = EncryptionCodec({"k2": KEY_NEW, "k1": KEY_OLD}, "k2")
    assert rotated.active_key_id == "k2" and rotated.key_ids == ("k2", "k1")
    [decoded_old] = await rotated.decode([old])
    assert decoded_old == plain_payload()
    [new] = await rotated.encode([plain_payload()])
    assert new.metadata["encryption-key-id"] == b"k2"
    assert (await rotated.decode([new])) == [plain_payload()]


async def test_unknown_key_id_is_a_clear_error(codec: EncryptionCodec) -> None:
    [encoded] = await codec.encode([plain_payload()])
    other = EncryptionCodec({"a": KEY_NEW, "b": KEY_OLD}, "a")
    with pytest.raises(ValueError) as caught:
        await other.decode([encoded])
    assert str(caught.value) == "payload encrypted with unknown key id 'k1'; known: a, b"


async def test_tampered_payload_fails_authentication(codec: EncryptionCodec) -> None:
    [encoded] = await codec.encode([plain_payload()])
    tampered = Payload()
    tampered.CopyFrom(encoded)
    flipped = bytearray(tampered.data)
    flipped[-1] ^= 0x01
    tampered.data = bytes(flipped)
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await codec.decode([tampered])

    truncated = Payload()
    truncated.CopyFrom(encoded)
    truncated.data = encoded.data[:10]
    with pytest.raises(PayloadDecryptionError, match="truncated"):
        await codec.decode([truncated])


async def test_key_id_is_bound_as_associated_data() -> None:
    """Relabelling a payload with another known key id must not decrypt it."""
    same_key_twice = EncryptionCodec({"a": KEY_OLD, "b": KEY_OLD}, "a")
    [encoded] = await same_key_twice.encode([plain_payload()])
    encoded.metadata["encryption-key-id"] = b"b"
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await same_key_twice.decode([encoded])


@pytest.mark.parametrize(
    "payload",
    [plain_payload(), Payload(metadata={"encoding": b"binary/null"}), Payload()],
    ids=["json", "null", "bare"],
)
async def test_unencrypted_payloads_are_refused(codec: EncryptionCodec, payload: Payload) -> None:
    # Anyone who can write to the Temporal server could otherwise inject plaintext.
    with pytest.raises(PayloadDecryptionError, match="refusing an unencrypted payload") as info:
        await codec.decode([payload])
    assert ENV_ACCEPT_PLAINTEXT in str(info.value)
    assert SECRET.decode() not in str(info.value)


async def test_one_plaintext_payload_fails_the_whole_batch(codec: EncryptionCodec) -> None:
    [encrypted] = await codec.encode([plain_payload()])
    with pytest.raises(PayloadDecryptionError):
        await codec.decode([encrypted, plain_payload()])


async def test_migration_switch_lets_plaintext_through() -> None:
    codec = EncryptionCodec({"k1": KEY_OLD}, "k1", accept_plaintext=True)
    assert codec.accept_plaintext
    [encrypted] = await codec.encode([plain_payload()])
    payloads = [plain_payload(), Payload(metadata={"encoding": b"binary/null"}), Payload()]
    assert await codec.decode([*payloads, encrypted]) == [*payloads, plain_payload()]
    assert "accept_plaintext=True" in repr(codec)


async def test_with_accept_plaintext_copies_keys_and_leaves_the_original_strict(
    codec: EncryptionCodec,
) -> None:
    lenient = codec.with_accept_plaintext(True)
    assert lenient.accept_plaintext and not codec.accept_plaintext
    [encrypted] = await codec.encode([plain_payload()])
    assert await lenient.decode([encrypted, plain_payload()]) == [plain_payload()] * 2
    with pytest.raises(PayloadDecryptionError):
        await codec.decode([plain_payload()])


def test_constructor_validates_keys() -> None:
    with pytest.raises(ValueError, match=r"'short'.*32 bytes"):
        EncryptionCodec({"ok": KEY_OLD, "short": KEY_OLD[:31]}, "ok")
    with pytest.raises(ValueError, match="'missing'"):
        EncryptionCodec({"ok": KEY_OLD}, "missing")
    with pytest.raises(ValueError):
        EncryptionCodec({}, "x")
    with pytest.raises(ValueError, match="non-empty"):
        EncryptionCodec({"": KEY_OLD}, "")


def test_repr_shows_ids_not_keys() -> None:
    codec = EncryptionCodec({"k1": KEY_OLD}, "k1")
    text = repr(codec)
    assert "k1" in text and b64(KEY_OLD) not in text and str(KEY_OLD) not in text


# --- from_env and generate_key ----------------------------------------------


async def test_from_env_parses_entries_first_is_active() -> None:
    urlsafe = base64.urlsafe_b64encode(KEY_NEW).decode().rstrip("=")
    value = f"  new : {urlsafe} ,\n old:{b64(KEY_OLD)} , "
    codec = EncryptionCodec.from_env({ENV_ENCRYPTION_KEYS: value})
    assert codec is not None
    assert codec.active_key_id == "new" and codec.key_ids == ("new", "old")
    [encoded] = await codec.encode([plain_payload()])
    reference = EncryptionCodec({"new": KEY_NEW}, "new")
    assert await reference.decode([encoded]) == [plain_payload()]


async def test_from_env_keeps_every_key_and_reads_urlsafe_ones() -> None:
    """A doubled comma drops no later key: a dropped old key is unreadable history."""
    key = bytes([0xFB, 0xFF] * 16)  # base64 with "+" and "/", so "-" and "_" when urlsafe
    urlsafe = base64.urlsafe_b64encode(key).decode()
    codec = EncryptionCodec.from_env({ENV_ENCRYPTION_KEYS: f"new:{b64(KEY_NEW)},,old:{urlsafe}"})
    assert codec is not None and codec.key_ids == ("new", "old")
    [encoded] = await EncryptionCodec({"old": key}, "old").encode([plain_payload()])
    assert await codec.decode([encoded]) == [plain_payload()]


async def test_a_payload_without_its_key_id_is_a_clear_error(codec: EncryptionCodec) -> None:
    [encoded] = await codec.encode([plain_payload()])
    del encoded.metadata[METADATA_KEY_ID]
    with pytest.raises(PayloadDecryptionError, match="unknown key id ''"):
        await codec.decode([encoded])


@pytest.mark.parametrize("env", [{}, {ENV_ENCRYPTION_KEYS: ""}, {ENV_ENCRYPTION_KEYS: "  \n"}])
def test_from_env_unset_means_off(env: dict[str, str]) -> None:
    assert EncryptionCodec.from_env(env) is None


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ENCRYPTION_KEYS, raising=False)
    assert EncryptionCodec.from_env() is None
    monkeypatch.setenv(ENV_ENCRYPTION_KEYS, f"k:{b64(KEY_OLD)}")
    codec = EncryptionCodec.from_env()
    assert codec is not None and codec.key_ids == ("k",)


GOOD = b64(KEY_OLD)
SHORT = b64(b"0123456789abcdef")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (GOOD, "id:base64key"),  # a key with no id
        ("k1:", "id:base64key"),
        (f":{GOOD}", "id:base64key"),
        ("k1:***not*base64***", "not valid base64"),
        (f"k1:{SHORT}", "16 bytes"),
        (f"k1:{GOOD}, k1:{b64(KEY_NEW)}", "repeats"),
        (f"k1:{GOOD},k2:{SHORT}", "entry 2"),
        (", ,", "no id:base64key entries"),
    ],
)
def test_from_env_malformed_never_echoes_keys(value: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        EncryptionCodec.from_env({ENV_ENCRYPTION_KEYS: value})
    message = str(caught.value)
    assert ENV_ENCRYPTION_KEYS in message
    assert problem in message
    for material in (GOOD, SHORT, b64(KEY_NEW), "not*base64"):
        assert material not in message
        assert material[:12] not in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[("1", True), ("true", True), (" Yes ", True), ("ON", True)],
        *[("0", False), ("false", False), ("no", False), ("off", False), ("", False)],
    ],
)
def test_from_env_reads_the_migration_switch(value: str, expected: bool) -> None:
    env = {ENV_ENCRYPTION_KEYS: f"k:{b64(KEY_OLD)}", ENV_ACCEPT_PLAINTEXT: value}
    codec = EncryptionCodec.from_env(env)
    assert codec is not None and codec.accept_plaintext is expected


def test_from_env_switch_defaults_off() -> None:
    codec = EncryptionCodec.from_env({ENV_ENCRYPTION_KEYS: f"k:{b64(KEY_OLD)}"})
    assert codec is not None and not codec.accept_plaintext


@pytest.mark.parametrize("value", ["2", "ture", "enabled"])
def test_from_env_bad_switch_is_a_clear_error(value: str) -> None:
    env = {ENV_ENCRYPTION_KEYS: f"k:{b64(KEY_OLD)}", ENV_ACCEPT_PLAINTEXT: value}
    with pytest.raises(ValueError, match=ENV_ACCEPT_PLAINTEXT) as info:
        EncryptionCodec.from_env(env)
    assert repr(value) in str(info.value) and "1/true/yes/on" in str(info.value)
    # Checked even while encryption is off, so a typo surfaces before it matters.
    with pytest.raises(ValueError, match=ENV_ACCEPT_PLAINTEXT):
        EncryptionCodec.from_env({ENV_ACCEPT_PLAINTEXT: value})


def test_from_env_bad_switch_never_echoes_a_pasted_key() -> None:
    key = b64(KEY_OLD)
    with pytest.raises(ValueError, match="44-character value") as info:
        EncryptionCodec.from_env({ENV_ACCEPT_PLAINTEXT: key})
    assert key not in str(info.value)


def test_generate_key_makes_usable_distinct_keys() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert len(base64.urlsafe_b64decode(first)) == 32
    codec = EncryptionCodec.from_env({ENV_ENCRYPTION_KEYS: f"a:{first},b:{second}"})
    assert codec is not None and codec.key_ids == ("a", "b")


# --- the data converter -----------------------------------------------------


class Prompt(BaseModel):
    text: str
    temperature: float


async def test_converter_round_trips_pydantic_models_encrypted(codec: EncryptionCodec) -> None:
    converter = encrypted_data_converter(codec)
    value = Prompt(text=SECRET.decode(), temperature=0.2)
    payloads = await converter.encode([value, "plain string"])
    for payload in payloads:
        assert payload.metadata["encoding"] == b"binary/encrypted"
        assert b"secret prompt" not in payload.SerializeToString()
    assert await converter.decode(payloads, [Prompt, str]) == [value, "plain string"]


async def test_converter_encrypts_failure_messages_and_stack_traces(
    codec: EncryptionCodec,
) -> None:
    converter = encrypted_data_converter(codec)
    try:
        raise ApplicationError("secret prompt text", type="ProviderError")
    except ApplicationError as err:
        error = err
    failure = Failure()
    await converter.encode_failure(error, failure)
    stored = failure.SerializeToString()
    assert b"secret prompt text" not in stored
    assert failure.message == "Encoded failure" and failure.stack_trace == ""
    assert failure.encoded_attributes.metadata["encoding"] == b"binary/encrypted"

    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError)
    assert decoded.message == "secret prompt text" and decoded.type == "ProviderError"


# --- the codec server -------------------------------------------------------


@pytest.fixture
async def server(codec: EncryptionCodec) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(codec_app(codec))) as client:
        yield client


def payloads_json(*payloads: Payload) -> dict[str, object]:
    return json_format.MessageToDict(Payloads(payloads=payloads))


def parse_payloads(body: object) -> list[Payload]:
    return list(json_format.ParseDict(body, Payloads()).payloads)


async def test_server_decode_reverses_encode(
    server: TestClient[web.Request, web.Application],
) -> None:
    original = [plain_payload(), Payload(metadata={"encoding": b"binary/null"})]
    encode = await server.post("/encode", json=payloads_json(*original))
    assert encode.status == 200
    encrypted = await encode.json()
    assert SECRET.decode() not in str(encrypted)
    assert all(p.metadata["encoding"] == b"binary/encrypted" for p in parse_payloads(encrypted))

    decode = await server.post("/decode", json=encrypted)
    assert decode.status == 200
    assert parse_payloads(await decode.json()) == original
    assert decode.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"

    empty = await server.post("/decode", json={"payloads": []})
    assert await empty.json() == {"payloads": []}


async def test_server_answers_cors_preflight(
    server: TestClient[web.Request, web.Application],
) -> None:
    response = await server.options(
        "/decode",
        headers={
            "Origin": "http://localhost:8233",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, x-namespace",
        },
    )
    assert response.status in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8233"
    assert response.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert (
        response.headers["Access-Control-Allow-Headers"]
        == "content-type, x-namespace, authorization"
    )
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


async def test_server_rejects_bad_json_with_one_line_error(
    server: TestClient[web.Request, web.Application],
) -> None:
    for body in (b"{not json", b'{"payloads": 3}', b"\xff\xfe"):
        response = await server.post(
            "/decode", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400
        error = (await response.json())["error"]
        assert "\n" not in error and "Traceback" not in error


async def test_server_shows_plaintext_payloads_as_they_are(
    server: TestClient[web.Request, web.Application], codec: EncryptionCodec
) -> None:
    # Display only: histories from before encryption must stay readable in the UI.
    assert not codec.accept_plaintext
    response = await server.post("/decode", json=payloads_json(plain_payload()))
    assert response.status == 200
    assert parse_payloads(await response.json()) == [plain_payload()]


async def test_server_reports_undecryptable_payloads(
    server: TestClient[web.Request, web.Application],
) -> None:
    foreign = EncryptionCodec({"other": KEY_NEW}, "other")
    [encoded] = await foreign.encode([plain_payload()])
    response = await server.post("/decode", json=payloads_json(encoded))
    assert response.status == 422
    assert "unknown key id 'other'" in (await response.json())["error"]


async def test_server_requires_the_token_when_configured(codec: EncryptionCodec) -> None:
    app = codec_app(codec, allow_origin="https://ui.example", token="s3cret-token")
    async with TestClient(TestServer(app)) as client:
        body = payloads_json(plain_payload())
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            response = await client.post("/encode", json=body, headers=headers)
            assert response.status == 401
            assert response.headers["Access-Control-Allow-Origin"] == "https://ui.example"
            assert "s3cret" not in await response.text()
        preflight = await client.options("/encode")
        assert preflight.status in (200, 204)
        ok = await client.post(
            "/encode", json=body, headers={"Authorization": "Bearer s3cret-token"}
        )
        assert ok.status == 200


def test_empty_token_is_refused(codec: EncryptionCodec) -> None:
    with pytest.raises(ValueError, match="token"):
        codec_app(codec, token="")


async def test_serve_codec_serves_until_cancelled(codec: EncryptionCodec) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.create_task(serve_codec(codec, port=port))
    url = f"http://127.0.0.1:{port}/encode"
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            try:
                async with session.post(url, json=payloads_json(plain_payload())) as response:
                    assert response.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        else:
            pytest.fail("codec server did not start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
