"""What Temporal stores and how: the data converter, optional encryption, and the
codec server that lets the Web UI read encrypted payloads."""

from __future__ import annotations

from .codec import ENV_ENCRYPTION_KEYS, EncryptionCodec, PayloadDecryptionError, generate_key
from .converter import data_converter, data_converter_from_env, encrypted_data_converter

__all__ = [
    "ENV_ENCRYPTION_KEYS",
    "EncryptionCodec",
    "PayloadDecryptionError",
    "data_converter",
    "data_converter_from_env",
    "encrypted_data_converter",
    "generate_key",
]
