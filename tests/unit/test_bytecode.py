"""The suite's bytecode is what pytest and Python then load (``tests/support/bytecode``):
if a pytest release changed the private functions it uses, this fails instead of
the suite silently compiling in every process again."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from _pytest.assertion import rewrite

from ..support.bytecode import write


def test_pytest_loads_the_rewritten_bytecode_written_beforehand(tmp_path: Path) -> None:
    source = tmp_path / "test_example.py"
    source.write_text("def test_sum():\n    assert 1 + 1 == 2\n")
    write(source, rewritten=True)
    pyc = rewrite.get_cache_dir(source) / f"test_example{rewrite.PYC_TAIL}"
    code = rewrite._read_pyc(source, pyc)
    assert code is not None  # pytest accepts it as up to date
    namespace: dict[str, object] = {}
    exec(code, namespace)
    assert "@py_assert" in str(namespace["test_sum"].__code__.co_varnames)  # type: ignore[attr-defined]


def test_plain_modules_get_their_usual_bytecode(tmp_path: Path) -> None:
    source = tmp_path / "helpers.py"
    source.write_text("VALUE = 1\n")
    write(source, rewritten=False)
    assert Path(importlib.util.cache_from_source(str(source))).is_file()


def test_the_rewrite_made_beforehand_is_the_one_the_suite_would_make(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """It is made without the suite's configuration: a pytest release in which the
    configuration changes the rewritten code must fail here, not pass silently."""
    source = tmp_path / "test_compare.py"
    source.write_text("def test_it():\n    x = [1, 2]\n    assert x == [1, 2], x\n")
    _, alone = rewrite._rewrite_test(source, None)  # type: ignore[arg-type]
    _, configured = rewrite._rewrite_test(source, pytestconfig)
    assert alone == configured


def test_an_up_to_date_rewrite_is_kept(tmp_path: Path) -> None:
    source = tmp_path / "test_kept.py"
    source.write_text("def test_it():\n    assert True\n")
    write(source, rewritten=True)
    pyc = rewrite.get_cache_dir(source) / f"test_kept{rewrite.PYC_TAIL}"
    made = pyc.stat().st_mtime_ns
    write(source, rewritten=True)
    assert pyc.stat().st_mtime_ns == made
