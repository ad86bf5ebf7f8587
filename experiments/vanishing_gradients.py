"""Study 2: vanishing gradients in a deep MLP with sigmoid, tanh and ReLU units.

    python -m experiments.vanishing_gradients [--depth 10] [--width 64]

The gradient norm of every layer's weights, and of its bias (the back-propagated
error delta = dL/dz, summed over the batch), is measured on a held-out batch at
initialisation, during and after training. With sigmoid units each layer multiplies
the back-propagated error by sigma'(z) <= 1/4, so it shrinks layer by layer towards
the input; tanh' <= 1 and ReLU' in {0, 1} shrink it less. The layer-by-layer claim
is judged on the error, not on the weight gradient: the first layer's weight
gradient also scales with its fan-in (784 pixels against 64 hidden units).
"""

from __future__ import annotations

import sys

import numpy as np

from experiments import cli, plots, runner, verdicts
from experiments.models import mlp

ACTIVATIONS = ("sigmoid", "tanh", "relu")
QUICK_ACTIVATIONS = ("sigmoid", "relu")
DEPTH, WIDTH = 10, 64
QUICK_DEPTH, QUICK_WIDTH = 4, 32

CLAIMS = (
    "with sigmoid units the back-propagated error (the bias gradient dL/dz, summed over the "
    "batch) shrinks layer by layer towards the input (sigma' <= 1/4), at initialisation",
    "the input-layer / output-layer gradient ratio is smaller with sigmoid than with tanh and ReLU",
)


def add_arguments(group):
    group.add_argument("--depth", type=cli.positive_int, default=None, metavar="N",
                       help=f"hidden layers (default: {DEPTH}; --quick: {QUICK_DEPTH})")
    group.add_argument("--width", type=cli.positive_int, default=None, metavar="N",
                       help=f"units per hidden layer (default: {WIDTH}; --quick: {QUICK_WIDTH})")
    group.add_argument("--activations", type=cli.name_list(ACTIVATIONS, "activations"), default=None,
                       metavar="A,B,...", help=f"activations (default: {', '.join(ACTIVATIONS)})")


def run(run: runner.Run) -> None:
    s = run.settings
    depth = s.options.get("depth") or (QUICK_DEPTH if s.quick else DEPTH)
    width = s.options.get("width") or (QUICK_WIDTH if s.quick else WIDTH)
    names = s.options.get("activations") or (QUICK_ACTIVATIONS if s.quick else ACTIVATIONS)
    num_classes = run.data.get().num_classes
    run.notes.append(f"MLP: {depth} hidden layers of {width} units, LeCun-normal init, SGD momentum 0.9; "
                     "gradient norms on held-out validation images.")
    variants = [runner.Variant(name=n, model=mlp(num_classes, n, depth=depth, width=width),
                               probe=runner.units_probe, info={"activation": n}) for n in names]
    run.plan(variants)
    results = run.train(variants)
    layers = runner.probe_layers(next(iter(results.values())), "grad")
    for name, r in results.items():
        for layer in layers:
            run.add_metric(name, f"grad_init/{layer}", runner.probe_at(r, f"grad/{layer}", 0))
            run.add_metric(name, f"grad_end/{layer}", runner.probe_at(r, f"grad/{layer}", -1))
            run.add_metric(name, f"delta_init/{layer}", runner.probe_at(r, f"delta/{layer}", 0))
        first, last = layers[0], layers[-1]
        ratio = [None if a is None or not b else a / b for a, b in
                 zip(runner.probe_at(r, f"grad/{first}", 0), runner.probe_at(r, f"grad/{last}", 0))]
        run.add_metric(name, "input_output_ratio_init", ratio)
    middle = layers[len(layers) // 2]
    run.columns = [
        runner.TEST_ACCURACY,
        runner.Column(f"delta_init/{layers[0]}", f"error {layers[0]} (init)", ".2e"),
        runner.Column(f"delta_init/{middle}", f"error {middle} (init)", ".2e"),
        runner.Column(f"delta_init/{layers[-1]}", f"error {layers[-1]} (init)", ".2e"),
        runner.Column(f"grad_init/{layers[0]}", f"grad {layers[0]} (init)", ".2e"),
        runner.Column(f"grad_init/{middle}", f"grad {middle} (init)", ".2e"),
        runner.Column(f"grad_init/{layers[-1]}", f"grad {layers[-1]} (init)", ".2e"),
        runner.Column("input_output_ratio_init", "input/output grad ratio (init)", ".2e"),
        runner.Column(f"grad_end/{layers[0]}", f"grad {layers[0]} (end)", ".2e"),
    ]
    run.verdicts = verdicts.vanishing_claims(run.table, list(reversed(layers)))
    x = np.arange(1, len(layers) + 1)
    for key, file, ylabel, title in (
        ("grad", "grad_per_layer.png", "gradient norm of the layer's weights",
         "Weight-gradient norm per layer, at initialisation (solid) and after training (dashed)"),
        ("delta", "error_per_layer.png", "bias-gradient norm (back-propagated error)",
         "Back-propagated error per layer, at initialisation (solid) and after training (dashed)"),
    ):
        series = []
        for i, (name, r) in enumerate(results.items()):
            for when, index, style in (("init", 0, "-"), ("end", -1, "--")):
                runs = np.array([[v if v is not None else np.nan
                                  for v in runner.probe_at(r, f"{key}/{layer}", index)]
                                 for layer in layers], float).T
                series.append({"label": f"{name} ({when})", "x": x, "runs": runs, "index": i,
                               "linestyle": style})
        path = plots.curves(run.path(file), series, xlabel="layer (1 = next to the input)",
                            ylabel=ylabel, title=title, logy=True, integer_x=True)
        run.add_plot(path, title.split(",")[0].lower())
    runner.plot_training_error(run, results)


STUDY = cli.Study(
    name="vanishing_gradients",
    description="Gradient norm per layer of a deep MLP with sigmoid, tanh and ReLU units.",
    claims=CLAIMS, run=run, lr=0.01, add_arguments=add_arguments,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
