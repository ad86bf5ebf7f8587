"""Data parallelism: a step on 4 CPU devices equals the single-device step, of the
same rules and of plain autodiff; normalization under shard_map with an axis name, with
different data and weights on every device, equals autodiff of the gathered batch.

JAX fixes the device count when it starts, so the check runs in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=4.
"""

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import functools
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import PartitionSpec as P
    jax.config.update("jax_numpy_rank_promotion", "raise")
    import fcnn
    from fcnn import losses
    from fcnn.train import fit, init_opt_state, make_optimizer, make_train_step
    from fcnn.train.parallel import (batch_sharding, make_data_parallel_step, make_mesh,
                                     replicate, shard_batch)

    out = {"devices": jax.device_count()}
    # batch norm: its statistics must be those of the global batch, not of each shard
    model = fcnn.serial(fcnn.Conv(4, 3), fcnn.BatchNorm(), fcnn.Relu(), fcnn.MaxPool(2),
                        fcnn.Flatten(), fcnn.Dense(3))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 6, 6, 2))
    # not Adam: the conv bias before batch norm has a zero gradient up to rounding, and
    # Adam's g / sqrt(v) turns the sign of that rounding into a full step
    opt = make_optimizer("momentum", 0.1)
    opt_state = init_opt_state(opt, params)
    rng = np.random.default_rng(0)
    # shards with very different statistics, so per-shard batch norm would differ
    x = rng.normal(size=(16, 6, 6, 2)).astype(np.float32) * np.repeat([1, 3, 0.3, 2], 4)[:, None, None, None]
    x += np.repeat([0, 2, -1, 5], 4)[:, None, None, None].astype(np.float32)
    y = (np.arange(16) % 3).astype(np.int32)
    copy = lambda t: jax.tree.map(jnp.copy, t)

    single = make_train_step(model, losses.softmax_cross_entropy, opt)
    p1, s1, o1 = copy(params), copy(state), copy(opt_state)
    for i in range(3):
        p1, s1, o1, m1 = single(p1, s1, o1, (x, y), jax.random.PRNGKey(i))

    mesh = make_mesh()
    step = make_data_parallel_step(model, losses.softmax_cross_entropy, opt, mesh)
    p4, s4, o4 = replicate((copy(params), copy(state), copy(opt_state)), mesh)
    for i in range(3):
        p4, s4, o4, m4 = step(p4, s4, o4, shard_batch((x, y), mesh), jax.random.PRNGKey(i))
    diff = lambda a, b: max(float(jnp.max(jnp.abs(u - v))) for u, v in
                            zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    scale = max(float(jnp.max(jnp.abs(u))) for u in jax.tree_util.tree_leaves(p1))
    out["param_diff"] = diff(p1, p4)
    out["param_scale"] = scale
    out["state_diff"] = diff(s1, s4)
    out["loss"] = [float(m1["loss"]), float(m4["loss"])]
    out["batch_devices"] = len(shard_batch((x, y), mesh)[0].sharding.device_set)
    out["params_replicated"] = all(
        leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
        for leaf in jax.tree_util.tree_leaves(p4))
    out["compiles"] = step.compiled._cache_size()

    # ... and equals plain autodiff on one device: the reference is not the same rules
    def build(backward):
        return fcnn.serial(fcnn.Conv(4, 3, backward=backward), fcnn.BatchNorm(backward=backward),
                           fcnn.Relu(backward=backward), fcnn.MaxPool(2, backward=backward),
                           fcnn.Flatten(), fcnn.Dense(3, backward=backward))
    single_ad = make_train_step(
        build("autodiff"),
        lambda z, t: losses.softmax_cross_entropy(z, t, backward="autodiff"), opt)
    pa, sa, oa = copy(params), copy(state), copy(opt_state)
    for i in range(3):
        pa, sa, oa, _ = single_ad(pa, sa, oa, (x, y), jax.random.PRNGKey(i))
    out["param_diff_autodiff"] = diff(pa, p4)
    out["state_diff_autodiff"] = diff(sa, s4)

    # normalize with axis_name under shard_map on the 4 devices: every device holds
    # different data and weighs y, the mean and the variance differently (or, second
    # case, adds the same statistics term); the gradient of its shard must be that of
    # the sum of all devices' losses, i.e. autodiff of the gathered batch on one device,
    # and the replicated scale and bias get the summed gradient, as autodiff gives
    try:
        from jax import shard_map
    except ImportError:
        from jax.experimental.shard_map import shard_map
    from fcnn.ops.normalization import normalize
    spread = np.repeat([0.5, 2.0, 1.0, 3.0], 2)[:, None, None]
    xn = (rng.normal(size=(8, 3, 5)) * spread + np.repeat([-1.0, 3.0, 0.5, 2.0], 2)[:, None, None]).astype(np.float32)
    wn = rng.normal(size=xn.shape).astype(np.float32)
    cm = rng.normal(size=(4, 1, 1, 5)).astype(np.float32)
    cv = rng.normal(size=(4, 1, 1, 5)).astype(np.float32)
    sn = rng.normal(size=(5,)).astype(np.float32)
    bn = rng.normal(size=(5,)).astype(np.float32)

    def device_grad(xs, ws, cms, cvs, s, b, backward, same_stats_term):
        def loss(xs, s, b):
            yn, mean, var = normalize(xs, s, b, axes=(0, 1), axis_name="data", backward=backward)
            if same_stats_term:
                return jnp.sum(ws * jnp.sin(yn)) + jnp.sum(mean) + jnp.sum(var**2)
            return jnp.sum(ws * jnp.sin(yn)) + jnp.sum(cms[0] * mean) + jnp.sum(cvs[0] * var**2)
        return jax.grad(loss, argnums=(0, 1, 2))(xs, s, b)

    def gathered(xa, s, b, same_stats_term):
        yn, mean, var = normalize(xa, s, b, axes=(0, 1), backward="autodiff")
        if same_stats_term:  # four devices add the same term
            return jnp.sum(wn * jnp.sin(yn)) + 4 * (jnp.sum(mean) + jnp.sum(var**2))
        return jnp.sum(wn * jnp.sin(yn)) + jnp.sum(cm.sum(0) * mean) + jnp.sum(cv.sum(0) * var**2)

    out["norm_diff"] = {}
    for same in (False, True):
        want = jax.grad(gathered, argnums=(0, 1, 2))(xn, sn, bn, same)
        scale_of = max(float(jnp.max(jnp.abs(a))) for a in want)
        for backward in ("custom", "autodiff"):
            sharded = jax.jit(shard_map(
                functools.partial(device_grad, backward=backward, same_stats_term=same),
                mesh=mesh, in_specs=(P("data"),) * 4 + (P(), P()),
                out_specs=(P("data"), P(), P())))
            got = sharded(xn, wn, cm, cv, sn, bn)
            out["norm_diff"][f"{backward}_{'same' if same else 'per_device'}"] = max(
                float(jnp.max(jnp.abs(a - b))) for a, b in zip(got, want)) / max(1.0, scale_of)

    # the per-shard alternative really differs (so the comparison above can fail)
    shard_stats = [float(np.mean(x[4 * k:4 * k + 4])) for k in range(4)]
    out["shard_means_spread"] = max(shard_stats) - min(shard_stats)

    try:
        step(p4, s4, o4, (x[:6], y[:6]), jax.random.PRNGKey(0))
    except ValueError as err:
        out["error"] = str(err)

    # the same step drives fit, batches placed sharded by the iterator
    result = fit(model, losses.softmax_cross_entropy, opt, params, state, (x, y), epochs=2,
                 batch_size=8, progress=False, train_step=step,
                 data_device=batch_sharding(mesh))
    out["fit_steps"] = result.step
    print("RESULT " + json.dumps(out))
    """
)


def test_four_devices_match_one(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert out["devices"] == 4
    assert out["batch_devices"] == 4
    assert out["params_replicated"]
    assert out["param_diff"] <= 1e-5 * max(1.0, out["param_scale"]), out
    assert out["state_diff"] <= 1e-5, out
    assert out["param_diff_autodiff"] <= 1e-5 * max(1.0, out["param_scale"]), out
    assert out["state_diff_autodiff"] <= 1e-5, out
    assert len(out["norm_diff"]) == 4 and max(out["norm_diff"].values()) <= 1e-5, out
    assert abs(out["loss"][0] - out["loss"][1]) <= 1e-5 * abs(out["loss"][0])
    assert out["compiles"] == 1
    assert out["shard_means_spread"] > 1.0
    assert out["error"].startswith("batch size 6 is not divisible by the 4 devices")
    assert out["fit_steps"] == 4
