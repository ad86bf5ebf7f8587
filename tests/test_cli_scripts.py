"""Every command line of the project: studies, benchmarks and `make run`.

Each script exposes its parser (`build_parser()`, or `STUDY.parser()`
for the studies), so the options are walked in-process: `--help` exits 0 and
documents every option, and every option that takes a checked value turns a bad
value into exit code 2 with one line on stderr naming the option. A few real
processes check the same through `python -m`, where a traceback would show.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

import experiments
from experiments.core import study as study_lib

ROOT = Path(__file__).resolve().parent.parent

# Options whose value is free text (a path, a folder): nothing to reject.
FREE_TEXT_TYPES = (None, str, Path)
# Actions without a value to check.
FLAG_ACTIONS = (
    argparse._HelpAction, argparse._VersionAction, argparse._StoreTrueAction,
    argparse._StoreFalseAction, argparse._StoreConstAction, argparse._CountAction,
)
# What every checked option must refuse: not a number / not a name, and a negative.
BAD_VALUES = ("abc", "-1")
BAD_CHOICE = "no-such-choice"
# Scripts whose only options are paths (their bad input is a missing or foreign file).
PATHS_ONLY = ("benchmarks.report",)


class Script(NamedTuple):
    """One command line: its module, its parser, its main(argv) and required arguments."""

    module: str
    build_parser: Callable[[], argparse.ArgumentParser]
    main: Callable
    base_argv: tuple[str, ...] = ()


def _study_modules() -> list[str]:
    """Every module of experiments/ that defines a study and a main: found, not listed."""
    names = []
    for info in pkgutil.iter_modules(experiments.__path__):
        module = importlib.import_module(f"experiments.{info.name}")
        if isinstance(getattr(module, "STUDY", None), study_lib.Study) and callable(
            getattr(module, "main", None)
        ):
            names.append(info.name)
    return sorted(names)


STUDY_MODULES = _study_modules()


def _script(module: str) -> Script:
    mod = importlib.import_module(module)
    if module.startswith("experiments."):
        return Script(module, lambda: mod.STUDY.parser(), mod.main)
    base = ("results.json",) if module == "benchmarks.report" else ()
    return Script(module, mod.build_parser, mod.main, base)


SCRIPTS = (
    [f"experiments.{name}" for name in STUDY_MODULES]
    + ["benchmarks.refnet", "benchmarks.ops", "benchmarks.matmul_peak", "benchmarks.report",
       "fcnn.main"]
)


class ParsedWithoutError(Exception):
    """Raised in place of the work that follows a successful parse."""


def _stop(*args, **kwargs):
    raise ParsedWithoutError


@pytest.fixture(autouse=True)
def _no_work_after_parsing(monkeypatch):
    """If a bad value were accepted, main would go on to train or time something:
    the first step after parsing raises instead, so the test fails fast."""
    import benchmarks.matmul_peak
    import benchmarks.ops
    import benchmarks.refnet
    import fcnn.data

    monkeypatch.setattr(study_lib.config_lib, "resolve", _stop)
    monkeypatch.setattr(benchmarks.refnet, "find_tcmalloc", _stop)
    monkeypatch.setattr(benchmarks.ops, "measure", _stop)
    monkeypatch.setattr(benchmarks.matmul_peak, "measure", _stop)
    monkeypatch.setattr(fcnn.data, "load_dataset", _stop)


def _run_main(script: Script, argv, capsys) -> tuple[object, str, str]:
    """Calls main(argv) in-process; returns (exit code, stdout, stderr).

    The code is "parsed" when the arguments were accepted (no work is done then).
    """
    try:
        code = script.main(list(argv))
    except SystemExit as exit_info:
        code = exit_info.code
    except ParsedWithoutError:
        code = "parsed"
    out, err = capsys.readouterr()
    return code, out, err


def _option_actions(parser):
    return [a for a in parser._actions if a.option_strings]


def _assert_one_line_error(code, err, *, names):
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert "error:" in lines[0]
    assert any(name in lines[0] for name in names), f"{names} not named in {lines[0]!r}"


def test_every_study_module_is_listed_and_found():
    """A study module with a main is in experiments.STUDIES, and the other way round."""
    assert STUDY_MODULES, "no study found in experiments/"
    assert set(STUDY_MODULES) == set(experiments.STUDIES)


@pytest.mark.parametrize("module", SCRIPTS)
def test_help_exits_0_and_documents_every_option(module, capsys):
    script = _script(module)
    parser = script.build_parser()
    undocumented = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not (isinstance(a.help, str) and a.help.strip()) or a.help == argparse.SUPPRESS
    ]
    assert not undocumented, f"{module}: options without help text: {undocumented}"
    code, out, err = _run_main(script, ["--help"], capsys)
    assert code == 0 and not err
    for action in _option_actions(parser):
        assert action.option_strings[0] in out


@pytest.mark.parametrize("module", SCRIPTS)
def test_every_checked_option_refuses_bad_values_with_exit_2(module, capsys):
    """Each option taking a value is free text (a path), a choice, or checked: the
    checked ones refuse "abc" and "-1", the choices an unknown name, each with exit
    code 2 and one line naming the option."""
    script = _script(module)
    parser = script.build_parser()
    tried = 0
    for action in _option_actions(parser):
        if isinstance(action, FLAG_ACTIONS):
            continue
        if action.choices is not None:
            bad_values = (BAD_CHOICE,)
        elif action.type in FREE_TEXT_TYPES:
            continue
        else:
            bad_values = BAD_VALUES
        for bad in bad_values:
            argv = [*script.base_argv, action.option_strings[0], bad]
            code, _, err = _run_main(script, argv, capsys)
            _assert_one_line_error(code, err, names=action.option_strings)
            assert repr(bad) in err or bad in err
            tried += 1
    assert tried or module in PATHS_ONLY, f"{module} has no option with a checked value"


@pytest.mark.parametrize("module", [m for m in SCRIPTS if m not in PATHS_ONLY])
def test_defaults_parse(module, capsys):
    """With no arguments every default passes its own check (and the bad-value test
    above is not passing because nothing ever parses)."""
    code, _, err = _run_main(_script(module), [], capsys)
    assert code == "parsed" and not err


@pytest.mark.parametrize("module", SCRIPTS)
def test_unknown_option_exits_2_with_one_line(module, capsys):
    script = _script(module)
    code, _, err = _run_main(script, [*script.base_argv, "--no-such-option", "1"], capsys)
    _assert_one_line_error(code, err, names=("--no-such-option",))


def test_numbers_are_checked_by_value_not_only_by_type(capsys):
    """`type=int` would accept 0 and -1: the checked types name the value and the rule."""
    refnet = _script("benchmarks.refnet")
    for argv, expected in (
        (["--steps", "0"], "'0': expected a positive integer"),
        (["--warmup", "-2"], "'-2': expected an integer >= 0"),
        (["--timeout", "inf"], "'inf': expected a positive finite number"),
        (["--batch", "128", "0"], "batch sizes: '0': expected a positive integer"),
        (["--batch", "128,x"], "batch sizes: 'x' is not an integer"),
        (["--frameworks", "fcnn,mxnet"], "unknown frameworks 'mxnet'"),
        (["--threads", "4096"], "--threads: 4096: expected 1.."),
    ):
        code, _, err = _run_main(refnet, argv, capsys)
        _assert_one_line_error(code, err, names=(argv[0],))
        assert expected in err, err


def test_refnet_arguments_parse_to_what_the_measurement_uses():
    from benchmarks import refnet

    args = refnet.parse_args(["--batch", "128", "32,64", "--frameworks", "fcnn,torch"])
    assert args.batch == [128, 32, 64]
    assert args.frameworks == ["fcnn", "torch"]
    assert args.steps == 50 and args.warmup == 10 and args.rounds == 3
    assert 1 <= args.threads == len(args.cpus)
    default = refnet.parse_args([])
    assert default.batch == [128]
    assert default.frameworks == ["fcnn", "stax", "linen", "equinox", "haiku", "torch"]


def test_parsing_the_benchmark_options_imports_no_peer_framework():
    """Only the measurement imports flax, haiku, equinox or torch (absent from the test
    environment): building every parser and parsing its defaults must not."""
    code = (
        "import sys\n"
        "from benchmarks import refnet, ops, matmul_peak, report\n"
        "refnet.parse_args([]); ops.build_parser().parse_args([])\n"
        "matmul_peak.build_parser().parse_args([]); report.build_parser().parse_args(['x.json'])\n"
        "peers = ('flax', 'haiku', 'equinox', 'torch')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in peers))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=_child_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("content, expected", [
    (None, "cannot read"),
    ("not json {", "is not a JSON file"),
    ("[1, 2]", "is not the output of benchmarks.refnet"),
])
def test_report_refuses_a_missing_or_foreign_file(content, expected, tmp_path, capsys):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    code, _, err = _run_main(_script("benchmarks.report"), [str(path)], capsys)
    _assert_one_line_error(code, err, names=("JSON",))
    assert expected in err and str(path) in err


def test_report_renders_a_refnet_result(tmp_path, capsys):
    run = {"allocator": "default", "batch": 8, "matmul_peak_gflops": 10.0, "results": {
        "fcnn": {"step_ms_median": 2.0, "ratio_to_fcnn": 1.0, "images_per_s": 4000.0,
                 "gflops": 1.0, "share_of_matmul_peak": 0.1, "cpu_ms_median": 2.5,
                 "compile_s": 0.5, "peak_rss_mb": 300.0, "loss_first": 2.3},
        "torch": {"skipped": "torch is not installed"}}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"runs": [run], "env": {"threads": 1}}))
    out_path = tmp_path / "report.md"
    code, out, err = _run_main(_script("benchmarks.report"), [str(path), "--out", str(out_path)],
                               capsys)
    assert code in (0, None) and not err
    text = out_path.read_text()
    assert "| fcnn | 2.0 | 1.00 |" in text and "torch is not installed" in text


# ---------------------------------------------------------------------------------
# Real processes: exit codes and stderr as a shell sees them (each costs an import).


def _child_env():
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


FIRST_STUDY = f"experiments.{STUDY_MODULES[0]}" if STUDY_MODULES else "experiments"
PROCESSES = [
    (FIRST_STUDY, ["--help"], 0, "usage:"),
    (FIRST_STUDY, ["--epochs", "-1"], 2, "argument --epochs: '-1': expected a positive integer"),
    ("experiments.compare_activations", ["--activations", "relu,swishy"], 2,
     "unknown activations 'swishy'"),
    ("experiments.dropout", ["--batch-size", "0"], 2, "argument --batch-size: '0'"),
    ("benchmarks.refnet", ["--help"], 0, "usage:"),
    ("benchmarks.refnet", ["--batch", "0"], 2, "argument --batch: batch sizes: '0'"),
    ("benchmarks.refnet", ["--steps", "abc"], 2, "argument --steps: 'abc' is not an integer"),
    ("benchmarks.refnet", ["--frameworks", "mxnet"], 2, "unknown frameworks 'mxnet'"),
    ("benchmarks.ops", ["--repeats", "abc"], 2, "argument --repeats: 'abc' is not an integer"),
    ("benchmarks.matmul_peak", ["--repeats", "0"], 2, "argument --repeats: '0'"),
    ("benchmarks.report", ["no/such/results.json"], 2, "cannot read 'no/such/results.json'"),
    ("fcnn.main", ["--dataset", "imagenet"], 2, "argument --dataset: invalid choice: 'imagenet'"),
]


@pytest.mark.parametrize("module, argv, code, expected", PROCESSES,
                         ids=[f"{m}{' '.join([''] + a)}" for m, a, _, _ in PROCESSES])
def test_python_m_exit_code_and_message(module, argv, code, expected):
    proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, env=_child_env())
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    if code == 0:
        assert expected in proc.stdout and not proc.stderr
    else:
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"python -m {module}: error: ") and expected in lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["--batch", "0"], "argument --batch: '0': expected an integer >= 1"),
    (["--steps", "many"], "argument --steps: 'many' is not an integer"),
    (["--warmup", "-1"], "argument --warmup: '-1': expected an integer >= 0"),
    (["--threads", "2"], "unrecognized arguments: --threads 2"),
])
def test_peer_timing_processes_answer_bad_arguments_in_one_line(argv, expected, capsys):
    """The per-framework processes that benchmarks.refnet starts (benchmarks/peers)."""
    from benchmarks.peers import _common

    parser = _common.build_parser()
    assert all(action.help for action in _option_actions(parser))
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err
