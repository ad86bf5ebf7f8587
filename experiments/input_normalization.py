"""Study 12: input normalization: raw pixels, scalings, nonlinear maps and whitening.

    python -m experiments.input_normalization [--inputs raw,standardized,zca-whitened]

The reference CNN trained on the same pixels prepared in different ways, with the
same learning rate; every statistic is fitted on the training split only:

    raw           the pixel values (0..16 for the digits, 0..255 for MNIST and CIFAR-10)
    minmax        x' = (x - min) / (max - min) per channel, in [0, 1] (all positive)
    standardized  z = (x - mean) / std per channel (zero-centred)
    log1p         log(1 + x) / log(1 + max) of the raw values, in [0, 1]
    logistic      1 / (1 + exp(-z)) of the standardized value, in (0, 1)
    arctan        (2 / pi) arctan(z), in (-1, 1)
    pca-whitened  (Lambda + eps)^-1/2 U^T (x - mu) of the standardized pixels as one
                  vector (U Lambda U^T their covariance), laid out on the image grid
                  (component k at pixel k: no longer an image)
    zca-whitened  U (Lambda + eps)^-1/2 U^T (x - mu): whitened, and still an image

(eps = --whiten-eps times the mean eigenvalue keeps the near-zero-variance
directions from being blown up.) Measured: steps to a smoothed training error of 10%,
final test accuracy, divergence.

The zig-zag argument of the notes: a unit y = f(w . x) receives dL/dw = f' x per
example, so when every x_i > 0 all of a unit's weight gradients have the sign of f'
and the weights can only move all up or all down together (a zig-zag path to a
target needing mixed signs). Measured by a probe on a held-out batch at
initialisation and every quarter epoch: for the first weight layer, per unit, the
share of its incoming weight-gradient entries (non-zero ones) with the unit's majority
sign (1.0 = all one sign, about 0.5 = mixed), per example (the argument as stated)
and for the held-out batch's summed gradient (the notes add that summing over a
batch mitigates it). It is measured on an MLP (the notes' fully connected unit, fed
the pixels) for raw, [0, 1] and standardized inputs, which carries the claims, and on
the CNN of every input (the first convolution, whose gradient also sums over
positions; once per epoch), reported in the table.

Expected time with the defaults: digits about 5 minutes; MNIST about 15-20 minutes on
2 CPU cores (8 CNN inputs and 3 MLPs, 3 seeds, 3 epochs; estimated from the CNN's 12 s
per epoch and seed there, not run); CIFAR-10 (5 epochs, whitening of 3072-pixel
vectors) about 30-40 minutes, also an estimate.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from fcnn import cli, program
from fcnn.data import Split
from fcnn.models import mlp, refnet

from experiments.core import claims, plots, probes, report, study
from experiments.core.study import option
from experiments.core.training import Variant

# The training error the speed claims are timed to; CIFAR-10's refnet stays above 25% in 5 epochs.
TARGET, TARGET_BY_DATASET = 0.10, {"cifar10": 0.5}
WIDTHS, HIDDEN = (16, 32), 128
# What each input is computed from (a load_dataset normalization) and the transform
# applied to the loaded arrays (None: the loaded arrays as they are).
LINEAR = {"raw": None, "minmax": "minmax", "standardized": "standardize"}
NONLINEAR = ("log1p", "logistic", "arctan")
WHITENED = ("pca-whitened", "zca-whitened")
INPUTS = (*LINEAR, *NONLINEAR, *WHITENED)
QUICK_INPUTS = ("raw", "standardized", "zca-whitened")
# The sign probe's MLP inputs: all positive, and zero-centred.
ALL_POSITIVE, ZERO_CENTRED = ("raw", "minmax"), ("standardized",)
SIGN_INPUTS = (*ALL_POSITIVE, *ZERO_CENTRED)
MLP_WIDTH = 128
# "Near 1" and "near 0.5" are told apart at their midpoint.
SIGN_MIDPOINT = 0.75
WHITEN_CHUNK = 4096


@dataclass(frozen=True)
class Config(study.Config):
    inputs: tuple[str, ...] = option(INPUTS, quick=QUICK_INPUTS, choices=INPUTS,
                                     help="input preparations the CNN is trained on")
    sign_inputs: tuple[str, ...] = option(SIGN_INPUTS, quick=("raw", "standardized"), choices=SIGN_INPUTS,
                                          help="inputs of the MLP whose first-layer gradient signs are "
                                               "probed (the zig-zag claims)")
    whiten_eps: float = option(0.1, help="whitening regularizer eps, as a fraction of the mean "
                                         "eigenvalue of the pixel covariance")
    target: float = option(TARGET, per_dataset=TARGET_BY_DATASET, parse=cli.fraction,
                           help="training error the speed claims are timed to")


# ---------------------------------------------------------------------------------
# The input transforms (fitted on the training split, applied to every split)


def map_splits(ds, fn: Callable[[np.ndarray], np.ndarray]):
    """`ds` with `fn` applied to the images of every split (float32), no normalization."""
    def split(s):
        return None if s is None else Split(np.asarray(fn(s.images), np.float32), s.labels)

    return dataclasses.replace(ds, train=split(ds.train), validation=split(ds.validation),
                               test=split(ds.test), normalization=None)


def log1p_scaling(raw_train: np.ndarray) -> Callable:
    """x -> log(1 + x) / log(1 + max) per channel, max over the training pixels (x >= 0)."""
    top = np.log1p(raw_train.reshape(-1, raw_train.shape[-1]).max(axis=0)).astype(np.float32)
    top = np.where(top > 0, top, 1.0).reshape((1,) * (raw_train.ndim - 1) + (-1,))
    return lambda x: np.log1p(np.maximum(x, 0)) / top


def logistic(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), written with tanh so that no exp overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def arctan(z: np.ndarray) -> np.ndarray:
    """(2 / pi) arctan(z), in (-1, 1)."""
    return (2.0 / math.pi) * np.arctan(z)


def fit_whitening(train: np.ndarray, kind: str, eps_fraction: float) -> Callable:
    """The PCA or ZCA whitening map fitted on training images (N, H, W, C).

    With mu the mean and U Lambda U^T the covariance of the images as vectors (D =
    H W C), PCA: x -> (Lambda + eps)^-1/2 U^T (x - mu), components in decreasing order
    of variance; ZCA: U (Lambda + eps)^-1/2 U^T (x - mu), the whitened vector rotated
    back to pixel space. eps = eps_fraction * mean(Lambda). Returns images -> images.
    """
    n, shape = train.shape[0], train.shape[1:]
    flat = train.reshape(n, -1)
    mean = flat.mean(axis=0, dtype=np.float64)
    cov = np.zeros((flat.shape[1],) * 2)
    for start in range(0, n, WHITEN_CHUNK):
        centred = flat[start:start + WHITEN_CHUNK].astype(np.float64) - mean
        cov += centred.T @ centred
    eigvals, eigvecs = np.linalg.eigh(cov / max(n - 1, 1))
    eigvals, eigvecs = np.maximum(eigvals[::-1], 0.0), eigvecs[:, ::-1]
    eps = eps_fraction * max(float(eigvals.mean()), 1e-12)
    matrix = eigvecs / np.sqrt(eigvals + eps)  # x_row @ matrix = (Lambda + eps)^-1/2 U^T x
    if kind == "zca":
        matrix = matrix @ eigvecs.T
    matrix, mean = matrix.astype(np.float32), mean.astype(np.float32)

    def whiten(images):
        rows = images.reshape(images.shape[0], -1)
        out = np.concatenate([(rows[s:s + WHITEN_CHUNK] - mean) @ matrix
                              for s in range(0, rows.shape[0], WHITEN_CHUNK)] or [rows])
        return out.reshape((-1,) + shape)

    return whiten


def derive(name: str, data, eps_fraction: float):
    """The dataset of input `name`, from the loaded ones (statistics of the training split)."""
    if name == "log1p":
        raw = data.get(None)
        return map_splits(raw, log1p_scaling(raw.train.images))
    z = data.get("standardize")
    if name in ("logistic", "arctan"):
        return map_splits(z, logistic if name == "logistic" else arctan)
    return map_splits(z, fit_whitening(z.train.images, name.split("-")[0], eps_fraction))


def source_of(name: str):
    """The Variant.normalize key of input `name`."""
    return LINEAR[name] if name in LINEAR else name


# ---------------------------------------------------------------------------------
# The sign probe


def sign_shares(grad):
    """(sum over units of the majority-sign share, number of units counted) of a
    kernel gradient (..., units); a unit counts when it has a non-zero entry."""
    g = grad.reshape(-1, grad.shape[-1])
    pos, neg = jnp.sum(g > 0, axis=0), jnp.sum(g < 0, axis=0)
    live = pos + neg > 0
    share = jnp.maximum(pos, neg) / jnp.maximum(pos + neg, 1)
    return jnp.sum(jnp.where(live, share, 0.0)), jnp.sum(live)


def _ratio(total, count):
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan)


def _with_kernel(tree, path, kernel):
    if not path:
        return dict(tree, kernel=kernel)
    return dict(tree, **{path[0]: _with_kernel(tree[path[0]], path[1:], kernel)})


def sign_probe(model, loss_fn):
    """Probe: sign agreement of the first weight layer's kernel gradient, per unit.

    "sign/example": mean over the batch's examples and the units of the share of a
    unit's non-zero gradient entries with its majority sign (one example's gradient);
    "sign/batch": the same share for the gradient of the mean loss over the batch.
    """

    def probe(params, state, images, labels):
        path = tuple(next(iter(probes.weight_layers(params))).split("/"))
        kernel = params
        for key in path:
            kernel = kernel[key]
        kernel = kernel["kernel"]

        def loss(k, x, y):
            return loss_fn(model.apply(_with_kernel(params, path, k), state, x, train=False)[0], y)

        batch = sign_shares(jax.grad(loss)(kernel, images, labels))
        each = jax.vmap(lambda x, y: sign_shares(jax.grad(loss)(kernel, x[None], y[None])))(images, labels)
        return {"sign/batch": _ratio(*batch),
                "sign/example": _ratio(jnp.sum(each[0]), jnp.sum(each[1]))}

    return probe


def sign_metrics(result) -> dict:
    """Per seed: the sign agreements at initialisation and averaged over training."""
    out = {}
    for kind in ("example", "batch"):
        values = result.probes.get(f"sign/{kind}")
        out[f"sign_{kind}_init"] = probes.probe_at(result, f"sign/{kind}", 0)
        with np.errstate(all="ignore"):
            out[f"sign_{kind}_train"] = (
                [None] * len(result.seeds) if values is None or values.shape[1] < 2 else
                [float(np.nanmean(row[1:])) if np.any(np.isfinite(row[1:])) else None for row in values])
    return out


def mlp_name(name: str) -> str:
    return f"mlp {name}"


# ---------------------------------------------------------------------------------
# Claims


def _target_key(f: claims.Findings) -> str:
    return report.target_key(f.facts.get("target", TARGET))


def _faster_than_raw(f: claims.Findings) -> claims.Judgement:
    return claims.faster(f.table, ["standardized"], ["raw"], _target_key(f), f.facts["budget"])


def _sign_parts(f: claims.Findings, names, metric, judge):
    """Judgements of `judge(label, values)` for the measured variants among `names`."""
    parts, labels, missing = [], [], []
    for name in names:
        values = claims.get(f.table, mlp_name(name), metric)
        if claims.mean(values) is None:
            missing.append(mlp_name(name))
            continue
        parts.append(judge(mlp_name(name), values))
        labels.append(mlp_name(name))
    return parts, labels, missing


def _one_signed(f: claims.Findings) -> claims.Judgement:
    """All-positive inputs: per-example agreement near 1 (above the midpoint); zero-
    centred: near 0.5 (below it) and below every all-positive one beyond the spread;
    at initialisation and over training."""
    parts, labels, missing = [], [], []
    for when in ("init", "train"):
        metric = f"sign_example_{when}"
        pos, pos_labels, pos_missing = _sign_parts(
            f, ALL_POSITIVE, metric, lambda n, v: claims.within(n, v, SIGN_MIDPOINT, 1.0))
        zero, zero_labels, zero_missing = _sign_parts(
            f, ZERO_CENTRED, metric, lambda n, v: claims.within(n, v, 0.5, SIGN_MIDPOINT))
        missing += [f"{n} ({when})" for n in pos_missing + zero_missing]
        if not pos or not zero:
            continue
        parts += pos + zero
        labels += [f"{n} {when}" for n in pos_labels + zero_labels]
        for p in pos_labels:
            for z in zero_labels:
                parts.append(claims.smaller(z, claims.get(f.table, z, metric), p, claims.get(f.table, p, metric)))
                labels.append(f"{z} < {p} {when}")
    if not parts:
        return claims.Judgement(claims.INCONCLUSIVE, "per-example sign agreement of an all-positive and a "
                                                     "zero-centred MLP not both measured")
    j = claims.every(parts, labels)
    if missing:
        return claims.Judgement(j.status, j.evidence + f"; not measured: {', '.join(missing)}", j.numbers)
    return j


def _batch_mitigates(f: claims.Findings) -> claims.Judgement:
    """All-positive inputs: the batch gradient's agreement below the per-example one."""
    parts, labels = [], []
    for name in ALL_POSITIVE:
        row = mlp_name(name)
        for when in ("init", "train"):
            batch = claims.get(f.table, row, f"sign_batch_{when}")
            each = claims.get(f.table, row, f"sign_example_{when}")
            if claims.mean(batch) is None or claims.mean(each) is None:
                continue
            parts.append(claims.smaller("batch", batch, "per example", each))
            labels.append(f"{row} {when}")
    if not parts:
        return claims.Judgement(claims.INCONCLUSIVE, "no all-positive MLP measured")
    return claims.every(parts, labels)


def _each(f: claims.Findings, names, judge) -> claims.Judgement:
    present = [n for n in names if n in f.table]
    if not present:
        return claims.Judgement(claims.INCONCLUSIVE, f"none of {', '.join(names)} measured")
    return claims.every([judge(n) for n in present], present)


def _whitening_speed(f: claims.Findings) -> claims.Judgement:
    return _each(f, WHITENED, lambda n: claims.faster(f.table, [n], ["standardized"], _target_key(f),
                                                      f.facts["budget"]))


def _whitening_accuracy(f: claims.Findings) -> claims.Judgement:
    acc = lambda n: claims.get(f.table, n, "test_accuracy")  # noqa: E731
    return _each(f, WHITENED, lambda n: claims.smaller("standardized", acc("standardized"), n, acc(n)))


def _nonlinear_speed(f: claims.Findings) -> claims.Judgement:
    return _each(f, NONLINEAR, lambda n: claims.faster(f.table, [n], ["raw"], _target_key(f),
                                                       f.facts["budget"]))


def _nonlinear_accuracy(f: claims.Findings) -> claims.Judgement:
    acc = lambda n: claims.get(f.table, n, "test_accuracy")  # noqa: E731
    return _each(f, NONLINEAR, lambda n: claims.smaller("raw", acc("raw"), n, acc(n)))


def _needs_budget(judge):
    """A check reading f.facts["budget"]; inconclusive when the study gave none."""
    def guarded(f: claims.Findings) -> claims.Judgement:
        if "budget" not in f.facts:
            return claims.Judgement(claims.INCONCLUSIVE, "no step budget recorded")
        return judge(f)
    return guarded


CLAIMS = (
    claims.Claim("standardized inputs converge faster than raw pixels", _needs_budget(_faster_than_raw)),
    claims.Claim("with all-positive inputs (raw, [0, 1]) each first-layer unit's weight gradient has one "
                 "sign per example (sign agreement near 1), with zero-centred (standardized) inputs mixed "
                 "signs (near 0.5)", _one_signed),
    claims.Claim("summing over a batch mitigates it: with all-positive inputs the batch gradient's sign "
                 "agreement is lower than one example's", _batch_mitigates),
    claims.Claim("whitening (PCA, ZCA) converges at least as fast as standardization",
                 _needs_budget(_whitening_speed)),
    claims.Claim("whitening (PCA, ZCA) reaches at least the test accuracy of standardization",
                 _whitening_accuracy),
    claims.Claim("the nonlinear normalizations (log(1 + x), logistic, arctan) converge faster than raw pixels",
                 _needs_budget(_nonlinear_speed)),
    claims.Claim("the nonlinear normalizations (log(1 + x), logistic, arctan) reach a higher test accuracy "
                 "than raw pixels", _nonlinear_accuracy),
)


# ---------------------------------------------------------------------------------
# The study


def run(session: study.Session) -> study.Outcome:
    c = session.config
    for name in (*NONLINEAR, *WHITENED):
        session.data.derive(name, lambda data, name=name: derive(name, data, c.whiten_eps))
    num_classes = session.data.get().num_classes
    # the CNN's sign probe (reported, no claim) once per epoch; left out with --quick
    cnn = [Variant(name=n, model=refnet(num_classes, "relu", widths=WIDTHS, hidden=HIDDEN),
                   normalize=source_of(n), probe=None if c.quick else sign_probe,
                   probe_every=session.data.get(source_of(n)).train.labels.shape[0] // c.batch_size,
                   info={"input": n}) for n in c.inputs]
    nets = [Variant(name=mlp_name(n), model=mlp(num_classes, "relu", width=MLP_WIDTH), normalize=source_of(n),
                    probe=sign_probe, info={"input": n, "sign_probe": True}) for n in c.sign_inputs]
    results = session.train(cnn + nets, targets=(c.target,))
    metrics = {name: sign_metrics(r) for name, r in results.items()}
    first = {n: probes.weight_layers(jax.tree.map(lambda a: a[0], r.params)) for n, r in results.items()}
    layer_of = {n: next(iter(labels.values())) for n, labels in first.items()}
    fig, axes = plots.figure(1, 2)
    for ax, kind in zip(axes, ("example", "batch")):
        for i, (name, r) in enumerate(results.items()):
            if f"sign/{kind}" in r.probes:
                plots.band(ax, r.probe_steps, r.probes[f"sign/{kind}"], label=f"{name} ({layer_of[name]})",
                           index=i, linestyle="-" if name.startswith("mlp ") else "--")
        ax.axhline(0.5, color="black", linestyle=":", linewidth=0.8)
        plots.finish(ax, xlabel="training step", ylabel="share of a unit's gradient entries with its sign",
                     title=f"first-layer gradient sign agreement ({'per example' if kind == 'example' else 'held-out batch'})",
                     legend=ax is axes[0], legend_cols=2)
    fig.suptitle(f"input_normalization: the zig-zag argument ({c.dataset}; 1 = one sign, 0.5 = mixed)")
    sign_plot = (plots.save(fig, session.path("sign_agreement.png")),
                 "first-layer weight-gradient sign agreement vs step")
    return study.Outcome(
        metrics=metrics,
        columns=[report.steps_to_column(c.target), report.TEST_ACCURACY, report.FINAL_TRAIN_LOSS, report.DIVERGED,
                 report.Column("sign_example_init", "sign/example init", ".3f"),
                 report.Column("sign_example_train", "sign/example training", ".3f"),
                 report.Column("sign_batch_init", "sign/batch init", ".3f"),
                 report.Column("sign_batch_train", "sign/batch training", ".3f")],
        facts={"budget": max(r.total_steps for r in results.values()), "target": c.target},
        notes=[f"refnet widths {WIDTHS}, hidden {HIDDEN} for every input; the sign probe's MLP: 2 x "
               f"{MLP_WIDTH} ReLU units. SGD momentum 0.9, lr {c.lr:g} for all; statistics from the "
               f"training split; whitening eps {c.whiten_eps:g} x the mean eigenvalue.",
               "sign agreement: per unit of the first weight layer, the share of its non-zero kernel-gradient "
               "entries with its majority sign, on the held-out probe batch; 'init' at initialisation, "
               "'training' the mean over the later probe points (MLP: every quarter epoch; CNN: every "
               "epoch). For the MLP (dense) the per-example "
               "gradient is f' x, so its signs are the input's; a convolution's sums over positions. "
               f"'near 1' / 'near 0.5' are told apart at {SIGN_MIDPOINT:g}; random signs on n entries give "
               "about 0.5 + 1/sqrt(2 pi n) (0.63 for a 3x3 kernel)."],
        plots=[plots.training_error(session.path("train_error.png"), results, targets=(c.target,),
                                    study="input_normalization", dataset=c.dataset), sign_plot])


STUDY = study.Study(
    name="input_normalization",
    description="Raw pixels vs [0, 1] scaling vs standardized vs nonlinear maps vs PCA/ZCA whitening: "
                "convergence speed, accuracy, and the sign of the first layer's gradient (zig-zag).",
    config=Config, claims=CLAIMS, run=run,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
