"""Who may read a live stream: whoever holds the deployment's shared key.

A reader proves it per run with an HMAC of the run's ids, so the token a
worker checks is never stored anywhere (not in history, not in heartbeat
details) and a token for one run opens no other. The key is
``AI_ORCHESTRATOR_LIVE_SECRET`` or, when encryption is on, derived from the
payload encryption keys every client and worker already share. Without either,
an endpoint may only listen on loopback (see :mod:`._http`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence

from ..payloads.codec import EncryptionCodec

ENV_LIVE_SECRET = "AI_ORCHESTRATOR_LIVE_SECRET"
_LABEL = b"ai-orchestrator live channel v1"


class LiveAuth:
    """Args:
    keys: the first signs tokens; any of them is accepted (a key rotation in
        progress leaves clients and workers with different active keys).
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("LiveAuth needs at least one key")
        self._keys = tuple(keys)

    @classmethod
    def from_secret(cls, secret: str) -> LiveAuth:
        return cls([hmac.new(secret.encode(), _LABEL, hashlib.sha256).digest()])

    @classmethod
    def from_codec(cls, codec: EncryptionCodec) -> LiveAuth:
        return cls([hmac.new(key, _LABEL, hashlib.sha256).digest() for key in codec.raw_keys()])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiveAuth | None:
        env = os.environ if env is None else env
        secret = env.get(ENV_LIVE_SECRET)
        if secret:
            return cls.from_secret(secret)
        codec = EncryptionCodec.from_env(env)
        return cls.from_codec(codec) if codec is not None else None

    @staticmethod
    def _message(workflow_id: str, run_id: str) -> bytes:
        return f"{workflow_id}\n{run_id}".encode()

    def token(self, workflow_id: str, run_id: str) -> str:
        return hmac.new(self._keys[0], self._message(workflow_id, run_id), "sha256").hexdigest()

    def check(self, token: str, workflow_id: str, run_id: str) -> bool:
        message = self._message(workflow_id, run_id)
        return any(
            hmac.compare_digest(hmac.new(key, message, "sha256").hexdigest(), token)
            for key in self._keys
        )
