"""The mutation command: mutmut over the modules that hold our promises (issue 16).

On demand only, never in CI (a full run takes 2-3 minutes of both cores; mutmut runs
under ``nice -n 10``)::

    .venv/bin/python bench/mutation.py                  # every module, from scratch
    .venv/bin/python bench/mutation.py output codec     # some modules (names in MODULES)
    .venv/bin/python bench/mutation.py --summary        # the figures of the last run again
    # re-run some mutants (e.g. after adding a test), keeping the other results:
    .venv/bin/python bench/mutation.py --keep 'ai_orchestrator.output.*apply__mutmut_7'
    .venv/bin/python bench/mutation.py --clean          # delete mutants/ when done

Needs ``pip install mutmut`` (written against mutmut 3.8). What is mutated and which tests
run is ``[tool.mutmut]`` in pyproject.toml: the modules in ``only_mutate``, the fast unit
tests in ``pytest_add_cli_args_test_selection`` (never the integration tests, which need a
Temporal server). mutmut never edits the working tree: it copies the package and the tests
into ``mutants/`` (git-ignored) and runs each mutant there, in a forked pytest process.
Mutants whose function no selected test calls are reported as "no tests".

Without ``--keep`` the run starts from a fresh ``mutants/`` (the tree changes under other
engineers' refactors, and mutmut only copies files it does not have yet). ``--time-limit``
bounds the wall time; what finished by then is kept and summarised. After the run the
script prints, per module, the mutants' total and how many were killed, survived, timed
out or had no test, then each surviving mutant as ``file:line`` (of the working tree's
file) with its diff (``--no-diffs``: names only; ``mutmut show <name>`` shows one).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "mutants"

#: Short names for the command line -> the module's file (must be in ``only_mutate``).
MODULES = {
    "output": "ai_orchestrator/output.py",
    "identity": "ai_orchestrator/client/_identity.py",
    "attempts": "ai_orchestrator/activities/_attempts.py",
    "options": "ai_orchestrator/workflows/_options.py",
    "codec": "ai_orchestrator/payloads/codec.py",
}

#: mutmut's exit codes -> the status it reports (mutmut.stats.status_by_exit_code).
_STATUS = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    37: "caught by type check",
    None: "not checked",
}
_COLUMNS = ("killed", "survived", "timeout", "no tests", "not checked", "other")


def _config() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["mutmut"]


def _check_config(config: dict) -> list[str]:
    """The configured modules and tests, or exit naming what moved."""
    missing = [
        p
        for p in config["only_mutate"] + config["pytest_add_cli_args_test_selection"]
        if not (ROOT / p).exists()
    ]
    if missing:
        sys.exit(
            "mutation: moved or deleted: " + ", ".join(missing) + "\n  update [tool.mutmut] in "
            "pyproject.toml (and MODULES in bench/mutation.py); find the modules with e.g. "
            "grep -rln 'class OutputBuffer' ai_orchestrator, their tests with "
            "grep -rln OutputBuffer tests/unit"
        )
    unknown = set(MODULES.values()) - set(config["only_mutate"])
    if unknown:
        sys.exit(f"mutation: not in [tool.mutmut] only_mutate: {sorted(unknown)}")
    return config["only_mutate"]


def _module_of(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _run_mutmut(names: list[str], max_children: int, time_limit: float) -> int:
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names]
    print("mutation:", " ".join(cmd), flush=True)
    # Its own process group, so that the time limit stops mutmut and every forked mutant.
    proc = subprocess.Popen(["nice", "-n", "10", *cmd], cwd=ROOT, start_new_session=True)
    try:
        return proc.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        print(f"\nmutation: time limit ({time_limit:.0f} s) reached, stopping mutmut", flush=True)
        os.killpg(proc.pid, signal.SIGINT)  # mutmut saves the results it has on Ctrl-C
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return 124


def _results(path: str) -> dict[str, int | None]:
    meta = MUTANTS / (path + ".meta")
    if not meta.exists():
        return {}
    return json.loads(meta.read_text())["exit_code_by_key"]


def _function_lines(path: str) -> dict[str, int]:
    """mutmut's mangled name of each function of a source file -> its ``def`` line."""
    from mutmut.mutation.trampoline_templates import CLASS_NAME_SEPARATOR as SEP

    lines: dict[str, int] = {}
    tree = ast.parse((ROOT / path).read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines[f"x_{node.name}"] = node.lineno
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines[f"x{SEP}{node.name}{SEP}{item.name}"] = item.lineno
    return lines


def _describe(name: str, path: str, def_lines: dict[str, int]) -> str:
    """``file:line  name`` and the mutation (- original / + mutant lines), via mutmut's diff."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(name, path=path).splitlines()[2:]
    function = name.rpartition(".")[2].partition("__mutmut_")[0]
    line = "?"
    for i, text in enumerate(diff):
        if text.startswith("@@"):
            first = int(text.split()[1].lstrip("-").split(",")[0])
            changed = next((j for j, t in enumerate(diff[i + 1 :]) if t[:1] in "-+"), 0)
            if function in def_lines:
                line = str(def_lines[function] + first - 1 + changed)
            break
    changes = [t for t in diff if t[:1] in "-+"]
    return f"{path}:{line}  {name}\n" + "\n".join(f"      {t}" for t in changes)


def _summary(paths: list[str], show_diffs: bool) -> None:
    print(f"\n{'module':45} {'total':>6} " + " ".join(f"{c:>11}" for c in _COLUMNS))
    surviving: list[tuple[str, str]] = []
    untested: Counter[str] = Counter()
    for path in paths:
        results = _results(path)
        counts = Counter(_STATUS.get(code, "other") for code in results.values())
        counts["other"] = len(results) - sum(counts[c] for c in _COLUMNS if c != "other")
        row = " ".join(f"{counts[c]:>11}" for c in _COLUMNS)
        print(f"{path:45} {len(results):>6} {row}")
        surviving += [(k, path) for k, code in results.items() if _STATUS.get(code) == "survived"]
        untested.update(
            k.partition("__mutmut_")[0] for k, code in results.items() if code in (5, 33)
        )
    if untested:
        print("\nfunctions no selected test calls (their mutants are 'no tests'):")
        for function, n in untested.items():
            print(f"   {function} ({n})")
    if not surviving:
        return
    print(f"\nsurviving mutants ({len(surviving)}):")
    if not show_diffs:
        for name, _ in surviving:
            print("  ", name)
        return
    os.chdir(ROOT)  # mutmut reads mutants/ relative to the working directory
    lines = {path: _function_lines(path) for path in {p for _, p in surviving}}
    for name, path in surviving:
        print("  ", _describe(name, path, lines[path]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "targets",
        nargs="*",
        help=f"modules ({', '.join(MODULES)}) or mutant names/globs; default: every module",
    )
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ and its results")
    parser.add_argument("--summary", action="store_true", help="only summarise the last run")
    parser.add_argument("--clean", action="store_true", help="delete mutants/ and exit")
    parser.add_argument("--no-diffs", action="store_true", help="list survivors without diffs")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run at once")
    parser.add_argument("--time-limit", type=float, default=1800.0, help="seconds (default 1800)")
    args = parser.parse_args()

    if args.clean:
        shutil.rmtree(MUTANTS, ignore_errors=True)
        return 0
    paths = _check_config(_config())
    if not args.summary and importlib.util.find_spec("mutmut") is None:
        sys.exit("mutation: mutmut is not installed here: pip install mutmut")
    names = [f"{_module_of(MODULES[t])}.*" if t in MODULES else t for t in args.targets]
    shown = [
        p
        for p in paths
        if not args.targets
        or any(MODULES.get(t) == p or t.startswith(_module_of(p) + ".") for t in args.targets)
    ]
    code = 0
    if not args.summary:
        if not args.keep:
            shutil.rmtree(MUTANTS, ignore_errors=True)
        code = _run_mutmut(names, args.max_children, args.time_limit)
    _summary(shown, show_diffs=not args.no_diffs)
    return code


if __name__ == "__main__":
    sys.exit(main())
