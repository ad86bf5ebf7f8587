"""Study 7: weight initialization, symmetry and variance across layers.

    python -m experiments.initialization [--depth 5] [--width 128]

A tanh MLP initialised with zeros, a constant, 0.01 * N(0, 1), LeCun (variance
1/fan_in, the notes' 1/sqrt(n) calibration), Xavier and He. Measured:
  * symmetry: the spread between the hidden units' incoming weight vectors after
    training, max_j ||w_j - mean w|| / mean_j ||w_j||, 0 when all units are identical;
  * the variance of every layer's input and output (pre-activation) at
    initialisation on a held-out batch, and the gain var_out / var_in per layer;
  * the final test accuracy.
Claims from the notes: equal initial weights keep the units identical (they get the
same gradient); scaling by 1/sqrt(n) keeps a unit's output variance equal to that of
its inputs, layer after layer.
"""

from __future__ import annotations

import math
import sys

import jax.numpy as jnp
import numpy as np

from experiments import cli, plots, runner, verdicts
from experiments.models import mlp
from fcnn import diagnostics, initializers
from fcnn.layers.base import apply_with_intermediates

CONSTANT = 0.1
INITS = {
    "zeros": initializers.zeros,
    "constant": initializers.constant(CONSTANT),
    "normal(0.01)": initializers.normal(0.01),
    "lecun": initializers.lecun_normal,
    "xavier": initializers.xavier_normal,
    "he": initializers.he_normal,
}
QUICK_INITS = ("zeros", "lecun")
EQUAL = ("zeros", "constant")
DEPTH, WIDTH = 5, 128

CLAIMS = (
    "equal initial weights (zeros, a constant) keep the hidden units identical",
    "1/sqrt(n) (LeCun) keeps each layer's output variance near its input variance, across layers",
)


def add_arguments(group):
    group.add_argument("--inits", type=cli.name_list(tuple(INITS), "initializers"), default=None,
                       metavar="A,B,...", help=f"initializers (default: {', '.join(INITS)})")
    group.add_argument("--depth", type=cli.positive_int, default=None, metavar="N",
                       help=f"hidden layers (default: {DEPTH})")
    group.add_argument("--width", type=cli.positive_int, default=None, metavar="N",
                       help=f"units per hidden layer (default: {WIDTH})")


def variance_probe(model, loss_fn):
    """Per weight layer: the variance of its input ("var_in/<layer>") and of its output
    ("var_out/<layer>"), and of the activation after it ("act_var/<layer>")."""
    del loss_fn

    def probe(params, state, images, labels):
        del labels
        labels_by_path = runner.weight_layers(params)
        _, _, seen = apply_with_intermediates(model, params, state, images, train=False)
        out, previous, current = {}, images, None
        for item in seen:
            if item.path in labels_by_path:
                current = labels_by_path[item.path]
                out[f"var_in/{current}"] = jnp.var(previous)
                out[f"var_out/{current}"] = jnp.var(item.value)
            elif diagnostics.is_activation(item) and current is not None:
                out[f"act_var/{current}"] = jnp.var(item.value)
            previous = item.value
        return out

    return probe


def unit_spread(params, layer_paths) -> list[float]:
    """Per seed: the largest relative spread between the units of the hidden layers."""
    spreads = []
    seeds = next(iter(_kernels(params, layer_paths))).shape[0]
    for s in range(seeds):
        worst = 0.0
        for kernel in _kernels(params, layer_paths):
            w = np.asarray(kernel[s], np.float64)  # (in, out): column j is unit j's weights
            norms = np.linalg.norm(w, axis=0)
            deviation = np.linalg.norm(w - w.mean(axis=1, keepdims=True), axis=0)
            worst = max(worst, float(deviation.max() / (norms.mean() + 1e-12)))
        spreads.append(worst)
    return spreads


def _kernels(params, paths):
    for path in paths:
        node = params
        for key in path.split("/"):
            node = node[key]
        yield node["kernel"]


def run(run: runner.Run) -> None:
    s = run.settings
    names = s.options.get("inits") or (QUICK_INITS if s.quick else tuple(INITS))
    depth = s.options.get("depth") or (2 if s.quick else DEPTH)
    width = s.options.get("width") or (16 if s.quick else WIDTH)
    num_classes = run.data.get().num_classes
    run.notes.append(f"tanh MLP: {depth} hidden layers of {width} units, biases zero, SGD momentum 0.9; "
                     f"constant = {CONSTANT}; variances over a held-out validation batch at initialisation.")
    variants = [runner.Variant(name=n, model=mlp(num_classes, "tanh", depth=depth, width=width,
                                                 kernel_init=INITS[n]),
                               probe=variance_probe, probe_every=10 ** 9, info={"init": n}) for n in names]
    run.plan(variants)
    results = run.train(variants)
    for name, r in results.items():
        labels = runner.weight_layers(runner.take(r.params, 0))
        hidden = [p for p, label in labels.items() if label != f"dense{len(labels)}"]
        run.add_metric(name, "unit_spread", unit_spread(r.params, hidden))
        layers = runner.probe_layers(r, "var_out")
        worst = []
        for seed in range(len(r.seeds)):
            logs = []
            for layer in layers:
                v_in = runner.probe_at(r, f"var_in/{layer}", 0)[seed]
                v_out = runner.probe_at(r, f"var_out/{layer}", 0)[seed]
                logs.append(abs(math.log(v_out / v_in)) if v_in and v_out else math.inf)
            worst.append(max(logs) if logs else None)
        run.add_metric(name, "gain_max_log", worst)
        for layer in layers:
            gains = [None if not a or b is None else b / a for a, b in
                     zip(runner.probe_at(r, f"var_in/{layer}", 0), runner.probe_at(r, f"var_out/{layer}", 0))]
            run.add_metric(name, f"gain/{layer}", gains)
    layers = runner.probe_layers(next(iter(results.values())), "var_out")
    run.columns = [
        runner.Column("unit_spread", "unit spread (after training)", ".3g"),
        runner.Column("gain_max_log", "max |log gain| (init)", ".3g"),
        *[runner.Column(f"gain/{layer}", f"gain {layer}", ".3g") for layer in layers],
        runner.TEST_ACCURACY,
    ]
    random = [n for n in names if n not in EQUAL]
    run.verdicts = verdicts.initialization_claims(run.table, [n for n in EQUAL if n in names], random, "lecun")
    fig, axes = plots.figure(1, 2)
    for i, (name, r) in enumerate(results.items()):
        for ax, prefix in ((axes[0], "var_out"), (axes[1], "act_var")):
            keys = [f"{prefix}/{layer}" for layer in runner.probe_layers(r, prefix)]
            runs = np.array([[np.nan if v is None else v for v in runner.probe_at(r, k, 0)] for k in keys], float).T
            plots.band(ax, np.arange(1, len(keys) + 1), runs, label=name, index=i, logy=True)
    plots.finish(axes[0], xlabel="layer (1 = next to the input)", ylabel="variance of the layer's output (w.x + b)",
                 title="Pre-activation variance at initialisation", logy=True, integer_x=True)
    plots.finish(axes[1], xlabel="hidden layer", ylabel="variance of tanh output",
                 title="Activation variance at initialisation", logy=True, integer_x=True)
    fig.suptitle(f"Variance across layers by initialization ({s.dataset}; zeros: 0, not shown)")
    run.add_plot(plots.save(fig, run.path("variance_per_layer.png")), "variance per layer at initialisation")
    runner.plot_training_error(run, results)


STUDY = cli.Study(
    name="initialization",
    description="Zeros, constant, 0.01*randn, LeCun, Xavier and He initialization of a tanh MLP: "
                "symmetry, variance per layer, accuracy.",
    claims=CLAIMS, run=run, lr=0.01, add_arguments=add_arguments,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
