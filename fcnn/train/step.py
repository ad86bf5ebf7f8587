"""Jitted train and eval steps: forward, backward and update in one compiled function.

    train_step(params, state, opt_state, batch, rng) -> (params, state, opt_state, metrics)
    eval_step(params, state, batch) -> metrics

`batch` is `(images, labels)`; the eval step also takes `(images, labels, weights)`
(weights 0 mark padding rows, so a short last batch keeps the compiled shape).
`params`, `state` and `opt_state` are donated: their buffers are reused for the
outputs, so the caller must use the returned values and drop the old ones. Metrics
are device arrays (scalars); nothing is pulled to the host inside the step.

The steps trace once per batch shape and dtype: feed batches of a fixed shape
(`BatchIterator(..., drop_last=True)`) and the step never recompiles across steps
or epochs. When a batch does not fit the parameters (e.g. a 32x32 image for a model
initialised on 28x28), the error is raised at trace time and names the first
parameter whose shape differs.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fcnn import augment as augment_lib
from fcnn import metrics as metrics_lib
from fcnn.train.finetune import combine, freeze_normalization, mask_flags, partition

LossFn = Callable[[jax.Array, jax.Array], jax.Array]

BATCH_HELP = "expected a batch (images, labels) with images (N, ...) and labels (N,) or (N, C)"


def path_str(path) -> str:
    """A key path as it would be typed: ['3']['kernel'] or .mu['0']['kernel']."""
    return jax.tree_util.keystr(tuple(path))


def _check_model(model):
    if not (isinstance(model, tuple) and len(model) == 2 and all(map(callable, model))):
        raise TypeError(f"model={model!r}: expected a Layer(init, apply), e.g. fcnn.serial(...)")
    return model


def _check_loss(loss_fn):
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn={loss_fn!r}: expected a function (logits, labels) -> scalar, e.g. "
            "fcnn.losses.softmax_cross_entropy"
        )
    return loss_fn


def _check_optimizer(optimizer):
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"optimizer={optimizer!r}: expected an optax GradientTransformation, e.g. "
            "fcnn.train.make_optimizer('adam', 1e-3) or optax.adam(1e-3)"
        )
    return optimizer


def unpack_batch(batch, *, weights: bool = False):
    """(images, labels[, weights]) from a tuple/list batch, with shape checks."""
    if not isinstance(batch, (tuple, list)) or len(batch) not in ((2, 3) if weights else (2,)):
        raise ValueError(f"batch of type {type(batch).__name__}: {BATCH_HELP}")
    images, labels = batch[0], batch[1]
    images, labels = jnp.asarray(images), jnp.asarray(labels)
    if images.ndim < 2 or labels.ndim not in (1, 2) or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"batch images {tuple(images.shape)}, labels {tuple(labels.shape)}: {BATCH_HELP}"
        )
    if len(batch) == 3:
        w = jnp.asarray(batch[2])
        if w.shape != (images.shape[0],):
            raise ValueError(f"batch weights {tuple(w.shape)}: expected ({images.shape[0]},)")
        return images, labels, w
    return images, labels, None


def check_batch_fits(model, params, images_shape) -> None:
    """Raises a ValueError if a batch of `images_shape` does not fit `params`.

    The model is initialised abstractly (`jax.eval_shape`, no arrays) on the batch
    shape and the resulting parameter shapes are compared with the given ones. Called
    at trace time, so it costs nothing per step.
    """
    images_shape = tuple(int(d) for d in images_shape)
    try:
        expected = jax.eval_shape(lambda key: model.init(key, images_shape)[1], jax.random.PRNGKey(0))
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"a batch of images of shape {images_shape} does not fit the model: {err}"
        ) from err
    got_leaves, got_def = jax.tree_util.tree_flatten_with_path(params)
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(expected)
    if got_def != want_def:
        raise ValueError(
            f"a batch of images of shape {images_shape}: the model builds parameters "
            f"with structure {want_def}, but the params given have structure {got_def}"
        )
    for (path, got), (_, want) in zip(got_leaves, want_leaves):
        if tuple(jnp.shape(got)) != tuple(want.shape):
            raise ValueError(
                f"a batch of images of shape {images_shape} does not fit the parameters: "
                f"params{path_str(path)} has shape {tuple(jnp.shape(got))} but this input "
                f"needs {tuple(want.shape)}; the model was initialised for another input "
                "shape (per-example shape, channels; and init's input_shape starts with the "
                "batch axis: (None, *image_shape), not image_shape)"
            )


def output_shape(model, input_shape) -> tuple:
    """The output shape `model.init` predicts for inputs of `input_shape` (abstractly:
    no parameter is materialised)."""
    found = {}

    def init(key):
        found["shape"], params, _ = model.init(key, tuple(input_shape))
        return params

    jax.eval_shape(init, jax.random.PRNGKey(0))
    return tuple(found["shape"])


def _nonfinite_code(loss, grads, new_params) -> jax.Array:
    """0 if all finite; else 1 + index of the first non-finite quantity in the order
    loss, gradient leaves, updated-parameter leaves (see `describe_nonfinite`)."""
    flags = [jnp.all(jnp.isfinite(loss))]
    flags += [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]
    flags += [jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(new_params)]
    bad = jnp.logical_not(jnp.stack(flags))
    return jnp.where(jnp.any(bad), jnp.argmax(bad).astype(jnp.int32) + 1, jnp.int32(0))


def describe_nonfinite(code: int, params, trainable=None) -> str:
    """Turns a train step's `nonfinite` metric into words: which quantity, which path."""
    code = int(code)
    if code == 0:
        return "all finite"
    if code == 1:
        return "the loss is not finite"
    paths = [
        path for (path, _), flag in zip(
            jax.tree_util.tree_flatten_with_path(params)[0], mask_flags(params, trainable)
        ) if flag
    ]
    index = code - 2
    if index < len(paths):
        return f"the gradient of params{path_str(paths[index])} is not finite (the loss was finite)"
    index -= len(paths)
    if index < len(paths):
        return (
            f"the updated parameter params{path_str(paths[index])} is not finite (the loss "
            "and gradients were finite: the step was too large)"
        )
    return f"unknown non-finite code {code}"


def current_learning_rate(opt_state):
    """The learning rate stored by `optax.inject_hyperparams`, or None."""
    for node in jax.tree_util.tree_leaves(
        opt_state, is_leaf=lambda x: hasattr(x, "hyperparams") and isinstance(x.hyperparams, dict)
    ):
        if hasattr(node, "hyperparams") and "learning_rate" in getattr(node, "hyperparams", {}):
            return node.hyperparams["learning_rate"]
    return None


DESCENT = (
    "the optimizer's first update moves every parameter along its gradient (update {update:+.3g} "
    "for a gradient of +1), so each step would increase the loss: is the learning rate "
    "negative (e.g. optax.sgd(-0.1))? Use a positive learning rate"
)


def check_descends(optimizer, params, trainable=None) -> None:
    """Raises a ValueError if the optimizer's first update moves every trainable
    parameter along its gradient, i.e. ascends the loss (a negative learning rate).

    The update is probed on a copy of the params with every axis of size 1 (same tree,
    same ranks, so masks by rank still apply) and a gradient of ones; optimizers that
    cannot take such a copy are not checked.
    """
    tiny = jax.tree.map(lambda p: jnp.ones((1,) * jnp.ndim(p), jnp.result_type(p)),
                        partition(params, trainable)[0])
    try:
        updates, _ = optimizer.update(tiny, optimizer.init(tiny), tiny)
        values = np.concatenate([np.ravel(u) for u in jax.tree_util.tree_leaves(updates)] or [[]])
    except Exception:  # noqa: BLE001 - an optimizer with shape needs of its own: no probe
        return
    values = values[values != 0]
    if values.size and np.all(values > 0):
        raise ValueError(DESCENT.format(update=float(values[0])))


def init_opt_state(optimizer, params, trainable=None):
    """The optimizer state for the trainable leaves of `params` only."""
    _check_optimizer(optimizer)
    return optimizer.init(partition(params, trainable)[0])


def supervised_objective(model, loss_fn: LossFn, penalty=None):
    """The usual objective: L = loss_fn(model(params, images), labels) + penalty(params).

    objective(params, state, images, labels, rng) -> (L, (logits, new_state, aux)),
    aux holding "loss" (the data loss) and "penalty" (if any): the form every
    objective of `make_train_step` has.
    """

    def objective(params, state, images, labels, rng):
        logits, new_state = model.apply(params, state, images, train=True, rng=rng)
        data_loss = loss_fn(logits, labels)
        aux = {"loss": data_loss}
        total = data_loss
        if penalty is not None:
            aux["penalty"] = penalty(params)
            total = total + aux["penalty"]
        return total, (logits, new_state, aux)

    return objective


def make_train_step(
    model,
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    trainable=None,
    penalty: Callable[[Any], jax.Array] | None = None,
    objective: Callable | None = None,
    augment: Callable | None = None,
    check_finite: bool = True,
    jit: bool = True,
    donate: bool = True,
):
    """Builds `step(params, state, opt_state, batch, rng) -> (params, state, opt_state, metrics)`.

    One function for the forward pass (train=True), the backward pass and the
    optimizer update, compiled once (`jit=True`) with params, state and opt_state
    donated. The objective is

        L(params) = loss_fn(model(params, images), labels) + penalty(params)

    (`penalty`, e.g. `lambda p: 1e-4 * fcnn.losses.l2_penalty(p)`, is optional). A
    custom `objective` with the signature of `supervised_objective`'s result replaces
    it (e.g. the center loss, which also updates class centers kept in `state`); the
    update, the metrics and the non-finite check stay the same. `augment(rng, image)
    -> image` (e.g. `fcnn.augment.chain(...)` of the functions in fcnn.augment) is
    applied to every image of the batch inside the compiled step, each with its own
    key split from the step's rng, so augmentation costs no host time and a resumed
    run augments exactly as an uninterrupted one.
    `trainable` (a mask from `trainable_mask`) restricts differentiation and update to
    its True leaves (normalization layers with every parameter frozen run in
    inference mode and keep their running statistics); `opt_state` must then come from `init_opt_state(optimizer,
    params, trainable)`.

    metrics: "loss" (the data loss), "accuracy", "penalty" (if any),
    "learning_rate" (if the optimizer injects it), and "nonfinite" (int32: 0, or
    the code `describe_nonfinite` explains) when `check_finite`.
    `jit=False` returns the pure, unjitted function (for `chex.assert_max_traces`,
    `jax.vmap` over seeds, or sharding with other options).
    """
    model = _check_model(model)
    loss_fn = _check_loss(loss_fn)
    optimizer = _check_optimizer(optimizer)
    if penalty is not None and not callable(penalty):
        raise TypeError(f"penalty={penalty!r}: expected a function params -> scalar, or None")
    if trainable is not None:  # frozen normalization layers run in inference mode
        model = freeze_normalization(model, trainable)
    if objective is None:
        objective = supervised_objective(model, loss_fn, penalty)
    elif not callable(objective) or penalty is not None:
        raise TypeError(
            f"objective={objective!r}: expected a function (params, state, images, labels, rng) "
            "-> (total, (logits, new_state, aux)), without penalty= (add it to the objective)"
        )
    if trainable is not None and not any(jax.tree_util.tree_leaves(trainable)):
        raise ValueError(
            "trainable: every parameter is frozen (fine-tuning mode 'predict'), so there "
            "is nothing to train; use make_eval_step to run the model"
        )

    if augment is not None and not callable(augment):
        raise TypeError(f"augment={augment!r}: expected a function (rng, image) -> image, e.g. "
                        "fcnn.augment.chain(fcnn.augment.random_crop, fcnn.augment.random_flip)")

    def step(params, state, opt_state, batch, rng):
        images, labels, _ = unpack_batch(batch)
        check_batch_fits(model, params, images.shape)
        if augment is not None:
            augment_rng, rng = jax.random.split(rng)
            images = augment_lib.map_batch(augment, augment_rng, images)
        train_params, frozen = partition(params, trainable)

        def of_trainable(train_params):
            return objective(combine(train_params, frozen), state, images, labels, rng)

        (total, (logits, new_state, aux)), grads = jax.value_and_grad(
            of_trainable, has_aux=True)(train_params)
        updates, new_opt_state = optimizer.update(grads, opt_state, train_params)
        new_train = optax.apply_updates(train_params, updates)
        out = dict(aux, accuracy=metrics_lib.accuracy(logits, labels))
        lr = current_learning_rate(new_opt_state)
        if lr is not None:
            out["learning_rate"] = lr
        if check_finite:
            out["nonfinite"] = _nonfinite_code(total, grads, new_train)
        return combine(new_train, frozen), new_state, new_opt_state, out

    if not jit:
        return step
    return jax.jit(step, donate_argnums=(0, 1, 2) if donate else ())


def make_eval_step(model, loss_fn: LossFn, *, jit: bool = True):
    """Builds `eval_step(params, state, batch) -> metrics` (model in eval mode).

    batch: `(images, labels)` or `(images, labels, weights)`; with weights the
    metrics are weighted means (weight 0 = padding row). metrics: "loss" (mean
    loss), "accuracy", and "count" (sum of weights, or the batch size).
    """
    model = _check_model(model)
    loss_fn = _check_loss(loss_fn)

    def step(params, state, batch):
        images, labels, weights = unpack_batch(batch, weights=True)
        check_batch_fits(model, params, images.shape)
        logits, _ = model.apply(params, state, images, train=False)
        hits = metrics_lib.correct(logits, labels).astype(logits.dtype)
        if weights is None:
            count = jnp.asarray(images.shape[0], logits.dtype)
            return {"loss": loss_fn(logits, labels), "accuracy": jnp.mean(hits), "count": count}
        weights = weights.astype(logits.dtype)
        # per-example loss: the mean-over-batch loss of a batch of one
        losses = jax.vmap(lambda z, y: loss_fn(z[None], y[None]))(logits, labels)
        count = jnp.sum(weights)
        safe = jnp.maximum(count, 1.0)
        return {
            "loss": jnp.sum(weights * losses) / safe,
            "accuracy": jnp.sum(weights * hits) / safe,
            "count": count,
        }

    return jax.jit(step) if jit else step
