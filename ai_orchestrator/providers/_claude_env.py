"""The environment a Claude Code CLI runs with: an allow-list, never the worker's own.

The agent runs tools (a shell, scripts it writes) with whatever the CLI was
given, so inheriting the worker's environment handed it every secret the
worker holds: other vendors' keys, cloud credentials, the database URL, our
encryption keys, Temporal's API key. Only what the CLI needs to run and to
reach Anthropic is passed; an operator adds more by name
(``AI_ORCHESTRATOR_CLAUDE_ENV``). ``HOME`` and ``CLAUDE_CONFIG_DIR`` are never
taken from the worker: each attempt gets its own (see :mod:`._claude_workspace`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Set for every session: no telemetry, error reports, update checks or other
#: non-essential traffic, and no retries inside the CLI (Temporal retries).
QUIET_ENV: Mapping[str, str] = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
}

#: What any program needs to run: where programs are, locale, terminal, clock, user.
_RUNTIME = ("PATH", "LANG", "LANGUAGE", "TERM", "TMPDIR", "TZ", "SHELL", "USER", "LOGNAME")
#: Reaching the network through a proxy, trusting a corporate CA.
_NETWORK = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
#: Claude Code's own knobs that are not a secret of anyone else's.
_CLAUDE = ("CLAUDE_CODE_OAUTH_TOKEN", "MAX_THINKING_TOKENS")
ALLOWED_NAMES: frozenset[str] = frozenset((*_RUNTIME, *_NETWORK, *_CLAUDE))
#: Whole families: locale categories, Anthropic's API settings (key, token, base
#: URL, models, headers), Claude Code's ``CLAUDE_CODE_*`` options.
ALLOWED_PREFIXES = ("LC_", "ANTHROPIC_", "CLAUDE_CODE_")
#: Set per attempt by the provider; an operator's value would undo the isolation.
RESERVED_NAMES = frozenset({"HOME", "CLAUDE_CONFIG_DIR"})


def allowed(name: str, extra: Iterable[str] = ()) -> bool:
    """Whether ``name`` may reach the CLI (``extra``: names the operator added)."""
    if name in RESERVED_NAMES:
        return False
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES) or name in set(extra)


def cli_environment(source: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The allow-listed part of ``source``, with :data:`QUIET_ENV` on top."""
    names = set(extra)
    env = {name: value for name, value in source.items() if allowed(name, names)}
    env.update(QUIET_ENV)
    return env
