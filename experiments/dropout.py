"""Study 4: dropout and the max-norm constraint against overfitting.

    python -m experiments.dropout [--train-size 300] [--rates 0,0.2,0.5]

An MLP is trained long on a small training subset, so that it overfits, with
dropout rates 0, 0.2 and 0.5 on its hidden units, each with and without the
max-norm constraint (every unit's incoming weight vector kept at norm <= 3 after
each update; Srivastava et al., 2014). The gap between training and test accuracy
(both measured in evaluation mode) shows the overfitting; the claim is that
dropout narrows it.
"""

from __future__ import annotations

import argparse
import sys

from experiments import cli, runner, verdicts
from experiments.models import mlp

RATES = (0.0, 0.2, 0.5)
MAX_NORM = 3.0
TRAIN_SIZE = {"digits": 300, "mnist": 1000, "fashion-mnist": 1000, "cifar10": 2000}
WIDTH, DEPTH = 256, 2

CLAIMS = ("dropout narrows the gap between training and test accuracy",)


def rate_list(text: str):
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        rates = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers in [0, 1)") from None
    if not rates or any(not 0 <= r < 1 for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: every dropout rate must be in [0, 1)")
    return rates


def add_arguments(group):
    group.add_argument("--rates", type=rate_list, default=None, metavar="R,S,...",
                       help="dropout rates (probability of dropping a unit; default: 0,0.2,0.5)")
    group.add_argument("--train-size", type=cli.positive_int, default=None, metavar="N",
                       help="training examples used, to force overfitting (default: 300 digits, "
                            "1000 MNIST)")
    group.add_argument("--max-norm", type=cli.positive_float, default=MAX_NORM, metavar="C",
                       help=f"the max-norm bound of the constrained variants (default: {MAX_NORM})")


def defaults(dataset: str, quick: bool) -> dict:
    if quick:
        return {}
    return {"epochs": 60 if dataset == "digits" else 30, "batch_size": 32}


def name_of(rate: float, max_norm: bool) -> str:
    return f"rate={rate:g}" + (" +max-norm" if max_norm else "")


def run(run: runner.Run) -> None:
    s = run.settings
    rates = s.options.get("rates") or ((0.0, 0.5) if s.quick else RATES)
    norms = (False,) if s.quick else (False, True)
    train_size = s.options.get("train_size") or TRAIN_SIZE[s.dataset]
    num_classes = run.data.get().num_classes
    width = 32 if s.quick else WIDTH
    run.notes.append(f"MLP: {DEPTH} hidden layers of {width} units, dropout after each; "
                     f"{train_size} training examples; SGD momentum 0.9; max-norm bound "
                     f"{s.options.get('max_norm', MAX_NORM)}.")
    variants = []
    for use_norm in norms:
        for rate in rates:
            kwargs = {"max_norm": s.options.get("max_norm", MAX_NORM)} if use_norm else {}
            variants.append(runner.Variant(
                name=name_of(rate, use_norm), model=mlp(num_classes, "relu", depth=DEPTH, width=width,
                                                        dropout=rate),
                optimizer_kwargs=kwargs, train_size=train_size, eval_train=True,
                info={"rate": rate, "max_norm": use_norm}))
    run.plan(variants)
    results = run.train(variants)
    run.columns = [
        runner.Column("train_accuracy", "train acc", ".4f"),
        runner.TEST_ACCURACY,
        runner.Column("gap", "gap (train - test)", ".4f"),
        runner.Column("test_loss", "test loss", ".3f"),
    ]
    baseline = name_of(0.0, False)
    dropped = [name_of(r, n) for n in norms for r in rates if r > 0]
    run.verdicts = verdicts.dropout_claims(run.table, baseline, dropped)
    runner.plot_epoch_metric(run, results, "test_accuracy", name="test_accuracy.png", ylabel="test accuracy")
    runner.plot_epoch_metric(run, results, "train_accuracy", name="train_accuracy.png",
                             ylabel="training accuracy (evaluation mode)")


STUDY = cli.Study(
    name="dropout",
    description="Train/test accuracy gap on a small training subset with dropout 0, 0.2, 0.5 and "
                "max-norm on/off.",
    claims=CLAIMS, run=run, lr=0.01, defaults=defaults, add_arguments=add_arguments,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
