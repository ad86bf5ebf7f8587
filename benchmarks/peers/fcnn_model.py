"""RefNet-MNIST in fcnn's public API (NHWC, HWIO), trained with optax like the peers."""

from __future__ import annotations

import numpy as np

from benchmarks.peers import _common

REQUIRED = ("serial", "Conv", "Relu", "MaxPool", "Flatten", "Dense")


def refnet(fcnn):
    return fcnn.serial(
        fcnn.Conv(32, 3, padding="SAME"), fcnn.Relu(), fcnn.MaxPool(2, strides=2),
        fcnn.Conv(64, 3, padding="SAME"), fcnn.Relu(), fcnn.MaxPool(2, strides=2),
        fcnn.Flatten(),
        fcnn.Dense(128), fcnn.Relu(),
        fcnn.Dense(10),
    )


def load_shared(params, shared: dict):
    """Replaces every leaf of fcnn's params by the shared value of the same size.

    Every RefNet parameter has a distinct size (288, 32, 18432, 64, 401408, 128,
    1280, 10), so the size names the parameter whatever the pytree's structure.
    """
    import jax

    by_size = {v.size: v for v in shared.values()}

    def replace(leaf):
        value = by_size[int(np.prod(leaf.shape))]
        return jax.numpy.asarray(value.reshape(leaf.shape), dtype=leaf.dtype)

    return jax.tree_util.tree_map(replace, params)


def build(args, p, x, y):
    del args
    import jax

    import fcnn
    from fcnn import losses
    from benchmarks.peers._jax import trainer, versions

    init_fn, apply_fn = refnet(fcnn)
    out_shape, params, state = init_fn(jax.random.PRNGKey(0), (-1,) + _common.IMAGE)
    if tuple(out_shape)[1:] != (10,):
        raise ValueError(f"RefNet output shape {out_shape}: expected (-1, 10)")
    params = load_shared(params, p)

    def loss_fn(params, x, y):
        logits, _ = apply_fn(params, state, x, train=True)
        return losses.softmax_cross_entropy(logits, y)

    return trainer(loss_fn, params, x, y), versions()


def missing_api() -> str | None:
    """Why fcnn's RefNet cannot be built yet, or None when it can."""
    try:
        import fcnn
    except ImportError as err:
        return f"fcnn is not importable: {err}"
    missing = [f"fcnn.{n}" for n in REQUIRED if not hasattr(fcnn, n)]
    try:
        from fcnn import losses
    except ImportError:
        missing.append("fcnn.losses")
    else:
        if not hasattr(losses, "softmax_cross_entropy"):
            missing.append("fcnn.losses.softmax_cross_entropy")
    return f"fcnn does not provide {', '.join(missing)} yet" if missing else None


if __name__ == "__main__":
    reason = missing_api()
    if reason:
        _common.skip(reason)
    else:
        _common.run(build, framework="fcnn")
