"""Study 11: what pooling buys: invariance to small shifts (and rotations, scale), and
less overfitting.

    python -m experiments.pooling [--shifts 1,2,3,4]

The reference CNN's two conv-ReLU stages downsample by 2x2 max pooling, 2x2 average
pooling, or (no pooling layer) stride-2 convolutions: the same depth, parameters and
feature-map sizes (Springenberg et al., 2015). After training, every test image is
moved by 1-4 pixels (up, down, left, right; the uncovered border filled with the
image's background value), rotated by +-10 degrees and scaled by 0.9 and 1.1, and we
measure (a) how much the features that reach the classifier change, relative to
their size, ||f(moved x) - f(x)|| / ||f(x)||, and (b) how often the predicted class
changes. The notes: pooling makes the representation approximately invariant to small
translations (and rotations, scale), and reduces overfitting (the train/test gap).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from fcnn import augment, program
from fcnn.layers.base import apply_with_intermediates
from fcnn.models import cnn
from fcnn.train import population

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import Variant

POOLS = {"max pool": "max", "avg pool": "avg", "stride-2 conv": "stride"}
ROTATIONS = (-10.0, 10.0)
SCALES = (0.9, 1.1)
IMAGES = 1000  # test images moved


@dataclass(frozen=True)
class Config(study.Config):
    shifts: tuple[int, ...] = option((1, 2, 3, 4), help="shifts in pixels")


def moved(images: np.ndarray, shift: int, direction: tuple[int, int]) -> np.ndarray:
    """`images` (N, H, W, C) moved by `shift` pixels along `direction`; what is uncovered
    takes each image's background (its smallest value)."""
    dr, dc = direction[0] * shift, direction[1] * shift
    out = np.roll(images, (dr, dc), axis=(1, 2))
    fill = images.min(axis=(1, 2, 3), keepdims=True)
    rows, cols = np.arange(images.shape[1]), np.arange(images.shape[2])
    uncovered = ((rows < dr) | (rows >= images.shape[1] + dr))[:, None] | \
        ((cols < dc) | (cols >= images.shape[2] + dc))[None, :]
    return np.where(uncovered[None, :, :, None], fill, out)


def transformed(images: np.ndarray, fn) -> np.ndarray:
    """`fn(image, fill)` applied to every image, with the image's background as fill."""
    fills = images.min(axis=(1, 2, 3))
    return np.asarray(jax.vmap(fn)(jnp.asarray(images), jnp.asarray(fills)))


def sensitivity(model, params, state, images, others) -> tuple[float, float]:
    """(mean relative change of the classifier's input features, share of changed
    predictions) between `images` and each array of `others`."""

    @jax.jit
    def features_and_classes(x):
        logits, _, seen = apply_with_intermediates(model, params, state, x, train=False)
        flat = next(item.value for item in seen if item.layer.name == "Flatten")
        return flat, jnp.argmax(logits, axis=-1)

    base, classes = features_and_classes(images)
    changes, flips = [], []
    for other in others:
        feats, other_classes = features_and_classes(other)
        changes.append(jnp.mean(jnp.linalg.norm(feats - base, axis=1)
                                / jnp.maximum(jnp.linalg.norm(base, axis=1), 1e-12)))
        flips.append(jnp.mean(other_classes != classes))
    return float(np.mean(changes)), float(np.mean(flips))


def _less_sensitive(metric: str, what: str):
    def check(f: claims.Findings) -> claims.Judgement:
        get = lambda n: claims.get(f.table, n, metric)  # noqa: E731
        return claims.every([claims.smaller(n, get(n), "stride-2 conv", get("stride-2 conv"))
                             for n in ("max pool", "avg pool")], [f"{what}: max", f"{what}: avg"])
    return check


CLAIMS = (
    claims.Claim("pooling makes the features reaching the classifier less sensitive to 1-4 pixel "
                 "shifts than a stride-2 convolution of the same depth", _less_sensitive("feature_shift", "shift")),
    claims.Claim("pooling makes the predictions less sensitive to 1-4 pixel shifts",
                 _less_sensitive("prediction_shift", "shift")),
    claims.Claim("pooling makes the features less sensitive to small rotations (+-10 degrees) and "
                 "scale changes (0.9, 1.1)", _less_sensitive("feature_warp", "warp")),
    claims.Claim("pooling reduces overfitting (a smaller train/test accuracy gap than a stride-2 "
                 "convolution)",
                 lambda f: claims.smaller("max pool", claims.get(f.table, "max pool", "gap"),
                                          "stride-2 conv", claims.get(f.table, "stride-2 conv", "gap"))),
)


def measure(results, data, shifts) -> dict:
    images = np.asarray(data.test.images[:IMAGES])
    directions = ((0, 1), (0, -1), (1, 0), (-1, 0))
    by_shift = {s: [moved(images, s, d) for d in directions] for s in shifts}
    warps = [transformed(images, lambda x, fill, a=a: augment.rotate(x, a, fill=fill)) for a in ROTATIONS]
    warps += [transformed(images, lambda x, fill, z=z: augment.zoom(x, z, fill=fill)) for z in SCALES]
    metrics = {}
    for name, r in results.items():
        m = metrics[name] = {key: [] for key in ("feature_shift", "prediction_shift", "feature_warp",
                                                 "prediction_warp")}
        for k in range(len(r.seeds)):
            p, st = population.member(r.params, k), population.member(r.state, k)
            per_shift = [sensitivity(r.model, p, st, images, by_shift[s]) for s in shifts]
            for s, (feat, pred) in zip(shifts, per_shift):
                m.setdefault(f"feature_shift/{s}", []).append(feat)
                m.setdefault(f"prediction_shift/{s}", []).append(pred)
            m["feature_shift"].append(float(np.mean([f for f, _ in per_shift])))
            m["prediction_shift"].append(float(np.mean([p_ for _, p_ in per_shift])))
            feat, pred = sensitivity(r.model, p, st, images, warps)
            m["feature_warp"].append(feat)
            m["prediction_warp"].append(pred)
    return metrics


def draw(session, results, metrics, shifts) -> list:
    fig, axes = plots.figure(1, 2)
    for ax, key, ylabel in ((axes[0], "feature_shift", "relative change of the features"),
                            (axes[1], "prediction_shift", "share of predictions that change")):
        for i, name in enumerate(results):
            runs = np.array([metrics[name][f"{key}/{s}"] for s in shifts], float).T
            plots.band(ax, shifts, runs, label=name, index=i)
        plots.finish(ax, xlabel="shift (pixels)", ylabel=ylabel, title=f"{ylabel} under a shift",
                     integer_x=True)
    fig.suptitle(f"Sensitivity to small translations ({session.config.dataset}, {IMAGES} test images)")
    c = session.config
    return [(plots.save(fig, session.path("shift_sensitivity.png")), "sensitivity to 1-4 pixel shifts"),
            plots.epoch_metric(session.path("test_accuracy.png"), results, "test_accuracy",
                               ylabel="test accuracy", study="pooling", dataset=c.dataset)]


def run(session: study.Session) -> study.Outcome:
    c = session.config
    data = session.data.get()
    results = session.train([Variant(name=name, model=cnn(data.num_classes, "relu", pool=pool),
                                     eval_train=True, info={"pool": pool})
                             for name, pool in POOLS.items()])
    metrics = measure(results, data, tuple(sorted(c.shifts)))
    return study.Outcome(
        metrics=metrics,
        columns=[report.TEST_ACCURACY, report.Column("gap", "gap (train - test)", ".4f"),
                 report.Column("feature_shift", "feature change (shift)", ".3f"),
                 report.Column("prediction_shift", "prediction change (shift)", ".3f"),
                 report.Column("feature_warp", "feature change (rot./scale)", ".3f"),
                 report.Column("prediction_warp", "prediction change (rot./scale)", ".3f"),
                 report.Column("time_per_epoch", "s/epoch", ".3f")],
        notes=["CNN widths (16, 32), hidden 128, ReLU, SGD momentum 0.9; 'stride-2 conv' has the "
               "convolutions at stride 2 and no pooling layer; sensitivities are measured on "
               f"{IMAGES} test images after training."],
        plots=draw(session, results, metrics, tuple(sorted(c.shifts))))


STUDY = study.Study(
    name="pooling",
    description="Max pooling vs average pooling vs stride-2 convolution, same depth: invariance "
                "to small shifts, rotations and scale; overfitting.",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
