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


# ---- per-class scores from a confusion matrix -------------------------------------


def _check_confusion(confusion, name: str) -> jax.Array:
    confusion = jnp.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.shape[0] < 1:
        raise ValueError(
            f"{name}: confusion has shape {tuple(confusion.shape)}: expected (C, C) counts, "
            "entry [i, j] = examples of true class i predicted as j (see confusion_matrix)"
        )
    return confusion


def _ratio(num, den) -> jax.Array:
    """num / den per entry, 0 where den == 0 (scikit-learn's zero_division=0)."""
    num, den = num.astype(jnp.float32), den.astype(jnp.float32)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def scores_from_confusion(confusion) -> dict[str, jax.Array]:
    """Per-class precision, recall, F1 and support from a (C, C) confusion matrix.

    With tp = confusion[c, c], fp = sum of column c minus tp, fn = sum of row c minus tp:

        precision[c] = tp / (tp + fp)     recall[c] = tp / (tp + fn)
        f1[c] = 2 tp / (2 tp + fp + fn)   (the harmonic mean of precision and recall)
        support[c] = tp + fn              (examples whose label is c)

    A ratio whose denominator is 0 (a class never predicted, or never a label) is 0,
    as scikit-learn's `zero_division=0`. Returns float32 (C,) arrays under "precision",
    "recall", "f1" and an int32 (C,) array under "support".
    """
    confusion = _check_confusion(confusion, "scores_from_confusion")
    tp = jnp.diagonal(confusion)
    predicted = jnp.sum(confusion, axis=0)  # tp + fp
    actual = jnp.sum(confusion, axis=1)  # tp + fn
    return {
        "precision": _ratio(tp, predicted),
        "recall": _ratio(tp, actual),
        "f1": _ratio(2 * tp, predicted + actual),
        "support": actual.astype(jnp.int32),
    }


def macro_average(per_class, confusion) -> jax.Array:
    """The unweighted mean of a (C,) per-class score over the classes that occur.

    A class occurs when it is the label or the prediction of at least one example
    (its row or column of the (C, C) `confusion` is not all 0): the classes
    scikit-learn averages over by default. Classes that occur nowhere (e.g. the unused
    outputs of a model with more outputs than the data has classes) are left out
    rather than counted as 0. Returns a float32 scalar (0 if no class occurs).
    """
    confusion = _check_confusion(confusion, "macro_average")
    per_class = jnp.asarray(per_class)
    if per_class.shape != confusion.shape[:1]:
        raise ValueError(
            f"macro_average: per_class has shape {tuple(per_class.shape)} for a confusion "
            f"matrix of shape {tuple(confusion.shape)}: expected ({confusion.shape[0]},)"
        )
    occurs = (jnp.sum(confusion, axis=0) + jnp.sum(confusion, axis=1)) > 0
    total = jnp.sum(jnp.where(occurs, per_class.astype(jnp.float32), 0.0))
    return _ratio(total, jnp.sum(occurs))


def precision(logits, labels, num_classes: int | None = None) -> jax.Array:
    """(C,) per-class precision tp / (tp + fp): of the examples predicted as c (arg-max
    of the (N, C) logits), the fraction whose label is c; 0 for a class never predicted."""
    return scores_from_confusion(confusion_matrix(logits, labels, num_classes))["precision"]


def recall(logits, labels, num_classes: int | None = None) -> jax.Array:
    """(C,) per-class recall tp / (tp + fn): of the examples labelled c, the fraction
    predicted as c (arg-max of the (N, C) logits); 0 for a class that is no label."""
    return scores_from_confusion(confusion_matrix(logits, labels, num_classes))["recall"]


def f1(logits, labels, num_classes: int | None = None) -> jax.Array:
    """(C,) per-class F1 = 2 tp / (2 tp + fp + fn), the harmonic mean of precision and
    recall, from (N, C) logits and (N,) or (N, C) labels; 0 for a class that occurs nowhere."""
    return scores_from_confusion(confusion_matrix(logits, labels, num_classes))["f1"]


__all__ = [
    "accuracy", "class_indices", "confusion_matrix", "correct", "f1", "macro_average",
    "precision", "recall", "scores_from_confusion", "top_k_accuracy",
]
