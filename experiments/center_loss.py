"""Study 13: softmax cross-entropy with and without the center loss (the notes' 3.4.12).

    python -m experiments.center_loss [--center-weight 0.1] [--center-rate 0.5]

A CNN whose last hidden layer is a linear 2-unit feature layer before the classifier,
trained with softmax cross-entropy alone and with

    L = L_softmax + lambda * (1/n) * 1/2 sum_i ||x_i - c_(y_i)||^2,

the class centers c_j kept in the model state and moved after every step by the
notes' rule c_j <- c_j - alpha * sum_i [y_i = j] (c_j - x_i) / (1 + #{y_i = j})
(`fcnn.losses.center_loss`, `update_centers`; Wen et al., 2016). Plotted: the 2-D
features of the test set coloured by class. Measured: the ratio of the mean
distance of a point to its class mean (intra) to the mean distance between class
means (inter); the claim is that the center loss tightens the classes.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import cli, plots, runner, verdicts
from experiments.models import cnn, with_centers
from fcnn import metrics as metrics_lib
from fcnn.layers.base import apply_with_intermediates
from fcnn.losses import center_loss, update_centers

CENTER_WEIGHT = 0.1
CENTER_RATE = 0.5
FEATURES = 2

CLAIMS = ("center loss tightens the classes (smaller intra/inter-class distance ratio of the features)",)


def add_arguments(group):
    group.add_argument("--center-weight", type=cli.nonnegative_float, default=CENTER_WEIGHT, metavar="LAMBDA",
                       help=f"weight lambda of the center loss (default: {CENTER_WEIGHT})")
    group.add_argument("--center-rate", type=cli.positive_float, default=CENTER_RATE, metavar="ALPHA",
                       help=f"center update rate alpha in (0, 1] (default: {CENTER_RATE})")


def check(run: runner.Run) -> None:
    if run.settings.options.get("center_rate", CENTER_RATE) > 1:
        raise cli.UsageError(f"--center-rate {run.settings.options['center_rate']}: expected alpha in (0, 1]")


def features_of(net, feature_path: str, params, state, images):
    """The feature layer's output for `images` (train=False)."""
    _, _, seen = apply_with_intermediates(net, params, state, images, train=False)
    return next(item.value for item in seen if item.path == feature_path)


def center_step(net, feature_path: str, weight: float, rate: float):
    """A train-step factory: softmax cross-entropy + weight * mean center loss, then the
    center update. metrics: "loss" (the cross-entropy), "center_loss", "accuracy"."""

    def factory(model, loss_fn, optimizer):
        del model  # the wrapper's state is unpacked here; `net` is the network inside

        def step(params, state, opt_state, batch, rng):
            images, labels = batch
            centers = state["centers"]

            def objective(p):
                logits, net_state, seen = apply_with_intermediates(net, p, state["net"], images,
                                                                   train=True, rng=rng)
                feats = next(item.value for item in seen if item.path == feature_path)
                ce = loss_fn(logits, labels)
                spread = center_loss(feats, labels, jax.lax.stop_gradient(centers)) / images.shape[0]
                return ce + weight * spread, (logits, net_state, feats, ce, spread)

            (_, (logits, net_state, feats, ce, spread)), grads = jax.value_and_grad(
                objective, has_aux=True)(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            centers = update_centers(centers, jax.lax.stop_gradient(feats), labels, rate)
            out = {"loss": ce, "center_loss": spread, "accuracy": metrics_lib.accuracy(logits, labels)}
            return params, {"net": net_state, "centers": centers}, opt_state, out

        return step

    return factory


def compactness(points: np.ndarray, labels: np.ndarray) -> float:
    """mean ||x - mean of its class|| / mean ||mean_a - mean_b|| over class pairs a != b."""
    classes = np.unique(labels)
    means = np.stack([points[labels == c].mean(axis=0) for c in classes])
    intra = np.mean(np.linalg.norm(points - means[np.searchsorted(classes, labels)], axis=1))
    pair = np.linalg.norm(means[:, None, :] - means[None, :, :], axis=-1)
    inter = pair[~np.eye(len(classes), dtype=bool)].mean()
    return float(intra / inter) if inter > 0 else float("inf")


def run(run: runner.Run) -> None:
    s = run.settings
    weight = s.options.get("center_weight", CENTER_WEIGHT)
    rate = s.options.get("center_rate", CENTER_RATE)
    data = run.data.get()
    num_classes = data.num_classes
    net = cnn(num_classes, "relu", feature_dim=FEATURES)
    feature_path = str(len(net.init.__fcnn_children__) - 2)
    model = with_centers(net, num_classes, FEATURES)
    run.notes.append(f"CNN widths (16, 32), hidden 128, a linear {FEATURES}-unit feature layer, then the "
                     f"classifier; SGD momentum 0.9; lambda {weight:g}, alpha {rate:g}.")
    variants = [runner.Variant(name=name, model=model, train_step=center_step(net, feature_path, lam, rate),
                               info={"center_weight": lam})
                for name, lam in (("softmax", 0.0), ("softmax + center", weight))]
    run.plan(variants)
    results = run.train(variants)
    extract = jax.jit(lambda p, st, x: features_of(net, feature_path, p, st["net"], x))
    images, labels = data.test.images, np.asarray(data.test.labels)
    fig, axes = plots.figure(1, len(results), width=6.0, height=5.5)
    for ax, (name, r) in zip(axes, results.items()):
        ratios = []
        for k in range(len(r.seeds)):
            feats = np.asarray(extract(runner.take(r.params, k), runner.take(r.state, k), jnp.asarray(images)))
            ratios.append(compactness(feats, labels))
            if k == 0:
                plots.scatter_classes(ax, feats, labels,
                                      title=f"{name}: intra/inter = {ratios[0]:.3f} (seed {r.seeds[0]})")
        run.add_metric(name, "compactness", ratios)
        run.add_metric(name, "final_center_loss",
                       [float(np.mean(row[-runner.SMOOTHING:])) for row in r.step["center_loss"]])
    fig.suptitle(f"2-D features of the test set ({s.dataset})")
    run.add_plot(plots.save(fig, run.path("features.png")), "2-D test features by class")
    run.columns = [
        runner.Column("compactness", "intra/inter distance", ".3f"),
        runner.TEST_ACCURACY,
        runner.Column("final_train_loss", "final softmax loss", ".3g"),
        runner.Column("final_center_loss", "final center loss", ".3g"),
    ]
    run.verdicts = verdicts.center_loss_claims(run.table, "softmax", "softmax + center")
    runner.plot_training_error(run, results)


STUDY = cli.Study(
    name="center_loss",
    description="Softmax alone vs softmax + center loss on a CNN with a 2-D feature layer.",
    claims=CLAIMS, run=run, lr=0.01, add_arguments=add_arguments, check=check,
)


def main(argv=None) -> int:
    return cli.main(STUDY, argv)


if __name__ == "__main__":
    sys.exit(main())
