"""Study 8: the seven learning-rate decays of the notes on the same model.

    python -m experiments.lr_schedules [--schedules cosine,exponential,...]

The reference CNN trained with SGD + momentum, the learning rate following one of
piecewise constant, exponential, natural-exponential, polynomial, cosine, linear
cosine and noisy linear cosine decay from the same initial rate over the whole run
(`fcnn.schedules`), and a constant rate for comparison. Plots show the rate and the
training loss per step; the table the final accuracy and loss of each.
"""

from __future__ import annotations

from dataclasses import dataclass

from fcnn import schedules
from fcnn import program
from fcnn.models import refnet

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import SMOOTHING, Variant, trailing_mean

WIDTHS, HIDDEN = (16, 32), 128


def make(name: str, lr: float):
    """The schedule factory total_steps -> schedule for one decay, all from `lr`."""
    def build(total: int):
        return {
            "constant": lambda: schedules.constant(lr),
            "piecewise_constant": lambda: schedules.piecewise_constant(
                [max(total // 2, 1), max(3 * total // 4, 2)], [lr, lr / 10, lr / 100]),
            "exponential": lambda: schedules.exponential_decay(lr, total, 0.01),
            "natural_exp": lambda: schedules.natural_exp_decay(lr, total, 4.6),  # e^-4.6 ~ 0.01
            "polynomial": lambda: schedules.polynomial_decay(lr, total, end_learning_rate=lr / 100,
                                                             power=1.0),
            "cosine": lambda: schedules.cosine_decay(lr, total),
            "linear_cosine": lambda: schedules.linear_cosine_decay(lr, total),
            "noisy_linear_cosine": lambda: schedules.noisy_linear_cosine_decay(lr, total),
        }[name]()
    return build


SCHEDULES = ("constant", "piecewise_constant", "exponential", "natural_exp", "polynomial", "cosine",
             "linear_cosine", "noisy_linear_cosine")


@dataclass(frozen=True)
class Config(study.Config):
    lr: float = 0.05
    schedules: tuple[str, ...] = option(SCHEDULES, quick=("constant", "cosine"), choices=SCHEDULES,
                                        help="schedules compared")


def _decay_helps(f: claims.Findings) -> claims.Judgement:
    base = claims.mean(claims.get(f.table, "constant", "final_train_loss"))
    known = {d: v for d in f.table if d != "constant"
             for v in [claims.mean(claims.get(f.table, d, "final_train_loss"))] if v is not None}
    if base is None or not known:
        return claims.Judgement(claims.INCONCLUSIVE, "not measured")
    better = [d for d, v in known.items() if v < base]
    text = (f"constant {claims.fmt(base)}; " + ", ".join(f"{d} {claims.fmt(v)}" for d, v in known.items())
            + f" ({len(better)} of {len(known)} lower)")
    return claims.Judgement(claims.SUPPORTED if 2 * len(better) > len(known) else claims.CONTRADICTED,
                            text, {"constant": base, "decays": known})


CLAIMS = (claims.Claim("decaying the learning rate ends at a lower training loss than a constant rate "
                       "(for most of the decays)", _decay_helps),)


def run(session: study.Session) -> study.Outcome:
    c = session.config
    num_classes = session.data.get().num_classes
    results = session.train([Variant(name=n, model=refnet(num_classes, "relu", widths=WIDTHS, hidden=HIDDEN),
                                     schedule=make(n, c.lr), info={"schedule": n}) for n in c.schedules])
    steps = lambda r: range(1, r.total_steps + 1)  # noqa: E731
    rate = [{"label": n, "x": steps(r), "runs": r.step["learning_rate"], "index": i}
            for i, (n, r) in enumerate(results.items())]
    loss = [{"label": n, "x": steps(r), "runs": trailing_mean(r.step["loss"], min(SMOOTHING, r.steps_per_epoch)),
             "index": i} for i, (n, r) in enumerate(results.items())]
    return study.Outcome(
        columns=[report.TEST_ACCURACY, report.FINAL_TRAIN_LOSS,
                 report.Column("final_train_error", "final train error", ".3g"),
                 report.Column("test_loss", "test loss", ".3g")],
        notes=[f"refnet widths {WIDTHS}, hidden {HIDDEN}, SGD momentum 0.9; every decay starts at lr "
               f"{c.lr:g} and spans the whole run (piecewise: /10 at 1/2, /100 at 3/4; exponential, "
               "natural exp and polynomial end at lr/100)."],
        plots=[(plots.curves(session.path("learning_rate.png"), rate, xlabel="training step",
                             ylabel="learning rate", title="Learning rate per step", logy=True),
                "learning rate vs step"),
               (plots.curves(session.path("train_loss.png"), loss, xlabel="training step",
                             ylabel=f"training loss (mean of last {SMOOTHING} batches)",
                             title=f"Training loss per step ({c.dataset})", logy=True),
                "training loss vs step"),
               plots.epoch_metric(session.path("test_accuracy.png"), results, "test_accuracy",
                                  ylabel="test accuracy", study="lr_schedules", dataset=c.dataset)])


STUDY = study.Study(
    name="lr_schedules",
    description="The seven learning-rate decays (and a constant rate) on the reference CNN.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
