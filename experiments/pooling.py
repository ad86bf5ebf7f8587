"""Study 11: max pooling, average pooling and stride-2 convolution at the same depth.

    python -m experiments.pooling

The reference CNN's two conv-ReLU-pool stages with 2x2 max pooling, 2x2 average
pooling, or no pooling layer and stride-2 convolutions instead (the same depth,
the same parameter count, the same feature-map sizes; Springenberg et al., 2015).
Measured: test accuracy, parameters, training time.
"""

from __future__ import annotations

import sys

from experiments import cli, runner, verdicts
from experiments.models import cnn

POOLS = {"max pool": "max", "avg pool": "avg", "stride-2 conv": "stride"}

CLAIMS = (
    "max pooling is at least as accurate as average pooling",
    "a stride-2 convolution trains faster per epoch than convolution + max pooling",
)


def run(run: runner.Run) -> None:
    s = run.settings
    num_classes = run.data.get().num_classes
    run.notes.append("CNN widths (16, 32), hidden 128, ReLU, SGD momentum 0.9; 'stride-2 conv' has the "
                     "convolutions at stride 2 and no pooling layer.")
    variants = [runner.Variant(name=name, model=cnn(num_classes, "relu", pool=pool), info={"pool": pool})
                for name, pool in POOLS.items()]
    run.plan(variants)
    results = run.train(variants)
    run.columns = [
        runner.TEST_ACCURACY,
        runner.Column("params", "parameters", ".0f"),
        runner.Column("time_per_epoch", "s/epoch", ".3f"),
        runner.FINAL_TRAIN_LOSS,
    ]
    run.verdicts = verdicts.pooling_claims(run.table, "max pool", "avg pool", "stride-2 conv")
    runner.plot_training_error(run, results)
    runner.plot_epoch_metric(run, results, "test_accuracy", name="test_accuracy.png", ylabel="test accuracy")


STUDY = cli.Study(
    name="pooling",
    description="Max pooling vs average pooling vs stride-2 convolution, same depth: accuracy, "
                "parameters, time.",
    claims=CLAIMS, run=run, lr=0.01,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
