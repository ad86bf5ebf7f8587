"""Probes: measurements on a held-out batch during training, and reading them back.

A probe factory takes (model, loss_fn) and returns probe(params, state, images,
labels) -> dict of scalars; the trainer runs it at initialisation, every
`probe_every` steps and at the end (vmapped over the seeds of a population).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fcnn import diagnostics
from fcnn.layers.base import Layer, apply_with_intermediates

from experiments.core.report import number


def weight_layers(params) -> dict[str, str]:
    """Path -> label ("conv1", "dense2", ...) of every layer holding a "kernel",
    numbered in forward order."""
    found = []

    def walk(node, path):
        if isinstance(node, Mapping):
            if "kernel" in node and not isinstance(node["kernel"], Mapping):
                found.append((path, jnp.ndim(node["kernel"])))
                return
            for key in node:
                walk(node[key], path + (str(key),))

    walk(params, ())
    labels, counts = {}, {}
    for path, ndim in sorted(found, key=lambda item: tuple(int(p) if p.isdigit() else p
                                                            for p in item[0])):
        kind = "dense" if ndim == 2 else "conv"
        counts[kind] = counts.get(kind, 0) + 1
        labels["/".join(path)] = f"{kind}{counts[kind]}"
    return labels


def units_probe(model: Layer, loss_fn: Callable) -> Callable:
    """The standard probe: per layer, the fractions of dead, active and (for saturating
    activations) saturated units after each activation, each weight layer's gradient
    norm, and the norm of its bias gradient (the back-propagated error, summed over
    the batch).

    Keys: "dead/<layer>", "active/<layer>", "saturated/<layer>", "grad/<layer>",
    "delta/<layer>", where <layer> is the weight layer feeding the activation
    ("conv1", "dense1", ...). The model runs in evaluation mode on the held-out batch.
    """

    def probe(params, state, images, labels):
        labels_by_path = weight_layers(params)
        _, _, seen = apply_with_intermediates(model, params, state, images, train=False)
        stats = diagnostics.unit_statistics(seen)
        feeding, out = {}, {}
        current = None
        for item in seen:
            if item.path in labels_by_path:
                current = labels_by_path[item.path]
            elif diagnostics.is_activation(item) and current is not None:
                feeding[item.path] = current
        for path, entry in stats.items():
            for key, value in entry.items():
                out[f"{key}/{feeding.get(path, path)}"] = value

        def objective(p):
            return loss_fn(model.apply(p, state, images, train=False)[0], labels)

        grads = jax.grad(objective)(params)
        for key, norms in (("grad", diagnostics.layer_gradient_norms(grads)),
                           ("delta", diagnostics.bias_gradient_norms(grads))):
            for path, label in labels_by_path.items():
                if path in norms:
                    out[f"{key}/{label}"] = norms[path]
        return out

    return probe


def _layer_order(label: str):
    kind = label.rstrip("0123456789")
    number_ = label[len(kind):]
    return ({"conv": 0, "dense": 1}.get(kind, 2), int(number_) if number_ else 0, label)


def probe_layers(result, prefix: str) -> list[str]:
    """Layer labels with a "<prefix>/<layer>" probe, in forward order."""
    labels = [k.split("/", 1)[1] for k in result.probes if k.startswith(prefix + "/")]
    return sorted(labels, key=_layer_order)


def probe_at(result, key: str, index: int = -1) -> list:
    """Per-seed values of a probe at one probe point (0: initialisation, -1: the end)."""
    if key not in result.probes:
        return [None] * len(result.seeds)
    return [number(v) for v in result.probes[key][:, index]]


def probe_mean(result, key: str) -> list:
    """Per-seed mean of a probe over all probe points (initialisation to the end)."""
    if key not in result.probes:
        return [None] * len(result.seeds)
    with np.errstate(all="ignore"):
        return [number(np.nanmean(row)) if np.any(np.isfinite(row)) else None
                for row in result.probes[key]]


def time_to(result, steps: Sequence) -> list:
    """Per-seed wall time (s) after the given number of steps (None stays None)."""
    return [None if s is None else float(result.step_time[i, s - 1]) for i, s in enumerate(steps)]


__all__ = ["probe_at", "probe_layers", "probe_mean", "time_to", "units_probe", "weight_layers"]
