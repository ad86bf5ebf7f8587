"""Evaluation over a whole dataset: a model's loss and metrics, and the label check.

    results = evaluate(model, params, state, test, metrics=("loss", "accuracy", "f1"))

`evaluate` is the user's entry point: it checks that every label is a class the
model has (`check_labels`), computes the outputs with `predict` (batched, compiled
once, eval mode) and the chosen metrics of `fcnn.metrics` on them.

The lower level, used by `fit` and the studies, runs a prebuilt eval step:

    batches = eval_batches(images, labels, 256)      # on the device, built once
    metrics = evaluate_batches(eval_step, params, state, batches)

Every batch has the same shape (the last is padded and its padding weighted 0), so
the eval step (`make_eval_step`, or its vmapped population form) compiles once; the
means are weighted by the real examples of each batch. `fit` and the studies prepare
their evaluation sets once and evaluate them after every epoch.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from fcnn import metrics as metrics_lib
from fcnn._checks import positive_int
from fcnn.data.batching import put_global
from fcnn.losses import softmax_cross_entropy
from fcnn.train.inference import check_images, predict
from fcnn.train.parallel import to_host
from fcnn.train.step import _check_loss, _check_model, check_batch_fits, output_shape


def eval_batches(images, labels, batch_size: int = 256, device=None) -> list[tuple]:
    """(images, labels, weights) batches of `min(batch_size, N)` examples on `device`.

    images (N, ...), labels (N,) or (N, C); weights (B,) are 1 for real examples and 0
    for the padding of the last batch.
    """
    batch_size = positive_int(batch_size, "batch_size")
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 0 or images.shape[0] == 0:
        raise ValueError(
            f"evaluate: images has shape {images.shape}: expected (N, ...) with at least "
            "one example"
        )
    n = images.shape[0]
    size = min(batch_size, n)
    batches = []
    for begin in range(0, n, size):
        x, y = images[begin:begin + size], labels[begin:begin + size]
        w = np.ones(x.shape[0], np.float32)
        short = size - x.shape[0]
        if short:
            x = np.concatenate([x, np.zeros((short,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros((short,) + y.shape[1:], y.dtype)])
            w = np.concatenate([w, np.zeros(short, np.float32)])
        batches.append(tuple(put_global(a, device) for a in (x, y, w)))
    return batches


def evaluate_batches(eval_step, params, state, batches) -> dict:
    """Mean "loss" and "accuracy" over `batches` (from `eval_batches`): floats for one
    model, (K,) arrays for a population's vmapped eval step."""
    outs = to_host([eval_step(params, state, batch) for batch in batches])
    counts = np.stack([np.asarray(o["count"], np.float64) for o in outs])
    total = counts.sum(axis=0)

    def mean(key):
        values = np.stack([np.asarray(o[key], np.float64) for o in outs])
        out = (values * counts).sum(axis=0) / total
        return float(out) if out.ndim == 0 else out

    return {"loss": mean("loss"), "accuracy": mean("accuracy")}


def evaluate_step(eval_step, params, state, images, labels, batch_size: int = 256,
                  device=None) -> dict:
    """Mean "loss" and "accuracy" of a prebuilt `eval_step` over (images, labels).

    `eval_step(params, state, (images, labels, weights)) -> metrics`, as built by
    `make_eval_step` (floats) or a population's vmapped eval step ((K,) arrays).
    """
    return evaluate_batches(eval_step, params, state,
                            eval_batches(images, labels, batch_size, device))




# ---------------------------------------------------------------------------------
# The label check: every label must be one of the model's outputs


def check_labels(model, params, images_shape, labels, *, name: str = "labels",
                 logits_only: bool = True) -> int | None:
    """Raises ValueError before any training or evaluation when a label is no class of
    the model; returns the number of model outputs (classes).

    The output width C comes from `jax.eval_shape` of `model.init` on `images_shape`
    (N, ...) (`fcnn.train.step.output_shape`), which must give outputs (N, C).
    `labels` are (N,) integer class indices, which must lie in [0, C), or (N, C)
    one-hot / probability rows. When `params` is not None it must fit images of this
    shape too (`check_batch_fits`).
    The message names both numbers, e.g. "labels range over 0..9 but the model has 5
    outputs", after `name` (e.g. "train_data: "). With `logits_only=False` a model whose
    output is not (N, C) is not checked (None is returned): `fit` trains any objective.
    """
    model = _check_model(model)
    images_shape = tuple(int(d) for d in images_shape)
    try:
        out = output_shape(model, images_shape)
    except (ValueError, TypeError) as err:
        raise ValueError(f"images of shape {images_shape} do not fit the model: {err}") from err
    if len(out) != 2:
        if not logits_only:
            return None
        raise ValueError(
            f"the model maps images of shape {images_shape} to outputs of shape {out}: "
            "expected (batch, classes) logits for labels to be checked against"
        )
    classes = int(out[1])
    if params is not None:
        check_batch_fits(model, params, images_shape)
    labels = np.asarray(labels)
    n = images_shape[0] if images_shape else None
    if labels.ndim not in (1, 2) or labels.shape[0] != n:
        raise ValueError(
            f"{name} has shape {labels.shape} for images of shape {images_shape}: expected "
            f"({n},) class indices or ({n}, {classes}) one-hot rows"
        )
    if labels.ndim == 2:
        if labels.shape[1] != classes:
            raise ValueError(
                f"{name} are rows of {labels.shape[1]} classes (shape {labels.shape}) but the "
                f"model has {classes} outputs: expected ({n}, {classes}) one-hot rows"
            )
        return classes
    if labels.dtype.kind not in "iu":
        raise TypeError(
            f"{name} has dtype {labels.dtype} and shape {labels.shape}: expected integer "
            f"class indices in [0, {classes}) or ({n}, {classes}) one-hot rows"
        )
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"{name} range over {low}..{high} but the model has {classes} outputs: "
                f"expected class indices in [0, {classes}) (a model built for another "
                "dataset, or labels that do not start at 0?)"
            )
    return classes


# ---------------------------------------------------------------------------------
# evaluate: a model's metrics over a dataset

METRICS = ("loss", "accuracy", "top_k", "top<k>", "confusion", "precision", "recall", "f1")
DEFAULT_TOP_K = 5
_TOP = re.compile(r"^top_?(\d+)$")
_PER_CLASS = {"precision", "recall", "f1"}


def _metric_plan(metrics) -> list:
    """[(key, what)] for each requested metric; `what` a name, ("top", k) or a function."""
    if isinstance(metrics, str) or callable(metrics):
        metrics = (metrics,)
    if not isinstance(metrics, (list, tuple)) or not metrics:
        raise ValueError(
            f"metrics={metrics!r}: expected a non-empty sequence of metric names {METRICS} "
            "or functions (logits, labels) -> value, e.g. ('loss', 'accuracy')"
        )
    plan = []
    for i, metric in enumerate(metrics):
        if callable(metric):
            plan.append((getattr(metric, "__name__", f"metric_{i}"), metric))
            continue
        if not isinstance(metric, str):
            raise TypeError(
                f"metrics[{i}]={metric!r}: expected a metric name {METRICS} or a function "
                "(logits, labels) -> value"
            )
        top = _TOP.match(metric)
        if metric == "top_k":
            plan.append((metric, ("top", DEFAULT_TOP_K)))
        elif top:
            plan.append((metric, ("top", int(top.group(1)))))
        elif metric in ("loss", "accuracy", "confusion") or metric in _PER_CLASS:
            plan.append((metric, metric))
        else:
            raise ValueError(
                f"metrics[{i}]={metric!r}: unknown metric; expected one of {METRICS} "
                "(e.g. 'top5', or 'top_k' for the top-5 accuracy) or a function "
                "(logits, labels) -> value"
            )
    keys = [key for key, _ in plan]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"metrics={metrics!r}: {repeated[0]!r} is asked for twice")
    return plan


def _host(value):
    value = np.asarray(jax.device_get(value))
    return value.item() if value.ndim == 0 else value


def evaluate(model, params, state, data, *, loss_fn=softmax_cross_entropy,
             metrics=("loss", "accuracy"), batch_size: int = 256) -> dict:
    """The model's loss and metrics over a dataset, in eval mode, on the host.

    Args:
      model, params, state: the model and its trained parameters and state.
      data: (images, labels) or a split with `.images` / `.labels` (as `fit` takes),
        labels (N,) class indices or (N, C) one-hot rows.
      loss_fn: (logits, labels) -> mean loss, for "loss".
      metrics: names or functions, each giving one or more entries of the result:
        "loss"         the mean `loss_fn` over all examples (float)
        "accuracy"     fraction whose arg-max output is the label (float)
        "top5", "top3", ... "top<k>": fraction whose label is among the k largest
                       outputs; "top_k" is "top5" (float)
        "confusion"    (C, C) int counts, [i, j] = label i predicted as j
        "precision", "recall", "f1": (C,) per-class scores under the name and their
                       macro average (over the classes that occur as a label or a
                       prediction) under "<name>_macro" (float)
        a function f(logits (N, C), labels) -> value, under f.__name__.
      batch_size: images per compiled call of the model (see `predict`).

    Returns:
      a dict of Python floats (scalars) and NumPy arrays.

    Every argument is checked before any work: a malformed argument, or a label out
    of [0, C) for a model with C outputs, raises ValueError / TypeError naming it.
    """
    from fcnn.train.loop import split_arrays  # fit's rule for data (loop imports this module)

    model = _check_model(model)
    loss_fn = _check_loss(loss_fn)
    batch_size = positive_int(batch_size, "batch_size")
    plan = _metric_plan(metrics)
    images, labels = split_arrays(data, "data")
    images = check_images(images)
    classes = check_labels(model, params, images.shape, labels)
    for key, what in plan:
        if isinstance(what, tuple) and not 1 <= what[1] <= classes:
            raise ValueError(
                f"metrics: {key!r} asks for the top-{what[1]} accuracy but the model has "
                f"{classes} outputs: expected k in [1, {classes}]"
            )
    logits = jnp.asarray(predict(model, params, state, images, batch_size=batch_size))
    labels = jnp.asarray(labels)
    results = {}
    confusion = None
    for key, what in plan:
        if callable(what):
            results[key] = _host(what(logits, labels))
        elif isinstance(what, tuple):
            results[key] = _host(metrics_lib.top_k_accuracy(logits, labels, what[1]))
        elif what == "loss":
            results[key] = _host(loss_fn(logits, labels))
        elif what == "accuracy":
            results[key] = _host(metrics_lib.accuracy(logits, labels))
        else:
            if confusion is None:
                confusion = metrics_lib.confusion_matrix(logits, labels)
            if what == "confusion":
                results[key] = _host(confusion)
            else:
                per_class = metrics_lib.scores_from_confusion(confusion)[what]
                results[key] = _host(per_class)
                results[f"{key}_macro"] = _host(metrics_lib.macro_average(per_class, confusion))
    return results


__all__ = [
    "METRICS", "check_labels", "eval_batches", "evaluate", "evaluate_batches", "evaluate_step",
]
