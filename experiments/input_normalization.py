"""Study 12: raw pixels against standardized inputs.

    python -m experiments.input_normalization

The reference CNN trained on the raw pixel values (0..16 for the digits, 0..255 for
MNIST), on pixels scaled to [0, 1] and on standardized pixels (zero mean, unit
variance, statistics of the training split), with the same learning rate. The claim
(the notes' preprocessing advice): standardized inputs converge faster. Measured:
steps to a smoothed training error of 10%, final accuracy, divergence.
"""

from __future__ import annotations

from dataclasses import dataclass

from fcnn import program
from fcnn.models import refnet

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import Variant

NORMALIZATIONS = {"raw": None, "minmax [0,1]": "minmax", "standardized": "standardize"}
TARGET = 0.10
WIDTHS, HIDDEN = (16, 32), 128


@dataclass(frozen=True)
class Config(study.Config):
    inputs: tuple[str, ...] = option(tuple(NORMALIZATIONS), quick=("raw", "standardized"),
                                     choices=tuple(NORMALIZATIONS), help="input scalings compared")


CLAIMS = (claims.Claim(
    "standardized inputs converge faster than raw pixels",
    lambda f: claims.faster(f.table, ["standardized"], ["raw"], report.target_key(TARGET), f.facts["budget"])),)


def run(session: study.Session) -> study.Outcome:
    c = session.config
    num_classes = session.data.get().num_classes
    results = session.train([Variant(name=n, model=refnet(num_classes, "relu", widths=WIDTHS, hidden=HIDDEN),
                                     normalize=NORMALIZATIONS[n], info={"normalize": NORMALIZATIONS[n]})
                             for n in c.inputs], targets=(TARGET,))
    return study.Outcome(
        columns=[report.steps_to_column(TARGET), report.TEST_ACCURACY, report.FINAL_TRAIN_LOSS,
                 report.DIVERGED],
        facts={"budget": max(r.total_steps for r in results.values())},
        notes=[f"refnet widths {WIDTHS}, hidden {HIDDEN}, SGD momentum 0.9, lr {c.lr:g} for every "
               "input scaling; statistics from the training split."],
        plots=[plots.training_error(session.path("train_error.png"), results, targets=(TARGET,),
                                    study="input_normalization", dataset=c.dataset)])


STUDY = study.Study(
    name="input_normalization",
    description="Raw pixels vs [0, 1] scaling vs standardized inputs: convergence speed.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
