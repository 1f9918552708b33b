"""The data converter shared by clients and workers.

Both ends must agree on it: pydantic models travel as JSON (readable in the Web
UI), and when ``AI_ORCHESTRATOR_ENCRYPTION_KEYS`` is set every payload and
failure message is AES-GCM encrypted before it leaves the process.
"""

from __future__ import annotations

from collections.abc import Mapping

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from .codec import EncryptionCodec, encrypted_data_converter
from .config import ConfigError


def data_converter(codec: EncryptionCodec | None = None) -> DataConverter:
    return encrypted_data_converter(codec) if codec is not None else pydantic_data_converter


def data_converter_from_env(env: Mapping[str, str] | None = None) -> DataConverter:
    """The converter the environment asks for: encrypted if keys are configured."""
    try:
        codec = EncryptionCodec.from_env(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return data_converter(codec)
