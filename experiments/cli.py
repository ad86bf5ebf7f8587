"""The command line shared by every study.

    python -m experiments.<study> [--dataset NAME] [--data-dir DIR] [--epochs N]
        [--seeds N] [--batch-size N] [--lr X] [--out DIR] [--quick]
        [--population {auto,vmap,sequential}]
        [study options]

Bad arguments end the program with exit code 2 and one line on stderr (no
traceback); `--help` describes every option. Defaults that depend on the dataset
(epochs, batch size, learning rate) are filled in after parsing, from the study.

Run from the command line on Linux, a study restarts itself once with tcmalloc
preloaded when it is installed (`fcnn.allocator`: XLA's training steps are 1.5-1.9x
faster with it); `FCNN_ALLOCATOR=system` keeps the system allocator.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fcnn import allocator
from fcnn.cli import (  # noqa: F401  (re-exported for the studies)
    Parser,
    UsageError,
    name_list,
    nonnegative_float,
    nonnegative_int,
    number_list,
    positive_float,
    positive_int,
)
from fcnn.data import DATA_DIR_ENV, DATASETS

POPULATION_MODES = ("auto", "vmap", "sequential")

COMMON_OPTIONS = ("dataset", "data_dir", "epochs", "seeds", "batch_size", "lr", "out", "quick",
                  "population")


def add_lrs_argument(group, default: Sequence[float]) -> None:
    """The `--lrs X,Y,...` option of the studies that sweep learning rates."""
    group.add_argument("--lrs", type=number_list(float, "learning rates"), default=None,
                       metavar="X,Y,...",
                       help=f"learning rates swept (default: {','.join(map(str, default))})")


def build_parser(prog: str, description: str, epilog: str = "") -> Parser:
    """The parser with the common options; a study adds its own to it."""
    parser = Parser(
        prog=prog, description=description, epilog=epilog, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = parser.add_argument_group("common options (every study)")
    common.add_argument(
        "--dataset", choices=DATASETS, default="digits",
        help="dataset to train on (default: digits, the 8x8 digits bundled with "
             "scikit-learn, no files needed)")
    common.add_argument(
        "--data-dir", default=None, metavar="DIR",
        help=f"folder with the dataset files (mnist, fashion-mnist, cifar10); default: "
             f"${DATA_DIR_ENV}")
    common.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                        help="training epochs per run (default: the study's, per dataset)")
    common.add_argument("--seeds", type=positive_int, default=None, metavar="N",
                        help="seeds per variant, 0..N-1 (default: 3; 1 with --quick)")
    common.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                        help="mini-batch size (default: the study's, per dataset)")
    common.add_argument("--lr", type=positive_float, default=None, metavar="X",
                        help="learning rate (default: the study's)")
    common.add_argument("--out", default="runs", metavar="DIR",
                        help="results root; each run writes DIR/<study>/<timestamp>/ and never "
                             "overwrites an existing folder (default: runs)")
    common.add_argument("--quick", action="store_true",
                        help="a tiny setting for tests: a small training subset, a few steps, "
                             "one seed; finishes in seconds")
    common.add_argument("--population", choices=POPULATION_MODES, default="auto",
                        help="how the seeds of a variant are trained: 'vmap' batches them in one "
                             "jax.vmap-ped step, 'sequential' trains them one after another with "
                             "one compiled step; 'auto' (default) uses vmap except for "
                             "convolutional models on the CPU, where the batched convolution is "
                             "slower than running the seeds in turn")
    return parser


def study_parser(study: "Study") -> Parser:
    """The full command line of one study: the common options and the study's own."""
    prog = f"python -m experiments.{study.name}"
    epilog = "claims tested:\n" + "\n".join(f"  - {c}" for c in study.claims)
    parser = build_parser(prog, study.description, epilog)
    if study.add_arguments is not None:
        study.add_arguments(parser.add_argument_group(f"{study.name} options"))
    return parser


def fail(prog: str, message: str) -> int:
    """Prints the one-line error and returns exit code 2."""
    first = " ".join(str(message).split())
    sys.stderr.write(f"{prog}: error: {first}\n")
    return 2


# Per-dataset defaults shared by the studies (a study may override any of them).
DATASET_DEFAULTS = {
    "digits": {"epochs": 20, "batch_size": 32},
    "mnist": {"epochs": 3, "batch_size": 128},
    "fashion-mnist": {"epochs": 3, "batch_size": 128},
    "cifar10": {"epochs": 5, "batch_size": 128},
}
DEFAULT_SEEDS = 3


@dataclass(frozen=True)
class Study:
    """A study: its name, what it claims, its defaults, its options and its procedure.

    `run(run)` declares and trains the variants through the `Run` it gets, then adds
    its metrics, plots and verdicts to it. `defaults(dataset, quick)` returns any of
    "epochs", "batch_size", "lr", "seeds" that differ from the shared defaults.
    `check(run)` (the data loaded, no folder written yet) raises `UsageError` for study
    options that do not fit the data or each other.
    """

    name: str
    description: str
    claims: tuple[str, ...]
    run: Callable
    lr: float = 0.01
    defaults: Callable[[str, bool], dict] | None = None
    add_arguments: Callable | None = None
    check: Callable | None = None


def settings_from_args(study: Study, args) -> "Settings":
    from experiments.runner import QUICK, Settings

    base = {"seeds": DEFAULT_SEEDS, "lr": study.lr, **DATASET_DEFAULTS[args.dataset]}
    if args.quick:
        base.update(epochs=QUICK["epochs"], seeds=QUICK["seeds"], batch_size=QUICK["batch_size"])
    if study.defaults is not None:
        base.update(study.defaults(args.dataset, args.quick))
    options = {k: v for k, v in vars(args).items() if k not in COMMON_OPTIONS}
    return Settings(
        study=study.name, dataset=args.dataset, data_dir=args.data_dir,
        epochs=args.epochs or base["epochs"], seeds=args.seeds or base["seeds"],
        batch_size=args.batch_size or base["batch_size"], lr=args.lr or base["lr"],
        out=args.out, quick=args.quick, population=args.population, options=options,
    )


def main(study: Study, argv: Sequence[str] | None = None) -> int:
    """Parses the command line, runs the study, prints its claims; returns the exit code.

    0: done; 2: bad arguments or missing data (one line on stderr); 130: interrupted
    (the finished variants' results stay in the run folder).
    """
    from fcnn.data import DataFormatError
    from experiments.runner import Run

    parser = study_parser(study)
    prog = parser.prog
    args = parser.parse_args(argv)
    try:
        if argv is None:  # a real command line: restart once with tcmalloc if installed
            allocator.use_tcmalloc()
        settings = settings_from_args(study, args)
        run = Run(settings, study.description)
        run.load()
        run.check_batch_size(settings.batch_size)
        if study.check is not None:
            study.check(run)
        run.open()
    except (UsageError, DataFormatError, FileNotFoundError, ValueError) as err:
        return fail(prog, err)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted before training started\n")
        return 130
    try:
        study.run(run)
    except KeyboardInterrupt:
        run.interrupt()
        done = len(run.table)
        sys.stderr.write(f"\n{prog}: interrupted; {done} finished variant(s) are in {run.dir}\n")
        return 130
    run.finish()
    run.print_claims()
    return 0
