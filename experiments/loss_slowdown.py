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

import sys

import jax
import numpy as np

from experiments import cli, plots, runner, verdicts
from experiments.models import mlp
from fcnn.losses import binary_cross_entropy_with_logits, half_squared_error
from fcnn.ops.activations import sigmoid

OUTPUT_BIAS = 4.0
HIDDEN = 64
HALF = "steps_to_half_loss"

CLAIMS = (
    "cross-entropy learns fast where the quadratic cost stalls (steps to halve the training loss)",
    "the quadratic cost's initial output-layer gradient is smaller (sigma' ~ 0 in saturation)",
)


def quadratic(logits, labels):
    """1/2 sum (sigma(z) - onehot)^2, mean over the batch."""
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return half_squared_error(sigmoid(logits), targets)


def cross_entropy(logits, labels):
    """Sigmoid cross-entropy of every output against its one-hot target, mean over the batch."""
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    return binary_cross_entropy_with_logits(logits, targets)


def add_arguments(group):
    group.add_argument("--output-bias", type=cli.nonnegative_float, default=OUTPUT_BIAS, metavar="B",
                       help=f"initial bias of every output unit; sigma(B) is the starting output "
                            f"(default: {OUTPUT_BIAS}, sigma = 0.98)")


def run(run: runner.Run) -> None:
    s = run.settings
    bias = s.options.get("output_bias", OUTPUT_BIAS)
    num_classes = run.data.get().num_classes
    run.notes.append(f"MLP: 1 hidden layer of {HIDDEN} sigmoid units, {num_classes} sigmoid outputs with "
                     f"bias {bias:g} at init; plain SGD lr {s.lr:g}; the same initial weights for both costs.")
    variants = [runner.Variant(name=name, model=mlp(num_classes, "sigmoid", depth=1, width=HIDDEN,
                                                    output_bias=bias),
                               loss_fn=fn, optimizer="sgd", probe=runner.units_probe, info={"cost": name})
                for name, fn in (("quadratic", quadratic), ("cross_entropy", cross_entropy))]
    run.plan(variants)
    results = run.train(variants)
    for name, r in results.items():
        smooth = runner.trailing_mean(r.step["loss"], min(runner.SMOOTHING, r.steps_per_epoch))
        run.add_metric(name, HALF, [runner.steps_to(row, row[0] / 2) for row in smooth])
        layers = runner.probe_layers(r, "grad")
        run.add_metric(name, "grad_init_output", runner.probe_at(r, f"grad/{layers[-1]}", 0))
        run.add_metric(name, "grad_init_hidden", runner.probe_at(r, f"grad/{layers[0]}", 0))
        ratio = [float(row[-1] / row[0]) for row in smooth]
        run.add_metric(name, "final_over_initial_loss", ratio)
    run.columns = [
        runner.Column(HALF, "steps to halve the loss", ".0f"),
        runner.Column("final_over_initial_loss", "final / initial loss", ".3g"),
        runner.Column("grad_init_output", "output-layer grad (init)", ".3g"),
        runner.Column("grad_init_hidden", "hidden-layer grad (init)", ".3g"),
        runner.TEST_ACCURACY,
    ]
    budget = max(r.total_steps for r in results.values())
    run.verdicts = verdicts.loss_slowdown_claims(run.table, "quadratic", "cross_entropy", metric=HALF,
                                                 budget=budget)
    series = []
    for i, (name, r) in enumerate(results.items()):
        smooth = runner.trailing_mean(r.step["loss"], min(runner.SMOOTHING, r.steps_per_epoch))
        series.append({"label": name, "x": np.arange(1, r.total_steps + 1), "runs": smooth / smooth[:, :1],
                       "index": i})
    run.add_plot(plots.curves(run.path("relative_loss.png"), series, xlabel="training step",
                              ylabel="training loss / initial loss", logy=True, hlines=(0.5,),
                              hline_label="half the initial loss",
                              title=f"Learning from saturated sigmoid outputs ({s.dataset})"),
                 "relative training loss vs step")
    runner.plot_training_error(run, results)


STUDY = cli.Study(
    name="loss_slowdown",
    description="Quadratic cost vs cross-entropy with sigmoid outputs started in saturation.",
    claims=CLAIMS, run=run, lr=0.5, add_arguments=add_arguments,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
