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
import functools
from dataclasses import dataclass

from fcnn import program
from fcnn.models import mlp
from fcnn.train import optimizers

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import Variant

DEPTH = 2


def rate_list(text: str):
    """An argparse type: comma-separated dropout rates in [0, 1)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        rates = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers in [0, 1)") from None
    if not rates or any(not 0 <= r < 1 for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: every dropout rate must be in [0, 1)")
    return rates


@dataclass(frozen=True)
class Config(study.Config):
    epochs: int = option(30, per_dataset={"digits": 60})
    batch_size: int = option(32, per_dataset={})
    rates: tuple[float, ...] = option((0.0, 0.2, 0.5), quick=(0.0, 0.5), parse=rate_list,
                                      metavar="R,S,...",
                                      help="dropout rates (probability of dropping a unit)")
    train_size: int = option(1000, per_dataset={"digits": 300, "cifar10": 2000},
                             help="training examples used, to force overfitting")
    max_norm: float = option(3.0, help="the max-norm bound of the constrained variants")
    width: int = option(256, quick=32, help="units per hidden layer")


def name_of(rate: float, max_norm: bool) -> str:
    return f"rate={rate:g}" + (" +max-norm" if max_norm else "")


def _narrower_gap(f: claims.Findings) -> claims.Judgement:
    baseline = f.facts["baseline"]
    dropped = [n for n in f.facts["dropped"] if n in f.table]
    if not dropped:
        return claims.Judgement(claims.INCONCLUSIVE, f"no rate above the baseline {baseline} measured")
    gap = lambda n: claims.get(f.table, n, "gap")  # noqa: E731
    return claims.majority([claims.smaller(n, gap(n), baseline, gap(baseline)) for n in dropped],
                           dropped)


CLAIMS = (claims.Claim("dropout narrows the gap between training and test accuracy (each rate "
                       "against the smallest rate trained, 0 by default)", _narrower_gap),)


def run(session: study.Session) -> study.Outcome:
    c = session.config
    norms = (False,) if c.quick else (False, True)
    rates = tuple(sorted(c.rates))  # the smallest is the baseline the others are held against
    num_classes = session.data.get().num_classes
    variants = [Variant(name=name_of(rate, constrained),
                        model=mlp(num_classes, "relu", depth=DEPTH, width=c.width, dropout=rate),
                        optimizer=functools.partial(optimizers.momentum, max_norm=c.max_norm)
                        if constrained else optimizers.momentum,
                        train_size=c.train_size, eval_train=True,
                        info={"rate": rate, "max_norm": constrained})
                for constrained in norms for rate in rates]
    results = session.train(variants)
    n_train = min(c.train_size, session.data.get().train.labels.shape[0])
    return study.Outcome(
        columns=[report.Column("train_accuracy", "train acc", ".4f"), report.TEST_ACCURACY,
                 report.Column("gap", "gap (train - test)", ".4f"),
                 report.Column("test_loss", "test loss", ".3f")],
        facts={"baseline": name_of(rates[0], False),
               "dropped": [name_of(r, n) for n in norms for r in rates if r > rates[0] or n]},
        notes=[f"MLP: {DEPTH} hidden layers of {c.width} units, dropout after each; {n_train} "
               f"training examples; SGD momentum 0.9; max-norm bound {c.max_norm:g}."],
        plots=[plots.epoch_metric(session.path("test_accuracy.png"), results, "test_accuracy",
                                  ylabel="test accuracy", study="dropout", dataset=c.dataset),
               plots.epoch_metric(session.path("train_accuracy.png"), results, "train_accuracy",
                                  ylabel="training accuracy (evaluation mode)", study="dropout",
                                  dataset=c.dataset)])


STUDY = study.Study(
    name="dropout",
    description="Train/test accuracy gap on a small training subset with dropout 0, 0.2, 0.5 and "
                "max-norm on/off.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
