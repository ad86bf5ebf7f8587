"""Evaluation over a whole dataset in fixed-size batches, pulled to the host once.

    batches = eval_batches(images, labels, 256)      # on the device, built once
    metrics = evaluate_batches(eval_step, params, state, batches)

Every batch has the same shape (the last is padded and its padding weighted 0), so
the eval step (`make_eval_step`, or its vmapped population form) compiles once; the
means are weighted by the real examples of each batch. `fit` and the studies prepare
their evaluation sets once and evaluate them after every epoch.
"""

from __future__ import annotations

import jax
import numpy as np

from fcnn._checks import positive_int


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
        batches.append(jax.device_put((x, y, w), device))
    return batches


def evaluate_batches(eval_step, params, state, batches) -> dict:
    """Mean "loss" and "accuracy" over `batches` (from `eval_batches`): floats for one
    model, (K,) arrays for a population's vmapped eval step."""
    outs = jax.device_get([eval_step(params, state, batch) for batch in batches])
    counts = np.stack([np.asarray(o["count"], np.float64) for o in outs])
    total = counts.sum(axis=0)

    def mean(key):
        values = np.stack([np.asarray(o[key], np.float64) for o in outs])
        out = (values * counts).sum(axis=0) / total
        return float(out) if out.ndim == 0 else out

    return {"loss": mean("loss"), "accuracy": mean("accuracy")}


def evaluate(eval_step, params, state, images, labels, batch_size: int = 256, device=None) -> dict:
    """Mean loss and accuracy of the model over (images, labels), pulled to the host."""
    return evaluate_batches(eval_step, params, state,
                            eval_batches(images, labels, batch_size, device))


__all__ = ["eval_batches", "evaluate", "evaluate_batches"]
