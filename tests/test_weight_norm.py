"""Weight normalization w = g * v / ||v||: the op against the NumPy loop oracle,
autodiff and central finite differences, and the WeightNorm wrapper on Dense and Conv."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import fcnn
from fcnn.ops.normalization import weight_normalize
from tests.reference import norm_ref

TOL = dict(atol=1e-10, rtol=1e-10)
F64 = jnp.float64


def randn(seed, shape):
    return np.random.default_rng(seed).normal(size=shape)


KERNELS = [("dense", (4, 3)), ("conv1d", (3, 2, 4)), ("conv2d", (3, 3, 2, 4))]


class WeightNormOpTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(KERNELS[2])
    def test_matches_oracle_and_autodiff(self, shape):
        self._check(shape)

    @chex.variants(with_jit=True)
    @parameterized.named_parameters(*KERNELS[:2])
    def test_matches_oracle_and_autodiff_more(self, shape):
        self._check(shape)

    def _check(self, shape):
        v, g, dw = randn(0, shape), randn(1, shape[-1:]), randn(2, shape)

        def run(backward):
            @self.variant
            def f(v, g):
                w, pullback = jax.vjp(lambda v, g: weight_normalize(v, g, backward=backward), v, g)
                return w, pullback(dw)

            return f(v, g)

        w, (dv, dg) = run("custom")
        chex.assert_trees_all_close((w, (dv, dg)), run("autodiff"), **TOL)
        chex.assert_trees_all_close(w, norm_ref.weight_norm_forward(v, g), **TOL)
        dv_ref, dg_ref = norm_ref.weight_norm_backward(v, g, dw)
        chex.assert_trees_all_close(dv, dv_ref, **TOL)
        chex.assert_trees_all_close(dg, dg_ref, **TOL)
        # dv is orthogonal to v, unit by unit: rescaling v leaves w unchanged.
        np.testing.assert_allclose(
            np.sum((dv * v).reshape(-1, shape[-1]), axis=0), 0.0, atol=1e-12
        )

    @parameterized.named_parameters(*KERNELS[::2])
    def test_central_finite_differences(self, shape):
        v, g, c = randn(3, shape), randn(4, shape[-1:]), randn(5, shape)
        loss = jax.jit(lambda v, g: jnp.sum(c * jnp.sin(weight_normalize(v, g))))
        grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(v, g)
        eps = 1e-6
        for i, (a, grad) in enumerate(zip((v, g), grads)):
            d = randn(6 + i, a.shape)
            args_p, args_m = [v, g], [v, g]
            args_p[i], args_m[i] = a + eps * d, a - eps * d
            numeric = (loss(*args_p) - loss(*args_m)) / (2 * eps)
            np.testing.assert_allclose(float(jnp.sum(grad * d)), float(numeric), rtol=1e-7)


def test_op_rejects_bad_arguments():
    v = jnp.ones((3, 4))
    with pytest.raises(ValueError, match=r"g has shape \(3,\): it does not broadcast"):
        weight_normalize(v, jnp.ones(3))
    with pytest.raises(ValueError, match=r"g has shape \(3, 4\): it must have size 1 along"):
        weight_normalize(v, jnp.ones((3, 4)))
    with pytest.raises(ValueError, match=r"backward='x'"):
        weight_normalize(v, jnp.ones(4), backward="x")
    assert "custom_vjp_call" in str(jax.make_jaxpr(lambda v: weight_normalize(v, v[0]))(v))


def dense(**kw):
    return fcnn.Dense(3, param_dtype=F64, **kw)


def conv2d(**kw):
    return fcnn.Conv(4, 3, strides=2, param_dtype=F64, **kw)


def conv1d_no_bias(**kw):
    return fcnn.Conv(3, (2,), use_bias=False, param_dtype=F64, **kw)


@pytest.mark.parametrize(
    "inner, x_shape, backward",
    [
        (dense, (5, 4), "custom"),
        (dense, (5, 4), "autodiff"),
        (conv2d, (2, 5, 5, 2), "custom"),
        (conv1d_no_bias, (2, 6, 2), "custom"),
    ],
)
def test_wrapper_on_dense_and_conv(inner, x_shape, backward):
    layer = fcnn.WeightNorm(inner(backward=backward), backward=backward)
    base = inner()
    rng = jax.random.PRNGKey(0)
    out_shape, params, state = layer.init(rng, x_shape)
    base_shape, base_params, _ = base.init(rng, x_shape)
    assert out_shape == base_shape and state == {}
    assert set(params) == (set(base_params) - {"kernel"}) | {"v", "g"}
    x = randn(0, x_shape)

    # At init the function is the wrapped layer's.
    forward = jax.jit(lambda p, layer: layer.apply(p, {}, x, train=True)[0], static_argnums=1)
    y0 = forward(params, layer)
    chex.assert_trees_all_close(y0, forward(base_params, base), **TOL)
    chex.assert_shape(y0, out_shape)

    params = {**params, "v": randn(1, params["v"].shape), "g": randn(2, params["g"].shape)}
    w = norm_ref.weight_norm_forward(np.asarray(params["v"]), np.asarray(params["g"]))
    plain = {k: p for k, p in params.items() if k not in ("v", "g")}
    plain["kernel"] = w
    c = randn(3, out_shape)

    def loss(params, layer):
        return jnp.sum(c * layer.apply(params, {}, x, train=False)[0])

    chex.assert_trees_all_close(forward(params, layer), forward(plain, base), **TOL)
    grad = jax.jit(jax.grad(loss), static_argnums=1)
    grads = grad(params, layer)
    dw = grad(plain, base)["kernel"]
    dv_ref, dg_ref = norm_ref.weight_norm_backward(
        np.asarray(params["v"]), np.asarray(params["g"]), np.asarray(dw)
    )
    chex.assert_trees_all_close(grads["v"], dv_ref, **TOL)
    chex.assert_trees_all_close(grads["g"], dg_ref, **TOL)


def test_wrapper_rejects_layers_without_a_kernel():
    with pytest.raises(TypeError, match=r"WeightNorm: argument 0 is .*expected a Layer"):
        fcnn.WeightNorm(fcnn.Dense)
    with pytest.raises(ValueError, match=r"WeightNorm\(BatchNorm\): the wrapped layer's params "
                                         r"are \['bias', 'scale'\]: expected a 'kernel'"):
        fcnn.WeightNorm(fcnn.BatchNorm()).init(jax.random.PRNGKey(0), (2, 3))
    layer = fcnn.WeightNorm(fcnn.Dense(2))
    _, params, state = layer.init(jax.random.PRNGKey(0), (2, 3))
    with pytest.raises(ValueError, match=r"params has no \['g'\]"):
        layer.apply({"v": params["v"]}, state, jnp.ones((2, 3)), train=False)


# Data-dependent initialization (Salimans & Kingma, 2016, section 3)

from fcnn.layers.base import apply_with_intermediates  # noqa: E402
from fcnn.layers.weight_norm import data_dependent_init  # noqa: E402


def _ddi_model(use_bias=True):
    return fcnn.serial(
        fcnn.WeightNorm(fcnn.Conv(4, 3, use_bias=use_bias, param_dtype=F64)), fcnn.Relu(),
        fcnn.Flatten(), fcnn.WeightNorm(fcnn.Dense(5, param_dtype=F64)), fcnn.Relu(),
        fcnn.Dense(3, param_dtype=F64))


@pytest.mark.parametrize("use_bias", [True, False])
def test_data_dependent_init_standardizes_every_weight_normed_pre_activation(use_bias):
    model = _ddi_model(use_bias)
    x = 3.0 + 2.0 * randn(0, (16, 6, 6, 2))
    _, params, state = model.init(jax.random.PRNGKey(0), x.shape)
    new = data_dependent_init(model, params, state, x, epsilon=1e-12)
    _, _, seen = apply_with_intermediates(model, new, state, x, train=False)
    outputs = {item.path: np.asarray(item.value) for item in seen}
    for path in ("0", "3"):  # both, the second on the output of the first as initialized
        t = outputs[path].reshape(-1, outputs[path].shape[-1])
        np.testing.assert_allclose(t.var(axis=0), 1.0, rtol=1e-8)
        if use_bias or path == "3":
            np.testing.assert_allclose(t.mean(axis=0), 0.0, atol=1e-8)
    # the directions v and every other parameter are kept; only g and the biases move
    for path in ("0", "3"):
        np.testing.assert_array_equal(new[path]["v"], params[path]["v"])
    chex.assert_trees_all_equal(new["5"], params["5"])
    assert set(new["0"]) == set(params["0"])
    # the formula: g = 1 / sigma, bias = -mu / sigma of t = x . v / ||v|| (layer 0 sees x)
    v = np.asarray(params["0"]["v"])
    unit = {k: p for k, p in params["0"].items() if k not in ("v", "g")}
    unit["kernel"] = v / np.sqrt((v.reshape(-1, 4) ** 2).sum(0))
    if use_bias:
        unit["bias"] = np.zeros(4)
    t = np.asarray(fcnn.Conv(4, 3, use_bias=use_bias).apply(unit, {}, x, train=False)[0]).reshape(-1, 4)
    np.testing.assert_allclose(new["0"]["g"], 1 / t.std(axis=0), rtol=1e-8)
    if use_bias:
        np.testing.assert_allclose(new["0"]["bias"], -t.mean(axis=0) / t.std(axis=0), rtol=1e-8)


def test_data_dependent_init_refuses_models_it_cannot_initialize():
    x = jnp.ones((4, 3))
    plain = fcnn.serial(fcnn.Dense(2), fcnn.Relu())
    _, params, state = plain.init(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match=r"has no WeightNorm layer to initialize; wrap"):
        data_dependent_init(plain, params, state, x)
    hidden = fcnn.serial(fcnn.fan_out(2), fcnn.parallel(fcnn.WeightNorm(fcnn.Dense(2)),
                                                        fcnn.Dense(2)), fcnn.fan_in_sum())
    _, params, state = hidden.init(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match=r"1 of the 1 WeightNorm layers .* other than serial"):
        data_dependent_init(hidden, params, state, x)
    model = _ddi_model()
    _, params, state = model.init(jax.random.PRNGKey(0), (2, 5, 5, 2))
    with pytest.raises(ValueError, match=r"epsilon"):
        data_dependent_init(model, params, state, jnp.ones((2, 5, 5, 2)), epsilon=0.0)
