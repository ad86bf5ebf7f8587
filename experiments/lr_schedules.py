"""Study 8: the seven learning-rate decays of the notes on the same model.

    python -m experiments.lr_schedules [--schedules cosine,exponential,...]

The reference CNN trained with SGD + momentum, the learning rate following one of
piecewise constant, exponential, natural-exponential, polynomial, cosine, linear
cosine and noisy linear cosine decay from the same initial rate over the whole run
(`fcnn.schedules`), and a constant rate for comparison. Plots show the rate and the
training loss per step; the table the final accuracy and loss of each.
"""

from __future__ import annotations

import sys

from experiments import cli, plots, runner, verdicts
from fcnn import schedules
from fcnn.models import refnet

WIDTHS, HIDDEN = (16, 32), 128


def make(name: str, lr: float):
    """The schedule factory total_steps -> schedule for one decay, all from `lr`."""
    def build(total: int):
        if name == "constant":
            return schedules.constant(lr)
        if name == "piecewise_constant":
            return schedules.piecewise_constant([max(total // 2, 1), max(3 * total // 4, 2)],
                                                [lr, lr / 10, lr / 100])
        if name == "exponential":
            return schedules.exponential_decay(lr, total, 0.01)
        if name == "natural_exp":
            return schedules.natural_exp_decay(lr, total, 4.6)  # e^-4.6 ~ 0.01, as above
        if name == "polynomial":
            return schedules.polynomial_decay(lr, total, end_learning_rate=lr / 100, power=1.0)
        if name == "cosine":
            return schedules.cosine_decay(lr, total)
        if name == "linear_cosine":
            return schedules.linear_cosine_decay(lr, total)
        return schedules.noisy_linear_cosine_decay(lr, total)
    return build


SCHEDULES = ("constant", "piecewise_constant", "exponential", "natural_exp", "polynomial", "cosine",
             "linear_cosine", "noisy_linear_cosine")
QUICK_SCHEDULES = ("constant", "cosine")
DECAYS = SCHEDULES[1:]

CLAIMS = ("decaying the learning rate ends at a lower training loss than a constant rate",)


def add_arguments(group):
    group.add_argument("--schedules", type=cli.name_list(SCHEDULES, "schedules"), default=None,
                       metavar="A,B,...", help=f"schedules compared (default: all of {', '.join(SCHEDULES)})")


def run(run: runner.Run) -> None:
    s = run.settings
    names = s.options.get("schedules") or (QUICK_SCHEDULES if s.quick else SCHEDULES)
    num_classes = run.data.get().num_classes
    run.notes.append(f"refnet widths {WIDTHS}, hidden {HIDDEN}, SGD momentum 0.9; every decay starts at lr "
                     f"{s.lr:g} and spans the whole run (piecewise: /10 at 1/2, /100 at 3/4; exponential, "
                     "natural exp and polynomial end at lr/100).")
    variants = [runner.Variant(name=n, model=refnet(num_classes, "relu", widths=WIDTHS, hidden=HIDDEN),
                               schedule=make(n, s.lr), info={"schedule": n}) for n in names]
    run.plan(variants)
    results = run.train(variants)
    run.columns = [
        runner.TEST_ACCURACY,
        runner.FINAL_TRAIN_LOSS,
        runner.Column("final_train_error", "final train error", ".3g"),
        runner.Column("test_loss", "test loss", ".3g"),
    ]
    run.verdicts = verdicts.schedule_claims(run.table, "constant", [d for d in DECAYS if d in names])
    series = [{"label": n, "x": range(1, r.total_steps + 1), "runs": r.step["learning_rate"], "index": i}
              for i, (n, r) in enumerate(results.items())]
    run.add_plot(plots.curves(run.path("learning_rate.png"), series, xlabel="training step",
                              ylabel="learning rate", title="Learning rate per step", logy=True),
                 "learning rate vs step")
    loss = [{"label": n, "x": range(1, r.total_steps + 1),
             "runs": runner.trailing_mean(r.step["loss"], min(runner.SMOOTHING, r.steps_per_epoch)), "index": i}
            for i, (n, r) in enumerate(results.items())]
    run.add_plot(plots.curves(run.path("train_loss.png"), loss, xlabel="training step",
                              ylabel=f"training loss (mean of last {runner.SMOOTHING} batches)",
                              title=f"Training loss per step ({s.dataset})", logy=True),
                 "training loss vs step")
    runner.plot_epoch_metric(run, results, "test_accuracy", name="test_accuracy.png", ylabel="test accuracy")


STUDY = cli.Study(
    name="lr_schedules",
    description="The seven learning-rate decays (and a constant rate) on the reference CNN.",
    claims=CLAIMS, run=run, lr=0.05, add_arguments=add_arguments,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
