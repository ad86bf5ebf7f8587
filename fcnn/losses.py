"""Losses and penalties: `loss(predictions, targets) -> scalar`, each a `jax.custom_vjp`.

Reductions (n = the batch size, the length of axis 0; 1 for a scalar):

    half_squared_error                 (1/n) sum 1/2 (t - o)^2      sum over units, mean over batch
    mean_squared_error                 mean (o - t)^2               mean over every element
    binary_cross_entropy_with_logits   (1/n) sum BCE(z, y)          sum over outputs, mean over batch
    softmax_cross_entropy              (1/n) sum -t . log p         mean over every leading position
                                       (t = y, or smoothed: (1 - eps) y + eps / K)
    center_loss                        1/2 sum_i ||x_i - c_y_i||^2  sum over the batch (as the notes)
    l1_penalty, l2_penalty             sum |w|, 1/2 sum w^2         sum over every leaf

Every function takes `backward="custom"` (the hand-derived rule) or "autodiff".
Label checks (range of integer labels, [0, 1] for binary targets) run only when the
labels are concrete, i.e. outside `jax.jit`; shapes and dtypes are always checked.
Derivations: docs/derivations/activations_losses.md.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fcnn.ops.hand_rule import hand_rule
from fcnn.ops.activations import as_float, log_softmax, softplus

LABELS_UNDER_JIT = (
    "under jax.jit the values are not checked: an out-of-range integer label gives an "
    "all-zero one-hot row, so that example adds 0 to the loss and to the gradient"
)


def _batch_size(shape) -> int:
    return shape[0] if shape else 1


def _values(x):
    """x as a NumPy array when its values are known, None under tracing."""
    return None if isinstance(x, jax.core.Tracer) else np.asarray(x)


def _same_shape(a, b, what: str, names=("predictions", "targets")):
    if a.shape != b.shape:
        raise ValueError(
            f"{what}: {names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}; "
            "they must match exactly (no broadcasting: a (n, 1) against (n,) mismatch "
            "would silently build an (n, n) loss)"
        )


def _check_int_labels(labels, num_classes: int, what: str, name: str = "labels"):
    values = _values(labels)
    if values is not None and values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)]
        raise ValueError(
            f"{what}: {name} must be class indices in [0, {num_classes}), got "
            f"{bad.ravel()[:5].tolist()} ({LABELS_UNDER_JIT})"
        )


# Half squared error, the notes' E = sum 1/2 (t - o)^2, per example:
# dE/do = (o - t)/n,  dE/dt = (t - o)/n.
def _hse_plain(o, t):
    return 0.5 * jnp.sum((t - o) ** 2) / _batch_size(o.shape)


def _hse_fwd(o, t):
    return _hse_plain(o, t), (o, t)


def _hse_bwd(res, g):
    o, t = res
    d = (g / _batch_size(o.shape)) * (o - t)
    return d, -d


_HSE = hand_rule("half_squared_error", _hse_plain, _hse_fwd, _hse_bwd)


def half_squared_error(predictions, targets, *, backward: str = "custom") -> jax.Array:
    """E = (1/n) sum_examples sum_units 1/2 (target - output)^2; dE/do = (o - t)/n.

    Shapes: predictions and targets (n, ...) of equal shape -> scalar. For one example
    this is the notes' E_total = sum 1/2 (target - output)^2.
    """
    o, t = as_float(predictions), as_float(targets)
    _same_shape(o, t, "half_squared_error")
    return _HSE.select(backward)(o, t)


# Mean squared error over all m elements: dL/do = 2 (o - t)/m,  dL/dt = -dL/do.
def _mse_plain(o, t):
    return jnp.mean((o - t) ** 2)


def _mse_fwd(o, t):
    return _mse_plain(o, t), (o, t)


def _mse_bwd(res, g):
    o, t = res
    d = (2 * g / max(o.size, 1)) * (o - t)
    return d, -d


_MSE = hand_rule("mean_squared_error", _mse_plain, _mse_fwd, _mse_bwd)


def mean_squared_error(predictions, targets, *, backward: str = "custom") -> jax.Array:
    """L = mean over every element of (o - t)^2; dL/do = 2 (o - t) / size.

    Shapes: predictions and targets of equal shape -> scalar.
    """
    o, t = as_float(predictions), as_float(targets)
    _same_shape(o, t, "mean_squared_error")
    return _MSE.select(backward)(o, t)


# Binary cross-entropy from logits z with sigma = sigmoid:
#   -[y log sigma(z) + (1 - y) log(1 - sigma(z))] = max(z, 0) - z y + log1p(e^-|z|),
# dC/dz = (sigma(z) - y)/n (the sigma'(z) of the chain rule cancels), dC/dy = -z/n.
def _bce_plain(z, y):
    # softplus(z) = max(z, 0) + log1p(e^-|z|), written with `where` (the softplus op's
    # plain forward): autodiff of max and |.| at z = 0 would give 1/2 - 1 instead of
    # sigma(0) = 1/2, a wrong gradient of a smooth function.
    return jnp.sum(softplus(z, backward="autodiff") - z * y) / _batch_size(z.shape)


def _bce_fwd(z, y):
    return _bce_plain(z, y), (z, y)


def _bce_bwd(res, g):
    z, y = res
    scale = g / _batch_size(z.shape)
    return scale * (lax.logistic(z) - y), -scale * z


_BCE = hand_rule("binary_cross_entropy", _bce_plain, _bce_fwd, _bce_bwd)


def binary_cross_entropy_with_logits(logits, labels, *, backward: str = "custom") -> jax.Array:
    """C = -(1/n) sum [y log sigma(z) + (1 - y) log(1 - sigma(z))], from logits z.

    Shapes: logits (n, ...) and labels of the same shape, labels in [0, 1] (float,
    int or bool) -> scalar; sum over outputs, mean over the batch. Computed as
    max(z, 0) - z y + log1p(e^-|z|), finite for any z. dC/dz = (sigma(z) - y)/n.
    """
    z = as_float(logits)
    y = jnp.asarray(labels)
    if not (jnp.issubdtype(y.dtype, jnp.number) or y.dtype == jnp.bool_) or jnp.issubdtype(
        y.dtype, jnp.complexfloating
    ):
        raise TypeError(f"binary_cross_entropy_with_logits: labels of dtype {y.dtype}: expected real numbers in [0, 1]")
    _same_shape(z, y, "binary_cross_entropy_with_logits", ("logits", "labels"))
    values = _values(y)
    if values is not None and values.size and (values.min() < 0 or values.max() > 1):
        raise ValueError(
            "binary_cross_entropy_with_logits: labels must lie in [0, 1] (targets or "
            f"probabilities), got values in [{values.min()}, {values.max()}]"
        )
    return _BCE.select(backward)(z, y.astype(z.dtype))


# Softmax cross-entropy with label distribution y, smoothed with eps towards the
# uniform distribution (Szegedy et al., 2016; optax.smooth_labels, PyTorch's and
# Keras's label_smoothing): t = (1 - eps) y + eps m / K, m = 1 for float labels and
# for in-range class indices (m = 0 keeps the all-zero row of an out-of-range label):
#   C = -(1/n) sum_i sum_k t_ik log p_ik,  p = softmax(z),
# dC/dz = (p sum_k t - t)/n = (p - t)/n for a distribution t;  dC/dy = -(1 - eps) log p / n;
# dC/deps = (1/n) sum (y - m/K) log p.
def _smoothed(y, eps, m):
    return (1 - eps) * y + eps * m / y.shape[-1]


def _sce_plain(z, y, eps, m):
    logp = log_softmax(z, axis=-1, backward="autodiff")
    return -jnp.sum(_smoothed(y, eps, m) * logp) / max(z.size // z.shape[-1], 1)


def _sce_fwd(z, y, eps, m):
    shift = z - lax.stop_gradient(z.max(axis=-1, keepdims=True))
    logp = shift - jnp.log(jnp.exp(shift).sum(axis=-1, keepdims=True))
    t = _smoothed(y, eps, m)
    return -jnp.sum(t * logp) / max(z.size // z.shape[-1], 1), (logp, y, eps, m)


def _sce_bwd(res, g):
    logp, y, eps, m = res
    scale = g / max(logp.size // logp.shape[-1], 1)
    t = _smoothed(y, eps, m)
    dz = scale * (jnp.exp(logp) * t.sum(axis=-1, keepdims=True) - t)
    deps = scale * jnp.sum((y - m / y.shape[-1]) * logp)
    return dz, -(1 - eps) * scale * logp, deps, None


_SCE = hand_rule("softmax_cross_entropy", _sce_plain, _sce_fwd, _sce_bwd)

LABEL_SMOOTHING_HELP = (
    "expected a number in [0, 1]: the weight of the uniform distribution in the "
    "targets (1 - eps) * onehot + eps / K; 0 turns smoothing off"
)


def _check_label_smoothing(eps):
    """A known smoothing must be a number in [0, 1]; a traced one passes (vmap over it)."""
    if isinstance(eps, jax.core.Tracer):
        return eps
    if isinstance(eps, (jax.Array, np.ndarray)) and not isinstance(eps, (bool, np.bool_)):
        if np.ndim(eps) != 0 or not jnp.issubdtype(eps.dtype, jnp.floating):
            raise ValueError(
                f"label_smoothing has shape {np.shape(eps)} and dtype {eps.dtype}: "
                f"{LABEL_SMOOTHING_HELP}")
        value = float(eps)
    else:
        value = eps
    ok = (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and math.isfinite(value) and 0 <= value <= 1)
    if not ok:
        raise ValueError(f"label_smoothing={eps!r}: {LABEL_SMOOTHING_HELP}")
    return eps


def softmax_cross_entropy(logits, labels, label_smoothing=0.0, *,
                          backward: str = "custom") -> jax.Array:
    """C = -(1/n) sum_i sum_k t_ik log softmax(z_i)_k, from logits; mean over the batch.

    Shapes: logits (n, K) (or (..., K): the mean runs over every leading position);
    labels either integer class indices of shape (n,) / (...), or one-hot (or any
    class distribution) floats of shape (n, K) / (..., K). The targets are the labels
    smoothed towards the uniform distribution,

        t = (1 - label_smoothing) * y + label_smoothing / K

    (Szegedy et al., 2016; optax.smooth_labels, PyTorch's and Keras's
    `label_smoothing`); label_smoothing = 0 (the default) gives t = y, i.e.
    C = -(1/n) sum_i log softmax(z_i)[y_i]. dC/dz = (softmax(z) - t)/n.
    Integer labels must lie in [0, K); this is checked when the labels are concrete,
    and under jax.jit an out-of-range label gives an all-zero target row (also with
    smoothing: the example then contributes 0 to the loss and to the gradient).
    `label_smoothing` is a number in [0, 1] (or a traced scalar, e.g. under vmap).
    """
    z = as_float(logits)
    labels = jnp.asarray(labels)
    what = "softmax_cross_entropy"
    label_smoothing = _check_label_smoothing(label_smoothing)
    if z.ndim < 1:
        raise ValueError(f"{what}: logits is a scalar; expected shape (n, K), classes last")
    k = z.shape[-1]
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if labels.shape != z.shape[:-1]:
            raise ValueError(
                f"{what}: integer labels have shape {labels.shape} but logits have shape "
                f"{z.shape}: expected labels of shape {z.shape[:-1]} (one class index per "
                "example; different batch sizes?)"
            )
        _check_int_labels(labels, k, what)
        y = jax.nn.one_hot(labels, k, dtype=z.dtype)
        mass = y.sum(axis=-1, keepdims=True)  # 0 for an out-of-range label under jit
    elif jnp.issubdtype(labels.dtype, jnp.floating):
        if labels.shape != z.shape:
            raise ValueError(
                f"{what}: one-hot labels have shape {labels.shape} but logits have shape "
                f"{z.shape}: expected the same shape (integer labels would have shape "
                f"{z.shape[:-1]})"
            )
        y = labels.astype(z.dtype)
        mass = jnp.ones(z.shape[:-1] + (1,), z.dtype)
    else:
        raise TypeError(
            f"{what}: labels of dtype {labels.dtype}: expected integer class indices or "
            "float one-hot rows"
        )
    eps = jnp.asarray(label_smoothing, z.dtype)
    return _SCE.select(backward)(z, y, eps, mass)


def _check_center_args(features, labels, centers, what: str):
    if features.ndim != 2 or centers.ndim != 2:
        raise ValueError(
            f"{what}: features has shape {features.shape} and centers {centers.shape}: "
            "expected features (n, d) and centers (num_classes, d)"
        )
    if features.shape[1] != centers.shape[1]:
        raise ValueError(
            f"{what}: features have dimension {features.shape[1]} but centers have "
            f"{centers.shape[1]}: expected the same d"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{what}: labels of dtype {labels.dtype}: expected integer class indices")
    if labels.shape != (features.shape[0],):
        raise ValueError(
            f"{what}: labels have shape {labels.shape} but features have shape "
            f"{features.shape}: expected labels of shape ({features.shape[0]},)"
        )
    _check_int_labels(labels, centers.shape[0], what)


# Center loss L = 1/2 sum_i ||x_i - c_(y_i)||^2:
# dL/dx_i = x_i - c_(y_i),  dL/dc_j = -sum_(i: y_i = j) (x_i - c_j).
def _center_plain(x, c, onehot):
    return 0.5 * jnp.sum((x - onehot @ c) ** 2)


def _center_fwd(x, c, onehot):
    diff = x - onehot @ c
    return 0.5 * jnp.sum(diff * diff), (diff, onehot)


def _center_bwd(res, g):
    diff, onehot = res
    return g * diff, -g * (onehot.T @ diff), None


_CENTER = hand_rule("center_loss", _center_plain, _center_fwd, _center_bwd)


def center_loss(features, labels, centers, *, backward: str = "custom") -> jax.Array:
    """L_C = 1/2 sum_i ||x_i - c_(y_i)||^2 (Wen et al., 2016); a sum over the batch.

    Shapes: features (n, d), integer labels (n,), centers (num_classes, d) -> scalar.
    dL/dx_i = x_i - c_(y_i). The centers are state, not params: train them with
    `update_centers`, not with the gradient (which is still defined, for checks).
    """
    x, c = as_float(features), as_float(centers)
    labels = jnp.asarray(labels)
    _check_center_args(x, labels, c, "center_loss")
    onehot = jax.nn.one_hot(labels, c.shape[0], dtype=jnp.result_type(x, c))
    return _CENTER.select(backward)(x, c, onehot)


def update_centers(centers, features, labels, alpha: float) -> jax.Array:
    """The notes' center update: c_j <- c_j - alpha * delta c_j, with

        delta c_j = sum_i [y_i = j] (c_j - x_i) / (1 + sum_i [y_i = j]).

    Shapes: centers (num_classes, d), features (n, d), integer labels (n,) -> centers.
    Classes absent from the batch keep their center. `alpha` in [0, 1] is the rate.
    """
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        if not (math.isfinite(alpha) and 0 <= alpha <= 1):
            raise ValueError(f"alpha={alpha!r}: expected a center learning rate in [0, 1]")
    elif not isinstance(alpha, jax.Array):
        raise TypeError(f"alpha={alpha!r}: expected a number in [0, 1]")
    c, x = as_float(centers), as_float(features)
    labels = jnp.asarray(labels)
    _check_center_args(x, labels, c, "update_centers")
    onehot = jax.nn.one_hot(labels, c.shape[0], dtype=jnp.result_type(x, c))  # (n, K)
    counts = onehot.sum(axis=0)[:, None]  # (K, 1)
    delta = (counts * c - onehot.T @ x) / (1 + counts)
    return c - alpha * delta


# L1: sum |w|, d/dw = sign(w) (0 at w = 0).  L2: 1/2 sum w^2, d/dw = w.
def _l1_plain(w):
    # |w| = w sign(w), with sign(w) held constant: autodiff then gives sign(w), 0 at
    # w = 0 like the hand rule (autodiff of jnp.abs gives 1 there).
    return jnp.sum(w * lax.stop_gradient(jnp.sign(w)))


def _l1_fwd(w):
    return _l1_plain(w), w


def _l1_bwd(w, g):
    return (g * jnp.sign(w),)


_L1 = hand_rule("l1_penalty", _l1_plain, _l1_fwd, _l1_bwd)


def _l2_plain(w):
    return 0.5 * jnp.sum(w * w)


def _l2_fwd(w):
    return _l2_plain(w), w


def _l2_bwd(w, g):
    return (g * w,)


_L2 = hand_rule("l2_penalty", _l2_plain, _l2_fwd, _l2_bwd)


def _penalty(params, leaf_fn):
    leaves = jax.tree_util.tree_leaves(params)
    return sum((leaf_fn(as_float(w)) for w in leaves), jnp.zeros(()))


def l1_penalty(params, *, backward: str = "custom") -> jax.Array:
    """sum of |w| over every leaf of `params`; gradient sign(w).

    Pass only the arrays to penalise (biases are usually left out). Multiply by the
    strength lambda yourself: loss + lam * l1_penalty(kernels).
    """
    return _penalty(params, _L1.select(backward))


def l2_penalty(params, *, backward: str = "custom") -> jax.Array:
    """1/2 sum of w^2 over every leaf of `params`; gradient w (the 1/2 is for that).

    Adding lam * l2_penalty(kernels) to the loss is weight decay w <- w - lr lam w.
    """
    return _penalty(params, _L2.select(backward))
