"""Study 13: softmax cross-entropy with and without the center loss (the notes' 3.4.12).

    python -m experiments.center_loss [--center-weight 0.1] [--center-rate 0.5]

A CNN whose last hidden layer is a linear 2-unit feature layer before the classifier,
trained with softmax cross-entropy alone and with

    L = L_softmax + lambda * (1/n) * 1/2 sum_i ||x_i - c_(y_i)||^2,

the class centers c_j kept in the model state and moved after every step by the
notes' rule c_j <- c_j - alpha * sum_i [y_i = j] (c_j - x_i) / (1 + #{y_i = j})
(`fcnn.losses.center_loss`, `update_centers`; Wen et al., 2016). The objective goes
through the library's train-step builder, so the update, the metrics and the
non-finite check are those of every other run. Plotted: the 2-D features of the
test set coloured by class. Measured: the ratio of the mean distance of a point to
its class mean (intra) to the mean distance between class means (inter); the claim
is that the center loss tightens the classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from fcnn import cli
from fcnn import program
from fcnn.layers.base import DENSE, Layer, apply_with_intermediates
from fcnn.losses import center_loss, update_centers
from fcnn.models import cnn
from fcnn.train import population

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import SMOOTHING, Variant

FEATURES = 2


@dataclass(frozen=True)
class Config(study.Config):
    center_weight: float = option(0.1, parse=cli.nonnegative_float, metavar="LAMBDA",
                                  help="weight lambda of the center loss")
    center_rate: float = option(0.5, metavar="ALPHA", help="center update rate alpha in (0, 1]")


def check(config: Config, data) -> None:
    del data
    if config.center_rate > 1:
        raise cli.UsageError(f"--center-rate {config.center_rate}: expected alpha in (0, 1]")


def with_centers(model: Layer, num_classes: int, feature_dim: int) -> Layer:
    """Wraps `model` so its state also holds the class centers of the center loss.

    state = {"net": the model's state, "centers": (num_classes, feature_dim) zeros};
    apply is the model's (the centers are read and updated by the objective).
    """

    def init(rng, input_shape):
        shape, params, state = model.init(rng, input_shape)
        return shape, params, {"net": state, "centers": jnp.zeros((num_classes, feature_dim), jnp.float32)}

    def apply(params, state, x, *, train, rng=None):
        y, net_state = model.apply(params, state["net"], x, train=train, rng=rng)
        return y, {"net": net_state, "centers": state["centers"]}

    return Layer(init, apply, name="with_centers", children=(model,))


def features_of(net, feature_path: str, params, state, images):
    """The feature layer's output for `images` (train=False)."""
    _, _, seen = apply_with_intermediates(net, params, state, images, train=False)
    return next(item.value for item in seen if item.path == feature_path)


def center_objective(net, feature_path: str, weight: float, rate: float):
    """An objective factory for `make_train_step`: softmax cross-entropy + weight * mean
    center loss; the new state carries the centers moved by the notes' rule. aux:
    "loss" (the cross-entropy) and "center_loss"."""

    def factory(model, loss_fn):
        del model  # the wrapper's state is unpacked here; `net` is the network inside

        def objective(params, state, images, labels, rng):
            logits, net_state, seen = apply_with_intermediates(net, params, state["net"], images,
                                                               train=True, rng=rng)
            feats = next(item.value for item in seen if item.path == feature_path)
            ce = loss_fn(logits, labels)
            centers = jax.lax.stop_gradient(state["centers"])
            spread = center_loss(feats, labels, centers) / images.shape[0]
            moved = update_centers(centers, jax.lax.stop_gradient(feats), labels, rate)
            return ce + weight * spread, (logits, {"net": net_state, "centers": moved},
                                          {"loss": ce, "center_loss": spread})

        return objective

    return factory


def compactness(points: np.ndarray, labels: np.ndarray) -> float:
    """mean ||x - mean of its class|| / mean ||mean_a - mean_b|| over class pairs a != b."""
    classes = np.unique(labels)
    means = np.stack([points[labels == c].mean(axis=0) for c in classes])
    intra = np.mean(np.linalg.norm(points - means[np.searchsorted(classes, labels)], axis=1))
    pair = np.linalg.norm(means[:, None, :] - means[None, :, :], axis=-1)
    inter = pair[~np.eye(len(classes), dtype=bool)].mean()
    return float(intra / inter) if inter > 0 else float("inf")


CLAIMS = (claims.Claim(
    "center loss tightens the classes (smaller intra/inter-class distance ratio of the features)",
    lambda f: claims.smaller("softmax + center", claims.get(f.table, "softmax + center", "compactness"),
                             "softmax", claims.get(f.table, "softmax", "compactness"))),)


def run(session: study.Session) -> study.Outcome:
    c = session.config
    data = session.data.get()
    net = cnn(data.num_classes, "relu", feature_dim=FEATURES)
    # the feature layer: the last dense layer before the classifier
    feature_path = str([i for i, child in enumerate(net.children) if child.role == DENSE][-2])
    model = with_centers(net, data.num_classes, FEATURES)
    results = session.train([
        Variant(name=name, model=model, info={"center_weight": lam},
                objective=center_objective(net, feature_path, lam, c.center_rate))
        for name, lam in (("softmax", 0.0), ("softmax + center", c.center_weight))])
    extract = jax.jit(lambda p, st, x: features_of(net, feature_path, p, st["net"], x))
    images, labels = data.test.images, np.asarray(data.test.labels)
    fig, axes = plots.figure(1, len(results), width=6.0, height=5.5)
    metrics = {}
    for ax, (name, r) in zip(axes, results.items()):
        ratios = []
        for k in range(len(r.seeds)):
            feats = np.asarray(extract(population.member(r.params, k), population.member(r.state, k),
                                       jnp.asarray(images)))
            ratios.append(compactness(feats, labels))
            if k == 0:
                plots.scatter_classes(ax, feats, labels,
                                      title=f"{name}: intra/inter = {ratios[0]:.3f} (seed {r.seeds[0]})")
        metrics[name] = {"compactness": ratios,
                         "final_center_loss": [float(np.mean(row[-SMOOTHING:])) for row in r.step["center_loss"]]}
    fig.suptitle(f"2-D features of the test set ({c.dataset})")
    return study.Outcome(
        metrics=metrics,
        columns=[report.Column("compactness", "intra/inter distance", ".3f"), report.TEST_ACCURACY,
                 report.Column("final_train_loss", "final softmax loss", ".3g"),
                 report.Column("final_center_loss", "final center loss", ".3g")],
        notes=[f"CNN widths (16, 32), hidden 128, a linear {FEATURES}-unit feature layer, then the "
               f"classifier; SGD momentum 0.9; lambda {c.center_weight:g}, alpha {c.center_rate:g}."],
        plots=[(plots.save(fig, session.path("features.png")), "2-D test features by class"),
               plots.training_error(session.path("train_error.png"), results, study="center_loss",
                                    dataset=c.dataset)])


STUDY = study.Study(
    name="center_loss",
    description="Softmax alone vs softmax + center loss on a CNN with a 2-D feature layer.",
    config=Config, claims=CLAIMS, run=run, check=check,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
