"""Study 12: raw pixels against standardized inputs.

    python -m experiments.input_normalization

The reference CNN trained on the raw pixel values (0..16 for the digits, 0..255 for
MNIST), on pixels scaled to [0, 1] and on standardized pixels (zero mean, unit
variance, statistics of the training split), with the same learning rate. The claim
(the notes' preprocessing advice): standardized inputs converge faster. Measured:
steps to a smoothed training error of 10%, final accuracy, divergence.
"""

from __future__ import annotations

import sys

from experiments import cli, runner, verdicts
from fcnn.models import refnet

NORMALIZATIONS = {"raw": None, "minmax [0,1]": "minmax", "standardized": "standardize"}
QUICK = ("raw", "standardized")
TARGET = 0.10
WIDTHS, HIDDEN = (16, 32), 128

CLAIMS = ("standardized inputs converge faster than raw pixels",)


def run(run: runner.Run) -> None:
    s = run.settings
    names = QUICK if s.quick else tuple(NORMALIZATIONS)
    num_classes = run.data.get().num_classes
    run.targets = (TARGET,)
    run.notes.append(f"refnet widths {WIDTHS}, hidden {HIDDEN}, SGD momentum 0.9, lr {s.lr:g} for every input "
                     "scaling; statistics from the training split.")
    variants = [runner.Variant(name=n, model=refnet(num_classes, "relu", widths=WIDTHS, hidden=HIDDEN),
                               normalize=NORMALIZATIONS[n], info={"normalize": NORMALIZATIONS[n]})
                for n in names]
    run.plan(variants)
    results = run.train(variants)
    key = runner.target_key(TARGET)
    run.columns = [
        runner.steps_to_column(TARGET),
        runner.TEST_ACCURACY,
        runner.FINAL_TRAIN_LOSS,
        runner.DIVERGED,
    ]
    budget = max(r.total_steps for r in results.values())
    run.verdicts = verdicts.input_normalization_claims(run.table, "raw", "standardized", metric=key,
                                                       budget=budget)
    runner.plot_training_error(run, results, targets=(TARGET,))


STUDY = cli.Study(
    name="input_normalization",
    description="Raw pixels vs [0, 1] scaling vs standardized inputs: convergence speed.",
    claims=CLAIMS, run=run, lr=0.01,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
