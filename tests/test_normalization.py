"""Normalization: the `normalize` op and BatchNorm, LayerNorm, InstanceNorm, GroupNorm.

Forward and backward are checked against the naive-loop NumPy oracle
(tests/reference/norm_ref.py), against `jax.vjp` of the plain forward
(`backward="autodiff"`) and against central finite differences in float64.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn.layers.normalization import BatchNorm, GroupNorm, InstanceNorm, LayerNorm
from fcnn.ops.normalization import normalize, normalize_with_stats
from tests.reference import norm_ref

EPS = 1e-5
TOL = dict(atol=1e-9, rtol=1e-9)
F64 = jnp.float64


def randn(seed, shape, loc=0.0, scale=1.0):
    return np.random.default_rng(seed).normal(loc, scale, size=shape)


def full(p, shape):
    return np.broadcast_to(np.asarray(p, np.float64), shape)


def sum_to(g, shape):
    """Reduces an elementwise gradient to a parameter of `shape` (same rank after padding)."""
    padded = (1,) * (g.ndim - len(shape)) + tuple(shape)
    axes = tuple(d for d, n in enumerate(padded) if n == 1 and g.shape[d] != 1)
    return np.sum(g, axis=axes, keepdims=True).reshape(shape)


def central_difference_check(f, args, seed=0, eps=1e-6, rtol=1e-6):
    """<grad f(args), d> against (f(args + eps d) - f(args - eps d)) / (2 eps), f scalar."""
    grads = jax.jit(jax.grad(f, argnums=tuple(range(len(args)))))(*args)
    f = jax.jit(f)
    for i, (a, g) in enumerate(zip(args, grads)):
        d = randn(seed + i, np.shape(a))
        plus = list(args)
        minus = list(args)
        plus[i] = a + eps * d
        minus[i] = a - eps * d
        numeric = (f(*plus) - f(*minus)) / (2 * eps)
        analytic = float(jnp.sum(g * d))
        np.testing.assert_allclose(analytic, float(numeric), rtol=rtol, atol=1e-7)


# (name, x shape, axes, scale/bias shape)
OP_CASES = [
    ("batch_nhwc", (3, 2, 3, 4), (0, 1, 2), (4,)),
    ("batch_dense", (5, 3), (0,), (3,)),
    ("batch_channels_first", (3, 4, 2, 2), (0, 2, 3), (1, 4, 1, 1)),
    ("layer_last_axis", (2, 3, 5), (-1,), (5,)),
    ("instance_3d", (2, 2, 2, 3, 2), (1, 2, 3), (2,)),
    ("elementwise_params", (2, 3, 4), (1, 2), (3, 4)),
    ("scalar_params", (4, 3), (0, 1), ()),
]


def op_args(seed, shape, pshape):
    x = randn(seed, shape, loc=1.5, scale=2.0)
    scale = randn(seed + 1, pshape, loc=1.0)
    bias = randn(seed + 2, pshape)
    return x, scale, bias


class NormalizeOpTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*OP_CASES)
    def test_forward_matches_oracle(self, shape, axes, pshape):
        x, scale, bias = op_args(0, shape, pshape)

        @self.variant
        def f(x, scale, bias):
            return [normalize(x, scale, bias, axes=axes, epsilon=EPS, backward=b)
                    for b in ("custom", "autodiff")]

        (y, mean, var), autodiff = f(x, scale, bias)
        chex.assert_trees_all_close((y, mean, var), autodiff, **TOL)
        key = norm_ref.key_without([a % len(shape) for a in axes])
        y_ref, mean_ref, var_ref = norm_ref.normalize_forward(
            x, full(scale, shape), full(bias, shape), key, EPS
        )
        chex.assert_trees_all_close(y, y_ref, **TOL)
        chex.assert_shape(mean, tuple(1 if d in [a % len(shape) for a in axes] else n
                                      for d, n in enumerate(shape)))
        chex.assert_trees_all_close(jnp.broadcast_to(mean, shape), mean_ref, **TOL)
        chex.assert_trees_all_close(jnp.broadcast_to(var, shape), var_ref, **TOL)

    # Eager (without_jit) runs compile every small op once per shape: a few cases
    # run both ways, the rest jitted only, to keep the suite fast.
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[OP_CASES[i] for i in (0, 5)])
    def test_backward_matches_oracle_and_autodiff(self, shape, axes, pshape):
        self._check_backward(shape, axes, pshape)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*[OP_CASES[i] for i in (1, 2, 3, 4, 6)])
    def test_backward_matches_oracle_and_autodiff_more(self, shape, axes, pshape):
        self._check_backward(shape, axes, pshape)

    def _check_backward(self, shape, axes, pshape):
        x, scale, bias = op_args(1, shape, pshape)
        axes_pos = [a % len(shape) for a in axes]
        dy = randn(5, shape)
        stat_shape = tuple(1 if d in axes_pos else n for d, n in enumerate(shape))
        dmean, dvar = randn(6, stat_shape), randn(7, stat_shape)

        def grads(backward):
            @self.variant
            def vjp(x, scale, bias):
                out, pullback = jax.vjp(
                    lambda *a: normalize(*a, axes=axes, epsilon=EPS, backward=backward),
                    x, scale, bias,
                )
                return pullback((dy, dmean, dvar))

            return vjp(x, scale, bias)

        custom, autodiff = grads("custom"), grads("autodiff")
        chex.assert_trees_all_close(custom, autodiff, **TOL)

        key = norm_ref.key_without(axes_pos)
        groups = {key(i): i for i in np.ndindex(*stat_shape)}
        dx, dscale, dbias = norm_ref.normalize_backward(
            x, full(scale, shape), key, EPS, dy,
            dmean={g: dmean[i] for g, i in groups.items()},
            dvar={g: dvar[i] for g, i in groups.items()},
        )
        chex.assert_trees_all_close(custom[0], dx, **TOL)
        chex.assert_trees_all_close(custom[1], sum_to(dscale, pshape), **TOL)
        chex.assert_trees_all_close(custom[2], sum_to(dbias, pshape), **TOL)

    @parameterized.named_parameters(*OP_CASES[:4])
    def test_central_finite_differences(self, shape, axes, pshape):
        x, scale, bias = op_args(2, shape, pshape)
        w = randn(9, shape)

        def loss(x, scale, bias):
            y, mean, var = normalize(x, scale, bias, axes=axes, epsilon=EPS)
            return jnp.sum(w * jnp.tanh(y)) + jnp.sum(mean**2) + jnp.sum(jnp.sqrt(var))

        central_difference_check(loss, (x, scale, bias))

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(backward=("custom", "autodiff"))
    def test_normalize_with_stats_matches_oracle(self, backward):
        shape = (3, 2, 4)
        x = randn(0, shape)
        mean, var = randn(1, (4,)), np.abs(randn(2, (4,))) + 0.1
        scale, bias = randn(3, (4,)), randn(4, (4,))
        dy = randn(5, shape)

        @self.variant
        def f(*args):
            out, pullback = jax.vjp(
                lambda *a: normalize_with_stats(*a, epsilon=EPS, backward=backward), *args
            )
            return out, pullback(dy)

        y, grads = f(x, mean, var, scale, bias)
        args_full = [full(a, shape) for a in (mean, var, scale, bias)]
        chex.assert_trees_all_close(
            y, norm_ref.affine_normalize_forward(x, *args_full, EPS), **TOL
        )
        m, v, s, _ = args_full
        ref = norm_ref.affine_normalize_backward(x, m, v, s, EPS, dy)
        chex.assert_trees_all_close(grads[0], ref[0], **TOL)
        for g, r in zip(grads[1:], ref[1:]):
            chex.assert_trees_all_close(g, sum_to(r, (4,)), **TOL)
        central_difference_check(
            lambda *a: jnp.sum(dy * normalize_with_stats(*a, epsilon=EPS, backward=backward)),
            (x, mean, var, scale, bias),
        )


@pytest.mark.parametrize("backward", ["custom", "autodiff"])
def test_axis_name_statistics_and_gradients_equal_the_whole_batch(backward):
    devices, shape = 3, (6, 2, 2, 3)
    x, scale, bias = op_args(3, shape, (3,))
    w = randn(4, shape)
    axes = (0, 1, 2)

    def whole_loss(x, scale, bias):
        y, mean, var = normalize(x, scale, bias, axes=axes, backward=backward)
        return jnp.sum(w * y**2) + jnp.sum(mean) + jnp.sum(var**2), (y, mean, var)

    def shard_loss(xs, ws, scale, bias):
        y, mean, var = normalize(xs, scale, bias, axes=axes, axis_name="d", backward=backward)
        # The statistics are replicated on every device: count them once in total.
        return jnp.sum(ws * y**2) + (jnp.sum(mean) + jnp.sum(var**2)) / devices, (y, mean, var)

    (_, (y, mean, var)), g_whole = jax.jit(jax.value_and_grad(
        whole_loss, argnums=(0, 1, 2), has_aux=True
    ))(x, scale, bias)
    split = lambda a: a.reshape((devices, shape[0] // devices) + shape[1:])  # noqa: E731
    (_, (ys, means, vars_)), g_shards = jax.jit(jax.vmap(
        jax.value_and_grad(shard_loss, argnums=(0, 2, 3), has_aux=True),
        in_axes=(0, 0, None, None), axis_name="d",
    ))(split(x), split(w), scale, bias)
    chex.assert_trees_all_close(ys.reshape(shape), y, **TOL)
    for d in range(devices):
        chex.assert_trees_all_close((means[d], vars_[d]), (mean, var), **TOL)
    chex.assert_trees_all_close(g_shards[0].reshape(shape), g_whole[0], **TOL)
    # Parameter gradients stay per device; their sum is the whole-batch gradient.
    chex.assert_trees_all_close(g_shards[1].sum(0), g_whole[1], **TOL)
    chex.assert_trees_all_close(g_shards[2].sum(0), g_whole[2], **TOL)


@pytest.mark.parametrize("axes", [(0, 1, 2), (0,)], ids=["batch_nhwc", "batch_dense_like"])
def test_axis_name_with_unequal_devices_equals_autodiff_of_the_gathered_batch(axes):
    """Every device holds different data AND weighs y, the mean and the variance
    differently, so the cotangents of the (replicated) statistics differ per device.
    The gradient each device gets for its shard must be the gradient of the sum of all
    devices' losses, computed here by autodiff of the plain forward on the gathered
    batch. (Equal per-device weights on the statistics would hide a backward that
    forgot to sum their cotangents across devices.)"""
    devices, per_device = 3, 2
    shape = (devices * per_device, 2, 3, 4)
    rng = np.random.default_rng(11)
    # shards with their own location and scale
    x = rng.normal(size=shape) * np.repeat([0.5, 2.0, 1.0], per_device)[:, None, None, None]
    x += np.repeat([-1.0, 3.0, 0.5], per_device)[:, None, None, None]
    scale, bias = randn(12, (4,), loc=1.0), randn(13, (4,))
    w = randn(14, shape)  # per-element weights of y, different on every shard
    # each device's weights of the statistics (which have size 1 on `axes`)
    stat_shape = tuple(1 if d in axes else n for d, n in enumerate(shape))
    c_mean, c_var = randn(15, (devices,) + stat_shape), randn(16, (devices,) + stat_shape)

    def device_loss(xs, ws, cm, cv, scale, bias, backward):
        y, mean, var = normalize(xs, scale, bias, axes=axes, axis_name="d", backward=backward)
        return jnp.sum(ws * jnp.sin(y)) + jnp.sum(cm * mean) + jnp.sum(cv * var**2)

    split = lambda a: a.reshape((devices, per_device) + a.shape[1:])  # noqa: E731
    per_device_grads = {
        backward: jax.jit(jax.vmap(
            jax.grad(functools.partial(device_loss, backward=backward), argnums=(0, 4, 5)),
            in_axes=(0, 0, 0, 0, None, None), axis_name="d",
        ))(split(x), split(w), c_mean, c_var, scale, bias)
        for backward in ("custom", "autodiff")
    }

    def gathered_loss(x, scale, bias):
        # one device holding the whole batch; mean and var are the same on every device,
        # so the devices' statistics terms add up to their summed weights
        y, mean, var = normalize(x, scale, bias, axes=axes, backward="autodiff")
        return (jnp.sum(w * jnp.sin(y)) + jnp.sum(c_mean.sum(0) * mean)
                + jnp.sum(c_var.sum(0) * var**2))

    want = jax.jit(jax.grad(gathered_loss, argnums=(0, 1, 2)))(x, scale, bias)
    for backward, (dx, dscale, dbias) in per_device_grads.items():
        chex.assert_trees_all_close(dx.reshape(shape), want[0], **TOL, custom_message=backward)
        # parameter gradients stay per device; their sum is the gathered gradient
        chex.assert_trees_all_close(dscale.sum(0), want[1], **TOL, custom_message=backward)
        chex.assert_trees_all_close(dbias.sum(0), want[2], **TOL, custom_message=backward)


@pytest.mark.parametrize("backward", ["custom", "autodiff"])
def test_the_two_checks_of_the_derivation_page(backward):
    """docs/derivations/normalization.md: sum_i dx_i = 0 over each set (a common shift
    of the set's inputs leaves y unchanged), and sum_i dx_i x_i = 0 when eps = 0 (a
    common scale leaves y unchanged), with eps tiny against the variances here."""
    shape, axes = (5, 3, 4), (0, 1)
    x, scale, bias = op_args(21, shape, (4,))
    dy = randn(22, shape)
    _, vjp = jax.vjp(lambda x: normalize(x, scale, bias, axes=axes, epsilon=1e-12,
                                         backward=backward)[0], x)
    dx = np.asarray(vjp(dy)[0])
    np.testing.assert_allclose(dx.sum(axis=axes), 0.0, atol=1e-12)
    np.testing.assert_allclose((dx * x).sum(axis=axes), 0.0, atol=1e-9)
    assert np.abs(dx).max() > 0.1


def test_half_precision_input_keeps_float32_statistics():
    x = jnp.asarray(randn(0, (4, 3)) * 100 + 1000, jnp.bfloat16)
    y, mean, var = normalize(x, None, None, axes=(0,))
    assert y.dtype == jnp.bfloat16 and mean.dtype == jnp.float32
    np.testing.assert_allclose(np.mean(np.asarray(y, np.float32), 0), 0, atol=0.05)


# ---- BatchNorm -------------------------------------------------------------------


def bn_init(layer, shape, seed=0, dtype=F64):
    _, params, state = layer.init(jax.random.PRNGKey(seed), shape)
    params = {k: jnp.asarray(randn(seed + 10 + i, v.shape, loc=1.0 if k == "scale" else 0.0),
                             dtype) for i, (k, v) in enumerate(sorted(params.items()))}
    return params, state


class BatchNormTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(("ema", -1, "custom"), ("mean", 1, "autodiff"))
    def test_train_step_matches_oracle(self, running_average, axis, backward):
        self._check_train_step(running_average, axis, backward)

    @chex.variants(with_jit=True)
    @parameterized.parameters(("mean", 1, "custom"), ("ema", -1, "autodiff"))
    def test_train_step_matches_oracle_more(self, running_average, axis, backward):
        self._check_train_step(running_average, axis, backward)

    def _check_train_step(self, running_average, axis, backward):
        shape = (4, 3, 2, 5)
        layer = BatchNorm(momentum=0.8, running_average=running_average, axis=axis,
                          backward=backward, param_dtype=F64)
        params, state = bn_init(layer, shape)
        c = shape[axis]
        state = {**state, "mean": jnp.asarray(randn(1, (c,))),
                 "var": jnp.asarray(np.abs(randn(2, (c,))) + 0.5),
                 "count": jnp.asarray(3, jnp.int32)}
        x, dy = randn(3, shape, loc=2.0, scale=3.0), randn(4, shape)

        @self.variant
        def step(params, state, x):
            (y, new_state), pullback = jax.vjp(
                lambda p, x: layer.apply(p, state, x, train=True), params, x
            )
            zero_state = jax.tree_util.tree_map(jnp.zeros_like, new_state)
            zero_state["count"] = np.zeros((), jax.dtypes.float0)
            return y, new_state, pullback((dy, zero_state))

        y, new_state, (g_params, g_x) = step(params, state, x)

        ax = axis % len(shape)
        key = lambda idx: (idx[ax],)  # noqa: E731
        bshape = tuple(c if d == ax else 1 for d in range(len(shape)))
        s_full = full(np.asarray(params["scale"]).reshape(bshape), shape)
        b_full = full(np.asarray(params["bias"]).reshape(bshape), shape)
        y_ref, _, _ = norm_ref.normalize_forward(x, s_full, b_full, key, EPS)
        chex.assert_trees_all_close(y, y_ref, **TOL)
        dx, dscale, dbias = norm_ref.normalize_backward(x, s_full, key, EPS, dy)
        chex.assert_trees_all_close(g_x, dx, **TOL)
        chex.assert_trees_all_close(g_params["scale"], sum_to(dscale, bshape).reshape(c), **TOL)
        chex.assert_trees_all_close(g_params["bias"], sum_to(dbias, bshape).reshape(c), **TOL)

        m = x.size // c
        axes = tuple(d for d in range(len(shape)) if d != ax)
        batch_mean = x.mean(axis=axes)
        batch_var = x.var(axis=axes) * m / (m - 1)
        old_mean, old_var = np.asarray(state["mean"]), np.asarray(state["var"])
        if running_average == "ema":
            want_mean = 0.8 * old_mean + 0.2 * batch_mean
            want_var = 0.8 * old_var + 0.2 * batch_var
        else:  # three batches seen before: the mean over four
            want_mean = (3 * old_mean + batch_mean) / 4
            want_var = (3 * old_var + batch_var) / 4
        chex.assert_trees_all_close(new_state["mean"], want_mean, **TOL)
        chex.assert_trees_all_close(new_state["var"], want_var, **TOL)
        assert int(new_state["count"]) == 4

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(backward=("custom", "autodiff"))
    def test_eval_matches_oracle_and_finite_differences(self, backward):
        shape = (3, 2, 4)
        layer = BatchNorm(backward=backward, param_dtype=F64)
        params, state = bn_init(layer, shape)
        state = {**state, "mean": jnp.asarray(randn(1, (4,))),
                 "var": jnp.asarray(np.abs(randn(2, (4,))) + 0.5)}
        x, dy = randn(3, shape), randn(4, shape)

        @self.variant
        def f(params, x):
            return jax.vjp(lambda p, x: layer.apply(p, state, x, train=False)[0], params, x)

        y, pullback = f(params, x)
        g_params, g_x = pullback(dy)
        args = [full(np.asarray(a), shape) for a in
                (state["mean"], state["var"], params["scale"], params["bias"])]
        chex.assert_trees_all_close(y, norm_ref.affine_normalize_forward(x, *args, EPS), **TOL)
        ref = norm_ref.affine_normalize_backward(x, *args[:3], EPS, dy)
        chex.assert_trees_all_close(g_x, ref[0], **TOL)
        chex.assert_trees_all_close(g_params["scale"], sum_to(ref[3], (4,)), **TOL)
        chex.assert_trees_all_close(g_params["bias"], sum_to(ref[4], (4,)), **TOL)
        central_difference_check(
            lambda x, s: jnp.sum(dy * layer.apply({**params, "scale": s}, state, x,
                                                  train=False)[0]),
            (x, params["scale"]),
        )

    @parameterized.parameters("ema", "mean")
    def test_running_statistics_approach_the_true_ones(self, running_average):
        true_mean = np.array([3.0, -1.0, 0.5])
        true_std = np.array([2.0, 0.5, 1.0])
        layer = BatchNorm(momentum=0.95, running_average=running_average)
        _, params, state = layer.init(jax.random.PRNGKey(0), (-1, 4, 3))

        @jax.jit
        def run(state, xs):
            def body(state, x):
                return layer.apply(params, state, x, train=True)[1], None

            return jax.lax.scan(body, state, xs)[0]

        xs = jax.random.normal(jax.random.PRNGKey(1), (300, 16, 4, 3), jnp.float32)
        state = run(state, xs * true_std.astype(np.float32).reshape(1, 1, 1, 3)
                    + true_mean.astype(np.float32).reshape(1, 1, 1, 3))
        # ema with momentum 0.95 averages ~39 batches of 64 values: ~2% relative error
        tol = 0.08 if running_average == "ema" else 0.02
        np.testing.assert_allclose(state["mean"], true_mean, atol=tol * 2)
        np.testing.assert_allclose(state["var"], true_std**2, rtol=tol * 2)
        assert int(state["count"]) == 300

    def test_mean_mode_is_the_unbiased_estimate_exactly(self):
        shape, m = (5, 2, 3), 10
        layer = BatchNorm(running_average="mean", param_dtype=F64)
        params, state = bn_init(layer, shape)
        batches = [randn(i, shape, loc=i, scale=i + 1) for i in range(3)]
        for x in batches:
            _, state = layer.apply(params, state, x, train=True)
        means = [x.reshape(m, 3).mean(0) for x in batches]
        unbiased = [x.reshape(m, 3).var(0) * m / (m - 1) for x in batches]
        chex.assert_trees_all_close(state["mean"], np.mean(means, 0), atol=1e-14, rtol=1e-14)
        chex.assert_trees_all_close(state["var"], np.mean(unbiased, 0), atol=1e-14, rtol=1e-14)
        np.testing.assert_allclose(  # the same as NumPy's ddof=1 variance
            unbiased[0], batches[0].reshape(m, 3).var(0, ddof=1), rtol=1e-14
        )

    def test_eval_is_deterministic_and_per_example(self):
        shape = (8, 3, 3, 2)
        layer = BatchNorm()
        _, params, state = layer.init(jax.random.PRNGKey(0), (-1,) + shape[1:])
        train = jax.jit(lambda state, x: layer.apply(params, state, x, train=True)[1])
        for i in range(3):  # some training so the running statistics are not trivial
            state = train(state, randn(i, shape, 1.0, 2.0))
        x = jnp.asarray(randn(5, shape), jnp.float32)
        apply = jax.jit(lambda x: layer.apply(params, state, x, train=False))
        (y1, s1), (y2, s2) = apply(x), apply(x)
        np.testing.assert_array_equal(y1, y2)
        chex.assert_trees_all_equal(s1, state)
        other = x.at[1:].set(100.0 * jnp.asarray(randn(6, (7,) + shape[1:]), jnp.float32))
        np.testing.assert_allclose(apply(other)[0][0], y1[0], rtol=1e-6)
        one, _ = layer.apply(params, state, x[:1], train=False)  # a batch of one
        chex.assert_shape(one, (1,) + shape[1:])
        np.testing.assert_allclose(one[0], y1[0], rtol=1e-6)
        # ...whereas in training the batch statistics couple the examples
        t1, _ = layer.apply(params, state, x, train=True)
        t2, _ = layer.apply(params, state, other, train=True)
        assert not np.allclose(t1[0], t2[0])

    @parameterized.parameters("custom", "autodiff")
    def test_axis_name_layer_equals_whole_batch(self, backward):
        devices, shape = 2, (6, 3, 4)
        layer = BatchNorm(momentum=0.5, axis_name="batch", backward=backward, param_dtype=F64)
        whole = BatchNorm(momentum=0.5, backward=backward, param_dtype=F64)
        params, state = bn_init(layer, (shape[0] // devices,) + shape[1:])
        x, w = randn(1, shape, 1.0, 2.0), randn(2, shape)

        def loss(params, x, w, layer):
            y, new_state = layer.apply(params, state, x, train=True)
            return jnp.sum(w * jnp.sin(y)), new_state

        (_, s_whole), g_whole = jax.jit(
            jax.value_and_grad(lambda p, x, w: loss(p, x, w, whole), has_aux=True)
        )(params, x, w)
        split = lambda a: a.reshape((devices, -1) + shape[1:])  # noqa: E731
        (_, s_sh), g_sh = jax.jit(jax.vmap(
            jax.value_and_grad(lambda p, x, w: loss(p, x, w, layer), has_aux=True),
            in_axes=(None, 0, 0), axis_name="batch",
        ))(params, split(x), split(w))
        for d in range(devices):
            chex.assert_trees_all_close(
                jax.tree_util.tree_map(lambda a: a[d], s_sh), s_whole, **TOL
            )
        chex.assert_trees_all_close(
            jax.tree_util.tree_map(lambda a: a.sum(0), g_sh), g_whole, **TOL
        )

    def test_use_scale_and_use_bias_off(self):
        layer = BatchNorm(use_scale=False, use_bias=False)
        _, params, state = layer.init(jax.random.PRNGKey(0), (4, 3))
        assert params == {} and set(state) == {"mean", "var", "count"}
        x = jnp.asarray(randn(0, (4, 3)), jnp.float32)
        y, _ = layer.apply(params, state, x, train=True)
        want = (x - x.mean(0, keepdims=True)) / np.sqrt(x.var(0, keepdims=True) + EPS)
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)

    @parameterized.parameters((F64, 1e-12), (jnp.float32, 1e-5))
    def test_scale_and_bias_can_restore_the_input(self, dtype, tol):
        """gamma = sqrt(var_B + epsilon), beta = mu_B undo the normalization of that
        batch (Ioffe & Szegedy, 2015, section 3): BatchNorm can represent the identity."""
        shape = (8, 3, 3, 4)
        x = jnp.asarray(randn(0, shape, 2.0, 3.0), dtype)
        layer = BatchNorm(param_dtype=dtype)
        _, _, state = layer.init(jax.random.PRNGKey(0), shape)
        mu, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # the biased var_B (divided by m)
        params = {"scale": jnp.sqrt(var + EPS), "bias": mu}
        y, _ = jax.jit(lambda p, x: layer.apply(p, state, x, train=True))(params, x)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, x, rtol=tol, atol=tol * 3.0)

    def test_jitted_training_step_traces_once(self):
        layer = BatchNorm()
        _, params, state = layer.init(jax.random.PRNGKey(0), (-1, 4, 2))
        chex.clear_trace_counter()

        @jax.jit
        @chex.assert_max_traces(n=1)
        def step(params, state, x):
            def loss(p):
                y, new_state = layer.apply(p, state, x, train=True)
                return jnp.sum(y**2 * jnp.arange(2.0).reshape(1, 1, 2)), new_state

            grads, new_state = jax.grad(loss, has_aux=True)(params)
            return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads), new_state

        for i in range(3):
            params, state = step(params, state, jnp.asarray(randn(i, (8, 4, 2)), jnp.float32))
        assert int(state["count"]) == 3


# ---- LayerNorm, InstanceNorm, GroupNorm --------------------------------------------


def ln_key(idx):
    return (idx[0],)


def in_key(idx):
    return (idx[0], idx[-1])


def gn_key(groups, channels):
    return lambda idx: (idx[0], idx[-1] // (channels // groups))


# (name, layer, x shape, oracle key)
PER_EXAMPLE = [
    ("layer_nhwc", LayerNorm, (3, 2, 3, 4), ln_key),
    ("layer_dense", LayerNorm, (3, 5), ln_key),
    ("instance_2d", InstanceNorm, (2, 3, 2, 4), in_key),
    ("group_2d", lambda **kw: GroupNorm(2, **kw), (2, 2, 3, 6), gn_key(2, 6)),
    ("group_dense", lambda **kw: GroupNorm(2, **kw), (3, 4), gn_key(2, 4)),
]


class PerExampleNormTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(PER_EXAMPLE[3])
    def test_matches_oracle_and_autodiff(self, make, shape, key):
        self._check(make, shape, key)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*[PER_EXAMPLE[i] for i in (0, 1, 2, 4)])
    def test_matches_oracle_and_autodiff_more(self, make, shape, key):
        self._check(make, shape, key)

    def _check(self, make, shape, key):
        x, dy = randn(0, shape, 1.0, 2.0), randn(1, shape)

        def run(backward):
            layer = make(backward=backward, param_dtype=F64)
            params, state = bn_init(layer, shape)

            @self.variant
            def f(params, x):
                (y, new_state), pullback = jax.vjp(
                    lambda p, x: layer.apply(p, state, x, train=True), params, x
                )
                assert new_state == {}
                return y, pullback((dy, {}))

            return params, f(params, x)

        params, (y, (g_params, g_x)) = run("custom")
        _, autodiff = run("autodiff")
        chex.assert_trees_all_close((y, (g_params, g_x)), autodiff, **TOL)
        s_full, b_full = full(params["scale"], shape), full(params["bias"], shape)
        y_ref, _, _ = norm_ref.normalize_forward(x, s_full, b_full, key, EPS)
        chex.assert_trees_all_close(y, y_ref, **TOL)
        dx, dscale, dbias = norm_ref.normalize_backward(x, s_full, key, EPS, dy)
        chex.assert_trees_all_close(g_x, dx, **TOL)
        c = shape[-1]
        chex.assert_trees_all_close(g_params["scale"], dscale.reshape(-1, c).sum(0), **TOL)
        chex.assert_trees_all_close(g_params["bias"], dbias.reshape(-1, c).sum(0), **TOL)

    @parameterized.named_parameters(*PER_EXAMPLE[:1], *PER_EXAMPLE[2:4])
    def test_central_finite_differences(self, make, shape, key):
        del key
        layer = make(param_dtype=F64)
        params, state = bn_init(layer, shape)
        x, w = randn(2, shape), randn(3, shape)
        central_difference_check(
            lambda x, s, b: jnp.sum(
                w * jnp.tanh(layer.apply({"scale": s, "bias": b}, state, x, train=True)[0])
            ),
            (x, params["scale"], params["bias"]),
        )

    @parameterized.named_parameters(
        ("layer", LayerNorm()), ("group", GroupNorm(4)),
        ("group_default_clamped", GroupNorm()), ("layer_last", LayerNorm(axes=-1)),
    )
    def test_batch_of_one_equals_batch_of_sixteen(self, layer):
        shape = (16, 3, 3, 8)
        _, params, state = layer.init(jax.random.PRNGKey(0), (-1,) + shape[1:])
        x = jnp.asarray(randn(4, shape, 1.0, 3.0), jnp.float32)
        for train in (True, False):
            y16, _ = layer.apply(params, state, x, train=train)
            for i in (0, 7):
                y1, _ = layer.apply(params, state, x[i:i + 1], train=train)
                np.testing.assert_allclose(y1[0], y16[i], rtol=1e-5, atol=1e-6)


def test_group_norm_special_cases():
    x = jnp.asarray(randn(0, (2, 3, 3, 8)))
    ref = lambda layer: layer.apply({}, {}, x, train=True)[0]  # noqa: E731
    off = dict(use_scale=False, use_bias=False)
    # Fewer channels than the default 32 groups: one group per channel, instance norm.
    chex.assert_trees_all_close(ref(GroupNorm(**off)), ref(InstanceNorm(**off)), **TOL)
    chex.assert_trees_all_close(ref(GroupNorm(8, **off)), ref(InstanceNorm(**off)), **TOL)
    chex.assert_trees_all_close(ref(GroupNorm(1, **off)), ref(LayerNorm(**off)), **TOL)


def test_layer_norm_last_axis_oracle():
    shape = (2, 3, 4)
    x = randn(0, shape)
    y, _ = LayerNorm(axes=-1, use_scale=False, use_bias=False).apply({}, {}, x, train=False)
    want, _, _ = norm_ref.normalize_forward(
        x, np.ones(shape), np.zeros(shape), lambda i: i[:-1], EPS
    )
    chex.assert_trees_all_close(y, want, **TOL)


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (BatchNorm(), (-1, 5, 5, 3)),
        (BatchNorm(axis=1), (2, 3, 5)),
        (BatchNorm(), (4, 7)),
        (LayerNorm(), (2, 4, 4, 2)),
        (InstanceNorm(), (2, 3, 4, 5, 2)),
        (GroupNorm(2), (2, 6, 4)),
        (fcnn.LRN(), (2, 3, 3, 7)),
    ],
)
def test_init_shape_is_apply_shape(layer, input_shape):
    out_shape, params, state = layer.init(jax.random.PRNGKey(0), input_shape)
    x = jnp.ones(tuple(2 if n == -1 else n for n in input_shape), jnp.float32)
    for train in (True, False):
        y, new_state = layer.apply(params, state, x, train=train)
        assert out_shape == input_shape
        chex.assert_shape(y, x.shape)
        chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)


# ---- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: BatchNorm(epsilon=0.0), ValueError, r"epsilon=0.0: expected a finite number > 0"),
        (lambda: LayerNorm(epsilon=-1e-5), ValueError, r"epsilon=-1e-05"),
        (lambda: GroupNorm(epsilon=float("nan")), ValueError, r"epsilon=nan"),
        (lambda: BatchNorm(momentum=1.5), ValueError,
         r"momentum=1.5: expected a finite number in \[0, 1\] \(the weight of the old running value"),
        (lambda: BatchNorm(momentum=-0.1), ValueError, r"momentum=-0.1"),
        (lambda: BatchNorm(running_average="avg"), ValueError, r"running_average='avg'"),
        (lambda: BatchNorm(axis=1.0), TypeError, r"axis=1.0: expected an int"),
        (lambda: BatchNorm(backward="manual"), ValueError, r"backward='manual'"),
        (lambda: BatchNorm(use_scale=1), TypeError, r"use_scale=1"),
        (lambda: GroupNorm(num_groups=0), ValueError, r"num_groups=0: expected a positive int"),
        (lambda: LayerNorm(axes="x"), TypeError, r"axes='x'"),
    ],
)
def test_constructors_reject_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize(
    "layer, input_shape, match",
    [
        (BatchNorm(axis=4), (2, 3, 3, 4),
         r"BatchNorm: axis=4: expected an int in \[-4, 3\] for an input of rank 4 \(shape \(2, 3, 3, 4\)\)"),
        (BatchNorm(axis=-3), (2, 3), r"axis=-3: expected an int in \[-2, 1\]"),
        (BatchNorm(), (5,), r"rank 1: expected rank >= 2"),
        (BatchNorm(), (2, -1), r"channel axis 1 has size -1"),
        (GroupNorm(32), (2, 4, 4, 48), r"channels \(=48\) must be divisible by num_groups \(=32\)"),
        (GroupNorm(4), (2, 6), r"channels \(=6\) must be divisible by num_groups \(=4\)"),
        (InstanceNorm(), (2, 6), r"at least one spatial dimension"),
        (LayerNorm(axes=0), (2, 6), r"includes the batch axis 0"),
        (LayerNorm(axes=(1, 3)), (2, 6, 3), r"axis 3 is out of range"),
    ],
)
def test_init_rejects_bad_input_shapes(layer, input_shape, match):
    with pytest.raises(ValueError, match=match):
        layer.init(jax.random.PRNGKey(0), input_shape)


def test_evaluation_without_running_statistics_is_an_error():
    layer = BatchNorm()
    _, params, state = layer.init(jax.random.PRNGKey(0), (2, 3))
    x = jnp.ones((2, 3))
    for bad in ({}, None, {"mean": state["mean"]}, {"mean": jnp.zeros(4), "var": jnp.ones(4)}):
        with pytest.raises(ValueError, match=r"BatchNorm: train=False needs the running stat"):
            layer.apply(params, bad, x, train=False)
    with pytest.raises(ValueError, match=r"train=True needs the running statistics"):
        layer.apply(params, {}, x, train=True)


def test_apply_rejects_inputs_that_do_not_match_init():
    for layer in (BatchNorm(), LayerNorm(), GroupNorm(2), InstanceNorm(), fcnn.LRN()):
        _, params, state = layer.init(jax.random.PRNGKey(0), (-1, 4, 4, 6))
        with pytest.raises(ValueError, match=r"initialised for input shape \(-1, 4, 4, 6\) \(rank"):
            layer.apply(params, state, jnp.ones((2, 6)), train=False)
        with pytest.raises(ValueError, match=r"with 4 channels .* initialised for\s+6 channels"):
            layer.apply(params, state, jnp.ones((2, 4, 4, 4)), train=True)


def test_apply_rejects_bad_train_flag_and_single_value_batches():
    layer = BatchNorm()
    _, params, state = layer.init(jax.random.PRNGKey(0), (-1, 3))
    with pytest.raises(TypeError, match=r"train=None"):
        layer.apply(params, state, jnp.ones((2, 3)), train=None)
    with pytest.raises(ValueError, match=r"gives 1 value per channel"):
        layer.apply(params, state, jnp.ones((1, 3)), train=True)
    layer.apply(params, state, jnp.ones((1, 3)), train=False)  # fine in evaluation
    with pytest.raises(ValueError, match=r"axis_name='b' is not bound: call it inside"):
        BatchNorm(axis_name="b").apply(params, state, jnp.ones((2, 3)), train=True)


def test_op_rejects_bad_arguments():
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"axes=\(2,\): axis 2 is out of range"):
        normalize(x, axes=(2,))
    with pytest.raises(ValueError, match=r"repeated axis"):
        normalize(x, axes=(0, -2))
    with pytest.raises(ValueError, match=r"scale has shape \(2,\): it does not broadcast"):
        normalize(x, jnp.ones(2), axes=0)
    with pytest.raises(ValueError, match=r"epsilon=0"):
        normalize(x, axes=0, epsilon=0)
    with pytest.raises(TypeError, match=r"dtype int32"):
        normalize(jnp.ones((2, 3), jnp.int32), axes=0)
    with pytest.raises(ValueError, match=r"backward='fast'"):
        normalize_with_stats(x, 0.0, 1.0, backward="fast")


def test_custom_backward_is_the_rule_in_use():
    """The custom path goes through the hand-written custom_vjp; autodiff does not."""
    x = jnp.ones((4, 3))
    for f in (
        lambda x, b: normalize(x, axes=0, backward=b)[0],
        lambda x, b: normalize_with_stats(x, 0.0, 1.0, backward=b),
    ):
        assert "custom_vjp_call" in str(jax.make_jaxpr(lambda x: f(x, "custom"))(x))
        assert "custom_vjp_call" not in str(jax.make_jaxpr(lambda x: f(x, "autodiff"))(x))


# ---- the Darknet block ----------------------------------------------------------------


def test_conv_bn_leaky_is_conv_without_bias_then_batch_norm_then_leaky_relu():
    block = fcnn.conv_bn_leaky(8, 3, strides=2)
    out_shape, params, state = block.init(jax.random.PRNGKey(0), (-1, 9, 9, 3))
    assert out_shape == (-1, 5, 5, 8)
    assert set(params["0"]) == {"kernel"} and params["0"]["kernel"].shape == (3, 3, 3, 8)
    assert set(params["1"]) == {"scale", "bias"} and params["2"] == {}
    assert set(state["1"]) == {"mean", "var", "count"}
    params["1"] = {"scale": jnp.asarray(randn(1, (8,)), jnp.float32),
                   "bias": jnp.asarray(randn(2, (8,)), jnp.float32)}
    x = jnp.asarray(randn(0, (4, 9, 9, 3)), jnp.float32)
    apply = jax.jit(block.apply, static_argnames="train")
    y, new_state = apply(params, state, x, train=True)
    chex.assert_shape(y, (4, 5, 5, 8))

    conv = fcnn.Conv(8, 3, strides=2, use_bias=False)
    z = np.asarray(jax.jit(lambda p, x: conv.apply(p, {}, x, train=True)[0])(params["0"], x),
                   np.float64)
    mean, var = z.mean((0, 1, 2), keepdims=True), z.var((0, 1, 2), keepdims=True)
    scale = np.asarray(params["1"]["scale"]).reshape(1, 1, 1, 8)
    bias = np.asarray(params["1"]["bias"]).reshape(1, 1, 1, 8)
    bn = scale * (z - mean) / np.sqrt(var + EPS) + bias
    np.testing.assert_allclose(y, np.where(bn > 0, bn, 0.1 * bn), rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(new_state["1"]["mean"], 0.01 * mean.reshape(8), rtol=1e-4)
    y_eval, eval_state = apply(params, new_state, x[:1], train=False)
    chex.assert_shape(y_eval, (1, 5, 5, 8))
    chex.assert_trees_all_equal(eval_state, new_state)


def test_one_layer_object_reused_at_two_places_with_different_shapes():
    norm = fcnn.LayerNorm()
    model = fcnn.serial(norm, fcnn.Dense(6), norm)
    _, params, state = model.init(jax.random.PRNGKey(0), (2, 3))
    y, _ = model.apply(params, state, jnp.ones((2, 3)), train=False)
    chex.assert_shape(y, (2, 6))
    with pytest.raises(ValueError, match="initialised for"):
        norm.apply(params["0"], state["0"], jnp.ones((2, 4, 4)), train=False)
