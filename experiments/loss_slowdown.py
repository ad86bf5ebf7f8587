"""Study 10: the learning slowdown of the quadratic cost with saturated sigmoid outputs.

    python -m experiments.loss_slowdown [--output-bias 4]

An MLP whose ten output units are sigmoids (one per class, one-hot targets), started
in saturation: every output bias is initialised to +4, so every output is about 0.98
while nine of ten targets are 0. With the quadratic cost 1/2 (sigma(z) - t)^2 the
output gradient is (sigma - t) sigma'(z), and sigma'(z) ~ 0.018 there: learning
stalls. With the cross-entropy cost the sigma' cancels, dC/dz = sigma - t, so it
learns at once (the notes' motivation for cross-entropy).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from fcnn import cli
from fcnn import program
from fcnn.losses import binary_cross_entropy_with_logits, half_squared_error
from fcnn.models import mlp
from fcnn.ops.activations import sigmoid
from fcnn.train import optimizers

from experiments.core import claims, plots, probes, report, study
from experiments.core.study import option
from experiments.core.training import SMOOTHING, Variant, steps_to, trailing_mean

HIDDEN = 64
HALF = "steps_to_half_loss"


def quadratic(logits, labels):
    """1/2 sum (sigma(z) - onehot)^2, mean over the batch."""
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return half_squared_error(sigmoid(logits), targets)


def cross_entropy(logits, labels):
    """Sigmoid cross-entropy of every output against its one-hot target, mean over the batch."""
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return binary_cross_entropy_with_logits(logits, targets)


@dataclass(frozen=True)
class Config(study.Config):
    lr: float = 0.5
    output_bias: float = option(4.0, parse=cli.nonnegative_float, metavar="B",
                                help="initial bias of every output unit; sigma(B) is the starting "
                                     "output (sigma(4) = 0.98)")


CLAIMS = (
    claims.Claim("cross-entropy learns fast where the quadratic cost stalls (steps to halve the "
                 "training loss)",
                 lambda f: claims.faster(f.table, ["cross_entropy"], ["quadratic"], HALF, f.facts["budget"])),
    claims.Claim("the quadratic cost's initial output-layer gradient is smaller (sigma' ~ 0 in "
                 "saturation)",
                 lambda f: claims.smaller("quadratic", claims.get(f.table, "quadratic", "grad_init_output"),
                                          "cross_entropy",
                                          claims.get(f.table, "cross_entropy", "grad_init_output"))),
)


def run(session: study.Session) -> study.Outcome:
    c = session.config
    num_classes = session.data.get().num_classes
    results = session.train([Variant(name=name, model=mlp(num_classes, "sigmoid", depth=1, width=HIDDEN,
                                                          output_bias=c.output_bias),
                                     loss_fn=fn, optimizer=optimizers.sgd, probe=probes.units_probe,
                                     info={"cost": name})
                             for name, fn in (("quadratic", quadratic), ("cross_entropy", cross_entropy))])
    metrics, series = {}, []
    for i, (name, r) in enumerate(results.items()):
        smooth = trailing_mean(r.step["loss"], min(SMOOTHING, r.steps_per_epoch))
        layers = probes.probe_layers(r, "grad")
        metrics[name] = {
            HALF: [steps_to(row, row[0] / 2) for row in smooth],
            "grad_init_output": probes.probe_at(r, f"grad/{layers[-1]}", 0),
            "grad_init_hidden": probes.probe_at(r, f"grad/{layers[0]}", 0),
            "final_over_initial_loss": [float(row[-1] / row[0]) for row in smooth]}
        series.append({"label": name, "x": np.arange(1, r.total_steps + 1), "runs": smooth / smooth[:, :1],
                       "index": i})
    return study.Outcome(
        metrics=metrics,
        columns=[report.Column(HALF, "steps to halve the loss", ".0f"),
                 report.Column("final_over_initial_loss", "final / initial loss", ".3g"),
                 report.Column("grad_init_output", "output-layer grad (init)", ".3g"),
                 report.Column("grad_init_hidden", "hidden-layer grad (init)", ".3g"),
                 report.TEST_ACCURACY],
        facts={"budget": max(r.total_steps for r in results.values())},
        notes=[f"MLP: 1 hidden layer of {HIDDEN} sigmoid units, {num_classes} sigmoid outputs with "
               f"bias {c.output_bias:g} at init; plain SGD lr {c.lr:g}; the same initial weights for "
               "both costs."],
        plots=[(plots.curves(session.path("relative_loss.png"), series, xlabel="training step",
                             ylabel="training loss / initial loss", logy=True, hlines=(0.5,),
                             hline_label="half the initial loss",
                             title=f"Learning from saturated sigmoid outputs ({c.dataset})"),
                "relative training loss vs step"),
               plots.training_error(session.path("train_error.png"), results, study="loss_slowdown",
                                    dataset=c.dataset)])


STUDY = study.Study(
    name="loss_slowdown",
    description="Quadratic cost vs cross-entropy with sigmoid outputs started in saturation.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
