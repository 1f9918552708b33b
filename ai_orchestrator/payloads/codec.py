"""Optional end-to-end encryption of everything our workflows store in Temporal.

Temporal keeps every workflow input, signal, result, heartbeat detail and failure
in its database, so without encryption the server holds every prompt in clear
text. :class:`EncryptionCodec` is a Temporal payload codec: clients and workers
encrypt payloads before they leave the process and decrypt them after they come
back, so the server (and anyone reading its database or backups) sees only
ciphertext. Only holders of the key (our workers, our clients, and an operator
running :mod:`ai_orchestrator.payloads.codec_server`) can read the contents.

Design choices, and why:

* **AES-256-GCM with a random 12-byte nonce per payload.** GCM is authenticated,
  so a modified payload fails to decrypt instead of decoding to garbage. A fresh
  random nonce per payload means two identical prompts encrypt differently, so
  the server cannot even tell that two runs had the same input.
* **The whole serialized ``Payload`` proto is encrypted**, not just its ``data``.
  The original metadata (``encoding``, ``messageType``) says what kind of value
  a payload holds (e.g. which pydantic model); encrypting the serialized proto
  hides that too and restores every metadata entry exactly on decode, whatever
  the payload converter put there.
* **The key id is the AES-GCM associated data.** The id is stored in clear in
  the payload's metadata so decode can pick the right key. Binding it as
  associated data means that relabelling a payload with another key id makes
  decryption fail, rather than silently being tried under the wrong key.
* **Key rotation by id.** The codec holds several keys but always encrypts with
  the *active* one; it decrypts with whichever key a payload names. To rotate,
  put a new key first and keep the old ones listed until no open history still
  needs them.
* **Decode refuses unencrypted payloads.** With encryption on, anyone who can
  write to the Temporal server (send a signal, start a run with the plain
  ``temporal`` CLI) could otherwise inject plaintext, e.g. chunks into a task's
  answer; GCM only vouches for payloads that are encrypted. A refused payload
  fails the workflow task, so the run waits (visibly, with
  :class:`PayloadDecryptionError` naming the switch below) instead of taking
  unauthenticated input. The exception is the **migration switch**
  ``AI_ORCHESTRATOR_ENCRYPTION_ACCEPT_PLAINTEXT=1``: turn it on only while
  histories written before encryption was turned on are still open, and off
  once they have closed. (Turning encryption *off* again needs the codec to
  stay configured for decoding old histories.) The codec server decodes for
  display only, so it shows plaintext payloads as they are.

Keys come from ``AI_ORCHESTRATOR_ENCRYPTION_KEYS`` (see
:meth:`EncryptionCodec.from_env`); error messages never contain key material.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
from collections.abc import Mapping, Sequence

import temporalio.converter
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload

#: Environment variable holding ``id:base64key`` entries; the first is active.
ENV_ENCRYPTION_KEYS = "AI_ORCHESTRATOR_ENCRYPTION_KEYS"

#: Migration switch: ``1`` lets decode accept unencrypted payloads (see module doc).
ENV_ACCEPT_PLAINTEXT = "AI_ORCHESTRATOR_ENCRYPTION_ACCEPT_PLAINTEXT"
_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})
_FALSE_VALUES = frozenset({"", "0", "false", "no", "off"})

#: ``encoding`` metadata value marking a payload this codec encrypted.
ENCODING = b"binary/encrypted"
#: Metadata key naming the key a payload was encrypted with.
METADATA_KEY_ID = "encryption-key-id"

KEY_SIZE = 32
NONCE_SIZE = 12
#: GCM appends a 16-byte authentication tag to the ciphertext.
_TAG_SIZE = 16


class PayloadDecryptionError(ValueError):
    """A payload cannot be decrypted (unknown key id, tampered data, or not encrypted).

    A ``ValueError`` subclass so callers can treat it like any bad input; the
    message names the key id but never contains key material or plaintext.
    """


class EncryptionCodec(temporalio.converter.PayloadCodec):
    """AES-256-GCM payload codec with key rotation by key id.

    Encode always uses ``active_key_id``; decode picks the key named in each
    payload's ``encryption-key-id`` metadata, so payloads written under an older
    key stay readable as long as that key is still listed. Decode refuses
    unencrypted payloads unless ``accept_plaintext`` is set (migration only).
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        active_key_id: str,
        *,
        accept_plaintext: bool = False,
    ) -> None:
        """Check and hold the keys.

        Raises:
            ValueError: a key is not exactly 32 bytes (the message names its
                id), a key id is empty, or ``active_key_id`` is not in ``keys``.
        """
        if not keys:
            raise ValueError("EncryptionCodec needs at least one key")
        ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not key_id:
                raise ValueError("encryption key ids must be non-empty strings")
            if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
                raise ValueError(
                    f"encryption key {key_id!r} must be exactly {KEY_SIZE} bytes (AES-256)"
                )
            ciphers[key_id] = AESGCM(bytes(key))
        if active_key_id not in ciphers:
            raise ValueError(
                f"active key id {active_key_id!r} is not among the keys: {', '.join(ciphers)}"
            )
        self._ciphers = ciphers
        self._keys = {key_id: bytes(key) for key_id, key in keys.items()}
        self._active_key_id = active_key_id
        self._accept_plaintext = bool(accept_plaintext)

    @property
    def active_key_id(self) -> str:
        """The id of the key every new payload is encrypted with."""
        return self._active_key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """All ids this codec can decrypt, in the order given (ids are not secret)."""
        return tuple(self._ciphers)

    def raw_keys(self) -> list[bytes]:
        """Key material, active key first: only to derive other keys from (never log it)."""
        active = self._keys[self._active_key_id]
        return [active, *(key for kid, key in self._keys.items() if kid != self._active_key_id)]

    @property
    def accept_plaintext(self) -> bool:
        """Whether decode lets unencrypted payloads through (the migration switch)."""
        return self._accept_plaintext

    def with_accept_plaintext(self, accept: bool) -> EncryptionCodec:
        """The same keys with the switch set; for the codec server, which only displays."""
        clone = copy.copy(self)
        clone._accept_plaintext = bool(accept)
        return clone

    def __repr__(self) -> str:
        """Show key ids only, so a logged codec never leaks key material."""
        plaintext = ", accept_plaintext=True" if self._accept_plaintext else ""
        return (
            f"EncryptionCodec(key_ids={list(self._ciphers)!r}, "
            f"active={self._active_key_id!r}{plaintext})"
        )

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload (proto and all) under the active key."""
        return [self._encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt each payload; refuse unencrypted ones unless ``accept_plaintext``."""
        return [self._decrypt(payload) for payload in payloads]

    def _encrypt(self, payload: Payload) -> Payload:
        key_id = self._active_key_id
        nonce = os.urandom(NONCE_SIZE)
        ciphertext = self._ciphers[key_id].encrypt(
            nonce, payload.SerializeToString(), key_id.encode()
        )
        return Payload(
            metadata={"encoding": ENCODING, METADATA_KEY_ID: key_id.encode()},
            data=nonce + ciphertext,
        )

    def _decrypt(self, payload: Payload) -> Payload:
        encoding = payload.metadata.get("encoding")
        if encoding != ENCODING:
            if self._accept_plaintext:
                return payload
            shown = (encoding or b"none").decode("utf-8", errors="replace")[:40]
            raise PayloadDecryptionError(
                f"refusing an unencrypted payload (encoding {shown!r}): with encryption on, "
                "every payload must be encrypted, or anyone who can write to the Temporal "
                "server could inject data. If histories written before encryption was "
                f"turned on are still open, set {ENV_ACCEPT_PLAINTEXT}=1 until they close"
            )
        raw_id = payload.metadata.get(METADATA_KEY_ID, b"")
        key_id = raw_id.decode("utf-8", errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with unknown key id {key_id!r}; "
                f"known: {', '.join(self._ciphers)}"
            )
        data = payload.data
        if len(data) < NONCE_SIZE + _TAG_SIZE:
            raise PayloadDecryptionError(
                f"encrypted payload (key id {key_id!r}) is truncated: {len(data)} bytes"
            )
        try:
            plaintext = cipher.decrypt(data[:NONCE_SIZE], data[NONCE_SIZE:], raw_id)
        except InvalidTag:
            raise PayloadDecryptionError(
                f"encrypted payload (key id {key_id!r}) failed authentication: "
                "it was modified, or the key registered under that id is not the one "
                "that encrypted it"
            ) from None
        return Payload.FromString(plaintext)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EncryptionCodec | None:
        """Build a codec from ``AI_ORCHESTRATOR_ENCRYPTION_KEYS``, or None if unset.

        The value is comma-separated ``id:base64key`` entries (standard or
        urlsafe base64 of 32 bytes, padding optional, whitespace around entries
        tolerated); the first entry is the active key, later ones are kept only
        for decoding older payloads. Unset or blank means encryption is off.
        ``AI_ORCHESTRATOR_ENCRYPTION_ACCEPT_PLAINTEXT`` (``1``/``true``/``yes``/
        ``on`` or ``0``/``false``/``no``/``off``, default off) sets
        ``accept_plaintext``; it is checked even when no keys are set, so a
        typo is caught before encryption is turned on.

        Raises:
            ValueError: a value is malformed. The message names the variable,
                the entry's position and the problem; it never includes key
                material (not even key ids, since a mis-ordered entry could put
                a key where the id belongs).
        """
        source = os.environ if env is None else env
        accept_plaintext = _parse_switch(source.get(ENV_ACCEPT_PLAINTEXT, ""))
        raw = source.get(ENV_ENCRYPTION_KEYS, "")
        if not raw.strip():
            return None
        entries = [entry.strip() for entry in raw.split(",")]
        keys: dict[str, bytes] = {}
        first_id: str | None = None
        for position, entry in enumerate(entries, start=1):
            if not entry:
                continue  # tolerate a trailing or doubled comma
            where = f"{ENV_ENCRYPTION_KEYS} entry {position}"
            key_id, sep, encoded = (part.strip() for part in entry.partition(":"))
            if not sep or not key_id or not encoded:
                raise ValueError(f"{where} is not of the form id:base64key")
            key = _decode_base64(encoded)
            if key is None:
                raise ValueError(f"{where}: the key is not valid base64")
            if len(key) != KEY_SIZE:
                raise ValueError(
                    f"{where}: the key decodes to {len(key)} bytes; AES-256 needs "
                    f"{KEY_SIZE} (generate one with ai_orchestrator.payloads.codec.generate_key())"
                )
            if key_id in keys:
                raise ValueError(f"{where} repeats the key id of an earlier entry")
            keys[key_id] = key
            first_id = first_id or key_id
        if first_id is None:
            raise ValueError(f"{ENV_ENCRYPTION_KEYS} is set but contains no id:base64key entries")
        return cls(keys, first_id, accept_plaintext=accept_plaintext)


def _parse_switch(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE_VALUES:
        return True
    if value in _FALSE_VALUES:
        return False
    # Echo only short values: a long one may be a key pasted into the wrong variable.
    shown = repr(raw.strip()) if len(raw.strip()) <= 8 else f"a {len(raw.strip())}-character value"
    raise ValueError(f"{ENV_ACCEPT_PLAINTEXT} must be 1/true/yes/on or 0/false/no/off, got {shown}")


def _decode_base64(text: str) -> bytes | None:
    """Decode standard or urlsafe base64, padded or not; None if it is not base64."""
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def generate_key() -> str:
    """Return a new random 32-byte key as urlsafe base64 (safe in env vars and shells)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_SIZE)).decode("ascii")
