"""The data converter shared by clients and workers.

Both ends must agree on it: pydantic models travel as JSON (readable in the Web
UI), and when ``AI_ORCHESTRATOR_ENCRYPTION_KEYS`` is set every payload and
failure message is AES-GCM encrypted before it leaves the process.

Decoding is lenient about unknown fields while construction stays strict:
during a rolling upgrade a newer client may send a task with a field an older
worker does not know, and refusing it would fail that run's every workflow
task forever. So payloads are validated under :data:`~.core.LENIENT_CONTEXT`,
which makes our models drop keys that are not fields; ``Task(prompt="x",
bogus=1)`` still fails at construction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

from ..config import ConfigError
from ..core import LENIENT_CONTEXT
from .codec import EncryptionCodec


class LenientPydanticJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """temporalio's pydantic JSON converter, validating under :data:`LENIENT_CONTEXT`.

    Encoding is inherited unchanged; decoding repeats the parent's type
    adapter lookup (same LRU cache, same unhashable-hint fallback) because the
    parent offers no hook to pass a validation context.
    """

    def _adapter(self, type_hint: Any) -> TypeAdapter[Any]:
        try:
            return self._type_adapter(type_hint)
        except TypeError:
            # An unhashable hint bypasses the cache; a TypeError raised while
            # building the adapter is a real error.
            try:
                hash(type_hint)
            except TypeError:
                return TypeAdapter(type_hint)
            raise

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        adapter = self._adapter(type_hint if type_hint is not None else Any)
        return adapter.validate_json(payload.data, context=LENIENT_CONTEXT)


class LenientPydanticPayloadConverter(CompositePayloadConverter):
    """temporalio's default converters with JSON handled by the lenient pydantic one."""

    def __init__(self) -> None:
        json_converter = LenientPydanticJSONPayloadConverter()
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


#: The unencrypted converter; :func:`encrypted_data_converter` builds on it.
lenient_pydantic_data_converter = DataConverter(
    payload_converter_class=LenientPydanticPayloadConverter
)


def encrypted_data_converter(codec: EncryptionCodec) -> DataConverter:
    """The project's pydantic data converter, with every payload encrypted by ``codec``.

    The failure converter moves failure messages and stack traces into encoded
    attributes, so they pass through the codec too: an error message that
    quotes a prompt is encrypted like the prompt itself. Decoding is as
    lenient about unknown fields as the unencrypted converter.
    """
    return dataclasses.replace(
        lenient_pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def data_converter(codec: EncryptionCodec | None = None) -> DataConverter:
    if codec is None:
        return lenient_pydantic_data_converter
    return encrypted_data_converter(codec)


def data_converter_from_env(env: Mapping[str, str] | None = None) -> DataConverter:
    """The converter the environment asks for: encrypted if keys are configured."""
    try:
        codec = EncryptionCodec.from_env(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return data_converter(codec)
