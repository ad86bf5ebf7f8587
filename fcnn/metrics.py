"""Classification metrics on logits, as jnp functions usable inside a jitted step.

`labels` are class indices (N,) or one-hot / probability rows (N, C); `logits` are
(N, C). Every function here is pure and returns device arrays: nothing is pulled
to the host until it is displayed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check(logits, labels, name: str):
    if logits.ndim != 2:
        raise ValueError(
            f"{name}: logits has shape {tuple(logits.shape)}: expected (batch, classes)"
        )
    if labels.ndim not in (1, 2) or labels.shape[0] != logits.shape[0] or (
        labels.ndim == 2 and labels.shape[1] != logits.shape[1]
    ):
        raise ValueError(
            f"{name}: labels has shape {tuple(labels.shape)} for logits of shape "
            f"{tuple(logits.shape)}: expected ({logits.shape[0]},) class indices or "
            f"({logits.shape[0]}, {logits.shape[1]}) one-hot rows"
        )


def class_indices(labels) -> jax.Array:
    """(N,) int class indices from (N,) indices or (N, C) one-hot rows (arg-max)."""
    labels = jnp.asarray(labels)
    return jnp.argmax(labels, axis=-1) if labels.ndim == 2 else labels


def correct(logits, labels) -> jax.Array:
    """(N,) bool: whether argmax(logits) equals the label, per example."""
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    _check(logits, labels, "correct")
    return jnp.argmax(logits, axis=-1) == class_indices(labels)


def accuracy(logits, labels) -> jax.Array:
    """Fraction of examples whose arg-max logit is the label: mean(argmax(z) == y)."""
    return jnp.mean(correct(logits, labels).astype(jnp.float32))


def top_k_accuracy(logits, labels, k: int = 5) -> jax.Array:
    """Fraction of examples whose label is among the k largest logits."""
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    _check(logits, labels, "top_k_accuracy")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= logits.shape[-1]:
        raise ValueError(f"k={k!r}: expected an int in [1, {logits.shape[-1]}] (the classes)")
    top = jax.lax.top_k(logits, k)[1]
    hit = jnp.any(top == class_indices(labels)[:, None], axis=-1)
    return jnp.mean(hit.astype(jnp.float32))


def confusion_matrix(logits, labels, num_classes: int | None = None) -> jax.Array:
    """(C, C) int32 counts: entry [i, j] = examples of true class i predicted as j.

    C is `num_classes`, by default the number of columns of `logits`; a larger C
    leaves room for classes the logits do not cover (their columns stay 0).
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    _check(logits, labels, "confusion_matrix")
    classes = logits.shape[-1]
    if num_classes is None:
        num_classes = classes
    elif not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < classes:
        raise ValueError(
            f"confusion_matrix: num_classes={num_classes!r}: expected an int >= {classes}, "
            f"the {classes} classes of logits of shape {tuple(logits.shape)} (or None)"
        )
    flat = class_indices(labels) * num_classes + jnp.argmax(logits, axis=-1)
    counts = jnp.zeros((num_classes * num_classes,), jnp.int32).at[flat].add(1)
    return counts.reshape(num_classes, num_classes)
