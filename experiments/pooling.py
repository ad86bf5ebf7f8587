"""Study 11: max pooling, average pooling and stride-2 convolution at the same depth.

    python -m experiments.pooling

The reference CNN's two conv-ReLU-pool stages with 2x2 max pooling, 2x2 average
pooling, or no pooling layer and stride-2 convolutions instead (the same depth,
the same parameter count, the same feature-map sizes; Springenberg et al., 2015).
Measured: test accuracy, parameters, training time.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from fcnn.models import cnn

from experiments.core import claims, plots, report, study
from experiments.core.training import Variant

POOLS = {"max pool": "max", "avg pool": "avg", "stride-2 conv": "stride"}


@dataclass(frozen=True)
class Config(study.Config):
    pass


def _max_at_least_avg(f: claims.Findings) -> claims.Judgement:
    acc = lambda n: claims.get(f.table, n, "test_accuracy")  # noqa: E731
    a, b = claims.mean(acc("max pool")), claims.mean(acc("avg pool"))
    if a is None or b is None:
        return claims.Judgement(claims.INCONCLUSIVE, "not measured")
    text = f"max pool {claims.fmt(a)} vs avg pool {claims.fmt(b)} test accuracy"
    if a >= b:
        return claims.Judgement(claims.SUPPORTED, text, {"max": a, "avg": b})
    if b - a <= claims.spread(acc("max pool")) + claims.spread(acc("avg pool")):
        return claims.Judgement(claims.INCONCLUSIVE, text + " (difference within the spread over seeds)",
                                {"max": a, "avg": b})
    return claims.Judgement(claims.CONTRADICTED, text, {"max": a, "avg": b})


CLAIMS = (
    claims.Claim("max pooling is at least as accurate as average pooling", _max_at_least_avg),
    claims.Claim("a stride-2 convolution trains faster per epoch than convolution + max pooling",
                 lambda f: claims.smaller("stride-2 conv", claims.get(f.table, "stride-2 conv", "time_per_epoch"),
                                          "max pool", claims.get(f.table, "max pool", "time_per_epoch"))),
)


def run(session: study.Session) -> study.Outcome:
    c = session.config
    num_classes = session.data.get().num_classes
    results = session.train([Variant(name=name, model=cnn(num_classes, "relu", pool=pool), info={"pool": pool})
                             for name, pool in POOLS.items()])
    return study.Outcome(
        columns=[report.TEST_ACCURACY, report.Column("params", "parameters", ".0f"),
                 report.Column("time_per_epoch", "s/epoch", ".3f"), report.FINAL_TRAIN_LOSS],
        notes=["CNN widths (16, 32), hidden 128, ReLU, SGD momentum 0.9; 'stride-2 conv' has the "
               "convolutions at stride 2 and no pooling layer."],
        plots=[plots.training_error(session.path("train_error.png"), results, study="pooling",
                                    dataset=c.dataset),
               plots.epoch_metric(session.path("test_accuracy.png"), results, "test_accuracy",
                                  ylabel="test accuracy", study="pooling", dataset=c.dataset)])


STUDY = study.Study(
    name="pooling",
    description="Max pooling vs average pooling vs stride-2 convolution, same depth: accuracy, "
                "parameters, time.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
