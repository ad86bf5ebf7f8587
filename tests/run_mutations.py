"""Mutation testing of the backward rules: `make test-mutations`.

Copies the repository to a scratch directory (the real files are never edited), checks
that the tests the mutations name pass there unmutated (the baseline), then applies
each mutation of tests/mutations.py alone, runs the tests that should catch it with
`pytest -x -q -p no:cacheprovider` and restores the file. Prints a table (mutation,
caught by, seconds) and exits non-zero unless every mutation is caught: a mutation
that survives, no longer matches the code (stale) or breaks test collection instead of
failing a test counts as not caught.

    python tests/run_mutations.py                  # all of them
    python tests/run_mutations.py --only NAME ...  # some
    python tests/run_mutations.py --list
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mutations import MUTATIONS, Mutation  # noqa: E402

IGNORED = shutil.ignore_patterns(
    ".git", ".venv", ".venv-*", "runs", "__pycache__", ".pytest_cache", ".hypothesis",
    "*.egg-info", "build", ".mypy_cache", ".ruff_cache",
)
PYTEST = ("-m", "pytest", "-x", "-q", "-p", "no:cacheprovider")
FAILED_LINE = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def scratch_copy() -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="fcnn-mutations-"))
    shutil.copytree(ROOT, scratch / "repo", ignore=IGNORED, symlinks=True)
    return scratch / "repo"


def environment(repo: Path) -> dict:
    env = dict(os.environ)
    # the scratch copy's fcnn, not the editable install's
    env["PYTHONPATH"] = os.pathsep.join([str(repo)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_imports_the_copy(repo: Path, env: dict) -> None:
    out = subprocess.run([sys.executable, "-c", "import fcnn; print(fcnn.__file__)"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    where = out.stdout.strip()
    if out.returncode != 0 or not Path(where).resolve().is_relative_to(repo.resolve()):
        raise SystemExit(f"the scratch copy does not import its own fcnn (got {where!r}): "
                         f"{out.stderr[-2000:]}")


def run_pytest(repo: Path, env: dict, tests, timeout: float, stop_first: bool = True):
    args = [sys.executable, *PYTEST, *tests]
    if not stop_first:
        args.remove("-x")
    start = time.perf_counter()
    try:
        out = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "", time.perf_counter() - start
    return out.returncode, out.stdout + out.stderr, time.perf_counter() - start


def apply(repo: Path, mutation: Mutation) -> str | None:
    """Applies the mutation; returns the original text, or None when it is stale."""
    path = repo / mutation.file
    original = path.read_text(encoding="utf-8")
    if original.count(mutation.old) != 1:
        return None
    path.write_text(original.replace(mutation.old, mutation.new), encoding="utf-8")
    return original


def run_one(repo: Path, env: dict, mutation: Mutation, timeout: float) -> tuple[str, str, float]:
    """(status, caught by, seconds); status is "caught" or what went wrong."""
    original = apply(repo, mutation)
    if original is None:
        return "STALE", f"{mutation.file} no longer holds the code exactly once", 0.0
    try:
        code, output, seconds = run_pytest(repo, env, mutation.tests, timeout)
    finally:
        (repo / mutation.file).write_text(original, encoding="utf-8")
    if code == 1:
        failed = FAILED_LINE.findall(output)
        return "caught", failed[0] if failed else "(a test failed)", seconds
    if code == 0:
        return "SURVIVED", "-", seconds
    if code is None:
        return "TIMEOUT", f"after {timeout:.0f} s", seconds
    return f"ERROR (pytest exit {code})", output.strip().splitlines()[-1:][0] if output.strip() else "", seconds


def table(rows) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) if i < len(row) - 1 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def short(node: str) -> str:
    return node.replace("tests/", "", 1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the unmutated run of the selected tests")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds allowed per pytest run (default 900)")
    args = parser.parse_args(argv)

    mutations = list(MUTATIONS)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in mutations})
        if unknown:
            parser.error(f"unknown mutations {unknown}; --list shows them")
        mutations = [m for m in mutations if m.name in args.only]
    if args.list:
        for m in mutations:
            print(f"{m.name:55s} {m.origin:15s} {m.file}")
        return 0

    total_start = time.perf_counter()
    repo = scratch_copy()
    env = environment(repo)
    print(f"{len(mutations)} mutations, scratch copy {repo}", flush=True)
    try:
        check_imports_the_copy(repo, env)
        if not args.no_baseline:
            selected = list(dict.fromkeys(t for m in mutations for t in m.tests))
            code, output, seconds = run_pytest(repo, env, selected, args.timeout * 4,
                                               stop_first=False)
            print(f"baseline: {len(selected)} selections unmutated, {seconds:.0f} s, "
                  f"pytest exit {code}", flush=True)
            if code != 0:
                print(output[-5000:])
                print("the tests fail without any mutation: fix them first")
                return 1
        rows = [("mutation", "origin", "status", "caught by", "seconds")]
        for m in mutations:
            status, caught_by, seconds = run_one(repo, env, m, args.timeout)
            rows.append((m.name, m.origin, status, short(caught_by), f"{seconds:.1f}"))
            print(f"  {m.name}: {status} by {short(caught_by)} in {seconds:.1f} s", flush=True)
    finally:
        if args.keep:
            print(f"scratch copy kept: {repo}")
        else:
            shutil.rmtree(repo.parent, ignore_errors=True)
    total = time.perf_counter() - total_start
    print()
    print(table(rows))
    missed = [r for r in rows[1:] if r[2] != "caught"]
    print(f"\n{len(rows) - 1 - len(missed)} of {len(rows) - 1} mutations caught; "
          f"total {total:.0f} s ({total / 60:.1f} min)")
    if missed:
        print("NOT CAUGHT: " + ", ".join(f"{r[0]} ({r[2]})" for r in missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
