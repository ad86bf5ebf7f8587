"""The three models from fcnn's model zoo (NHWC, HWIO), trained with optax like the peers.

    refnet    fcnn.models.refnet(10)
    resnet20  fcnn.models.resnet_cifar(20)           (option A shortcuts)
    vgg11_bn  fcnn.models.vgg(11, 10, head="cifar", batchnorm=True)

Convolutions take fcnn's default lowering ("auto": oneDNN where it is available).
"""

from __future__ import annotations

from benchmarks.peers import _common

REQUIRED = ("models", "count_params")


def zoo_model(name: str):
    import fcnn.models

    if name == "refnet":
        return fcnn.models.refnet(10)
    if name == "resnet20":
        return fcnn.models.resnet_cifar(20, 10)
    if name == "vgg11_bn":
        return fcnn.models.vgg(11, 10, head="cifar", batchnorm=True)
    raise ValueError(f"no fcnn model for {name!r}")


def _layer_dicts(tree, path=()):
    """The dicts of arrays (one per layer with parameters) in the order of the layers:
    fcnn keys children "0", "1", ..., "10", so the keys are walked as numbers."""
    if isinstance(tree, dict) and tree and all(not isinstance(v, dict) for v in tree.values()):
        yield path, tree
        return
    if isinstance(tree, dict):
        for key in sorted(tree, key=lambda k: (0, int(k)) if str(k).isdigit() else (1, k)):
            yield from _layer_dicts(tree[key], path + (key,))


def load_shared(params, model, shared):
    """fcnn's params with every leaf replaced by the shared value of the same layer.

    fcnn's layers with parameters come in the model's order, which is the order of
    `_common.param_layers(model)`: the i-th dict of arrays is the i-th layer there
    (a Conv's {"kernel", "bias"?}, a BatchNorm's {"scale", "bias"}, a Dense's
    {"kernel", "bias"}); shapes are checked on the way.
    """
    import jax

    layers = list(_common.param_layers(model))
    found = list(_layer_dicts(params))
    if len(found) != len(layers):
        raise AssertionError(f"fcnn's {model.name} has {len(found)} layers with parameters, "
                             f"the shared model {len(layers)}")
    values = {}
    for (path, leaves), layer in zip(found, layers):
        roles = ({"scale": "scale", "bias": "bias"} if isinstance(layer, _common.BN)
                 else {"kernel": "w", "bias": "b"})
        if set(leaves) - set(roles):
            raise AssertionError(f"fcnn layer {path}: unexpected parameters {sorted(leaves)} "
                                 f"for {layer}")
        for key, leaf in leaves.items():
            value = shared.take(layer.name, roles[key])
            if value.shape != tuple(leaf.shape):
                raise AssertionError(f"fcnn layer {path}.{key}: shape {tuple(leaf.shape)}, "
                                     f"shared {layer.name}.{roles[key]} {value.shape}")
            values[path + (key,)] = jax.numpy.asarray(value, dtype=leaf.dtype)

    def rebuild(tree, path=()):
        if isinstance(tree, dict):
            return {k: rebuild(v, path + (k,)) for k, v in tree.items()}
        return values[path]

    return rebuild(params)


def make(model, shared):
    """(apply, params, state, count): the zoo model with the shared parameters."""
    import jax

    import fcnn

    layer = zoo_model(model.name)
    out_shape, params, state = layer.init(jax.random.PRNGKey(0), (-1,) + tuple(model.image))
    if tuple(out_shape)[1:] != (_common.NUM_CLASSES,):
        raise ValueError(f"{model.name} output shape {out_shape}: expected (-1, 10)")
    params = load_shared(params, model, shared)
    return layer.apply, params, state, int(fcnn.count_params(params))


def build(args, model, shared, x, y):
    del args
    from fcnn import losses
    from benchmarks.peers._jax import trainer, versions

    apply_fn, params, state, n = make(model, shared)

    def loss_fn(params, state, x, y):
        logits, state = apply_fn(params, state, x, train=True)
        return losses.softmax_cross_entropy(logits, y), state

    return trainer(loss_fn, params, state, x, y), dict(versions(), param_count=n)


def missing_api() -> str | None:
    """Why fcnn's models cannot be built, or None when they can."""
    try:
        import fcnn
        import fcnn.models  # noqa: F401
        from fcnn import losses
    except ImportError as err:
        return f"fcnn is not importable: {err}"
    missing = [f"fcnn.{n}" for n in REQUIRED if not hasattr(fcnn, n)]
    if not hasattr(losses, "softmax_cross_entropy"):
        missing.append("fcnn.losses.softmax_cross_entropy")
    return f"fcnn does not provide {', '.join(missing)}" if missing else None


if __name__ == "__main__":
    reason = missing_api()
    if reason:
        _common.skip(reason)
    else:
        _common.run(build, framework="fcnn")
