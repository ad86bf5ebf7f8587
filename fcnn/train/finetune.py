"""Fine-tuning: which parameters train, and the notes' three states of a pretrained net.

    "predict"  use the network as it is: nothing trains (evaluation only)
    "last"     train only the last layer that has parameters; everything else frozen
    "all"      train every parameter (starting from the pretrained values)

A choice is a *trainable mask*: a pytree of Python bools with the structure of
`params`. The train step differentiates and updates only the `True` leaves; the
others are passed through untouched, so they stay bit-identical, and the optimizer
state is built over the trainable leaves only (`partition` puts `None`, an empty
pytree, in place of each frozen leaf), so frozen parts cost no optimizer memory.
"""

from __future__ import annotations

import jax
import numpy as np

MODES = ("predict", "last", "all")


def _is_none(x) -> bool:
    return x is None


def _leaf_count(tree) -> int:
    return len(jax.tree_util.tree_leaves(tree))


def _is_combinator(node) -> bool:
    # serial/parallel params are dicts keyed "0", "1", ...; a layer's own params are
    # keyed by name ("kernel", "bias", ...).
    return isinstance(node, dict) and bool(node) and all(
        isinstance(k, str) and k.isdigit() for k in node
    )


def last_layer_path(params) -> tuple[str, ...]:
    """The key path to the last layer holding parameters (descending into combinators)."""
    path: list[str] = []
    node = params
    while _is_combinator(node):
        keys = sorted(node, key=int)
        filled = [k for k in keys if _leaf_count(node[k]) > 0]
        if not filled:
            break
        path.append(filled[-1])
        node = node[filled[-1]]
    if not path or _leaf_count(node) == 0:
        raise ValueError(
            "fine-tuning mode 'last': found no layer with parameters in params (expected "
            "the params of a serial model, a dict keyed '0', '1', ...)"
        )
    return tuple(path)


def trainable_mask(params, mode: str):
    """A pytree of bools (structure of `params`): True where the parameter trains.

    `mode` is one of "predict" (nothing), "last" (only the last layer with
    parameters) or "all".
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    if mode == "all":
        return jax.tree.map(lambda _: True, params)
    if mode == "predict":
        return jax.tree.map(lambda _: False, params)
    last = last_layer_path(params)

    def flag(path, _):
        keys = tuple(getattr(k, "key", None) for k in path)
        return keys[: len(last)] == last

    return jax.tree_util.tree_map_with_path(flag, params)


def mask_flags(params, mask) -> tuple[bool, ...]:
    """The mask as one Python bool per leaf of `params` (in leaf order), checked."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    if mask is None:
        return (True,) * len(leaves)
    mask_leaves, mask_def = jax.tree_util.tree_flatten(mask)
    if mask_def != treedef:
        raise ValueError(
            "trainable mask does not have the structure of params: build it with "
            "fcnn.train.trainable_mask(params, mode) or jax.tree.map(lambda p: ..., params)"
        )
    for leaf in mask_leaves:
        if not isinstance(leaf, (bool, np.bool_)):
            raise TypeError(
                f"trainable mask has a leaf {leaf!r}: expected Python bools "
                "(True = trains, False = frozen)"
            )
    return tuple(bool(leaf) for leaf in mask_leaves)


def partition(params, mask):
    """Splits params into (trainable, frozen): each has `None` at the other's leaves."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    flags = mask_flags(params, mask)
    trainable = treedef.unflatten([x if f else None for x, f in zip(leaves, flags)])
    frozen = treedef.unflatten([None if f else x for x, f in zip(leaves, flags)])
    return trainable, frozen


def combine(trainable, frozen):
    """Inverse of `partition`: takes each leaf from whichever tree holds it."""
    return jax.tree.map(lambda t, f: f if t is None else t, trainable, frozen, is_leaf=_is_none)


def count_trainable(params, mask) -> int:
    """Number of scalar parameters that train under `mask`."""
    trainable, _ = partition(params, mask)
    return int(sum(x.size for x in jax.tree_util.tree_leaves(trainable)))


def freeze_normalization(model, mask):
    """`model` with every normalization layer whose params are all frozen under `mask`
    run in inference mode: it normalizes with its running statistics and keeps its state
    bit-identical, as Keras does for a non-trainable BatchNorm. Walks SERIAL layers (the
    mask mirrors their params, keyed "0", "1", ...); other layers are kept as they are.
    """
    from fcnn.layers.base import NORMALIZATION, SERIAL, Layer, serial

    if mask is None:
        return model
    if model.role == SERIAL and model.children and isinstance(mask, dict):
        return serial(*(freeze_normalization(child, mask.get(str(i)))
                        for i, child in enumerate(model.children)))
    flags = jax.tree_util.tree_leaves(mask)
    if model.role != NORMALIZATION or not flags or any(flags):
        return model

    def apply(params, state, x, *, train, rng=None):
        del train
        return model.apply(params, state, x, train=False, rng=rng)

    return Layer(model.init, apply, name=f"{model.name} (frozen)", children=model.children,
                 role=model.role, info=model.info)
