"""Bytecode for the suite's own code, made once before the test processes start.

Each of the four test processes imports every test module (that is how pytest
collects) and the package, and an interpreter compiles whatever has no
up-to-date ``.pyc``. So on a fresh clone four processes compile the same
20,000 lines of tests (rewritten by pytest for its assertion messages) and the
package at the same moment; and with ``PYTHONDONTWRITEBYTECODE`` set (it is,
on our CI machine) nothing is ever kept, so every test process, fork server
and CLI compiles them again. Measured on 2 cores: collecting the suite in one
process took 18.6 s of CPU cold and 9.3 s with this bytecode in place, which
two processes make in about 2.5 s.

Only ``ai_orchestrator`` and ``tests`` are written (their git-ignored
``__pycache__``); the virtualenv stays as pip left it. The rewriting uses
pytest's own functions, which are private: if a pytest release changes them,
this makes nothing and each process compiles as before. A stale file costs
time, never correctness: Python and pytest check each against its source. The
rewriting is done without pytest's configuration, which today changes it only
through ``enable_assertion_pass_hook`` (then nothing is written here);
``tests/unit/test_bytecode.py`` checks that the suite's configuration gives the
same code.
"""

from __future__ import annotations

import compileall
import contextlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Processes that share the work (the machine has two cores).
PARTS = 2


def _rewritten(path: Path) -> bool:
    """What pytest rewrites in this suite: test modules, conftests and the plugin."""
    return (
        path.name.startswith("test_")
        or path.name == "conftest.py"
        or path == ROOT / "tests" / "support" / "redis_server.py"
    )


def prepare(part: int, parts: int) -> None:
    """Write this share of the bytecode (every ``parts``-th file from ``part``); a file
    that cannot be compiled (one being edited) is left to the test processes."""
    sources = sorted((ROOT / "tests").rglob("*.py")) + sorted(
        (ROOT / "ai_orchestrator").rglob("*.py")
    )
    for path in sources[part::parts]:
        with contextlib.suppress(Exception):
            write(path, rewritten=_rewritten(path))


def write(path: Path, *, rewritten: bool) -> None:
    """The bytecode the module is imported with: pytest's rewritten one for what pytest
    rewrites, else Python's own. Either is left alone when it is up to date."""
    if not rewritten:
        compileall.compile_file(path, quiet=2)  # skips an up-to-date .pyc
        return
    from _pytest.assertion import rewrite

    cache = rewrite.get_cache_dir(path)
    pyc = cache / f"{path.stem}{rewrite.PYC_TAIL}"
    if rewrite._read_pyc(path, pyc) is not None:  # pytest would load it as it is
        return
    source_hash, code = rewrite._rewrite_test(path, None)  # type: ignore[arg-type]
    cache.mkdir(exist_ok=True)
    rewrite._write_pyc(_Quiet(), code, source_hash, pyc)  # type: ignore[arg-type]


class _Quiet:
    """What ``_write_pyc`` asks of pytest's assertion state."""

    def trace(self, *_: object) -> None:
        pass


def prepare_all(timeout: float = 60) -> None:
    """Make the bytecode in ``PARTS`` processes; best effort (a failure costs only time)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.bytecode", str(part), str(PARTS)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for part in range(PARTS)
    ]
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    prepare(int(sys.argv[1]), int(sys.argv[2]))
