"""Regularizers: L2 / L1 penalties on the gradient, decoupled weight decay, max-norm."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fcnn
from fcnn import losses
from fcnn.train import init_opt_state, make_optimizer, make_train_step
from fcnn.train.regularizers import (
    add_l1,
    add_l2,
    decoupled_weight_decay,
    kernel_mask,
    max_norm,
    project_max_norm,
    unit_norms,
)


def params_tree(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 4)), jnp.float32),
                 "bias": jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
        "dense": {"kernel": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
                  "bias": jnp.asarray(rng.normal(size=(3,)), jnp.float32)},
    }


def grads_tree(seed=1):
    return params_tree(seed)


def test_kernel_mask_selects_rank_two_and_up():
    mask = kernel_mask(params_tree())
    assert mask == {"conv": {"kernel": True, "bias": False}, "dense": {"kernel": True, "bias": False}}


def test_add_l2_is_the_gradient_of_half_the_squared_norm_of_kernels():
    params, grads, lam = params_tree(), grads_tree(), 0.3
    out, _ = add_l2(lam).update(grads, add_l2(lam).init(params), params)
    penalty_grad = jax.grad(lambda p: lam * losses.l2_penalty(
        {"a": p["conv"]["kernel"], "b": p["dense"]["kernel"]}))(params)
    want = jax.tree.map(lambda g, d: g + d, grads, penalty_grad)
    chex.assert_trees_all_close(out, want, rtol=1e-6)
    np.testing.assert_array_equal(out["dense"]["bias"], grads["dense"]["bias"])


def test_add_l1_adds_sign_of_kernels_only():
    params, grads, lam = params_tree(), grads_tree(), 0.05
    t = add_l1(lam)
    out, _ = t.update(grads, t.init(params), params)
    np.testing.assert_allclose(out["conv"]["kernel"],
                               np.asarray(grads["conv"]["kernel"]) + lam * np.sign(params["conv"]["kernel"]),
                               rtol=1e-6)
    np.testing.assert_array_equal(out["conv"]["bias"], grads["conv"]["bias"])
    t_all = add_l1(lam, mask="all")
    out_all, _ = t_all.update(grads, t_all.init(params), params)
    np.testing.assert_allclose(out_all["conv"]["bias"],
                               np.asarray(grads["conv"]["bias"]) + lam * np.sign(params["conv"]["bias"]),
                               rtol=1e-6)


def test_l2_penalty_in_the_loss_equals_l2_on_the_gradient():
    """(lam/2)||w||^2 added to the objective and lam * w added to the gradient agree."""
    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(6), fcnn.Tanh(), fcnn.Dense(3))
    _, params, state = model.init(jax.random.PRNGKey(0), (-1, 4, 4, 1))
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 4, 4, 1), jnp.float32)
    y = jnp.arange(10, dtype=jnp.int32) % 3
    lam, lr = 0.05, 0.2
    kernels = lambda p: {k: v["kernel"] for k, v in p.items() if "kernel" in v}  # noqa: E731
    by_loss = make_train_step(model, losses.softmax_cross_entropy, optax.sgd(lr),
                              penalty=lambda p: lam * losses.l2_penalty(kernels(p)), donate=False)
    opt = make_optimizer("sgd", lr, l2=lam)
    by_grad = make_train_step(model, losses.softmax_cross_entropy, opt, donate=False)
    a = by_loss(params, state, optax.sgd(lr).init(params), (x, y), None)[0]
    b = by_grad(params, state, init_opt_state(opt, params), (x, y), None)[0]
    chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-7)


def test_decoupled_weight_decay_bypasses_the_adaptive_scaling():
    """AdamW: the decay term is lr * wd * w whatever Adam's denominators are."""
    params = params_tree()
    zero = jax.tree.map(jnp.zeros_like, params)
    opt = make_optimizer("adamw", 0.1, weight_decay=0.5)
    updates, _ = opt.update(zero, opt.init(params), params)
    np.testing.assert_allclose(updates["dense"]["kernel"], -0.1 * 0.5 * np.asarray(params["dense"]["kernel"]),
                               rtol=1e-6)
    np.testing.assert_array_equal(updates["dense"]["bias"], 0.0)
    t = decoupled_weight_decay(0.5)
    out, _ = t.update(zero, t.init(params), params)
    np.testing.assert_allclose(out["conv"]["kernel"], 0.5 * np.asarray(params["conv"]["kernel"]), rtol=1e-6)


def test_project_max_norm_on_a_hand_example():
    kernel = jnp.array([[3.0, 0.3], [4.0, 0.4]], jnp.float32)  # unit norms 5 and 0.5
    out = project_max_norm(kernel, 1.0)
    np.testing.assert_allclose(out, [[0.6, 0.3], [0.8, 0.4]], rtol=1e-6)


def test_max_norm_keeps_every_unit_within_the_bound_after_each_update():
    params, c = params_tree(), 2.0
    opt = make_optimizer("sgd", 0.5, max_norm=c)
    state = opt.init(params)
    for seed in range(4):
        grads = grads_tree(seed + 10)
        updates, state = opt.update(grads, state, params)
        unconstrained = optax.apply_updates(params, jax.tree.map(lambda g: -0.5 * g, grads))
        params = optax.apply_updates(params, updates)
        for layer in ("conv", "dense"):
            norms = np.asarray(unit_norms(params[layer]["kernel"])).ravel()
            assert np.all(norms <= c * (1 + 1e-5)), norms
            free = np.asarray(unit_norms(unconstrained[layer]["kernel"])).ravel() <= c
            # units within the bound are left exactly as the optimizer moved them
            np.testing.assert_array_equal(
                np.asarray(params[layer]["kernel"])[..., free],
                np.asarray(unconstrained[layer]["kernel"])[..., free])
        # biases are not constrained
        np.testing.assert_array_equal(params["conv"]["bias"], unconstrained["conv"]["bias"])


def test_max_norm_conv_units_are_output_channels():
    kernel = jnp.ones((3, 3, 2, 4), jnp.float32) * jnp.arange(1, 5, dtype=jnp.float32).reshape(1, 1, 1, 4)
    norms = unit_norms(kernel)
    chex.assert_shape(norms, (1, 1, 1, 4))
    np.testing.assert_allclose(np.ravel(norms), np.sqrt(18.0) * np.arange(1, 5), rtol=1e-6)
    t = max_norm(1.0)
    params = {"k": kernel}
    updates, _ = t.update({"k": jnp.zeros_like(kernel)}, t.init(params), params)
    np.testing.assert_allclose(np.ravel(unit_norms(kernel + updates["k"])), 1.0, rtol=1e-6)


@pytest.mark.parametrize("build, match", [
    (lambda: add_l2(-0.1), r"l2=-0\.1"),
    (lambda: add_l1(float("nan")), r"l1=nan"),
    (lambda: decoupled_weight_decay(-1), r"weight_decay=-1"),
    (lambda: max_norm(0.0), r"max_norm=0\.0.*> 0"),
    (lambda: max_norm(-2), r"max_norm=-2"),
    (lambda: add_l2(0.1, mask="biases"), r"mask='biases'"),
])
def test_bad_arguments(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("mask, match", [
    (3, r"^mask=3: expected"),
    ({"conv": {"kernel": True, "bias": 0}}, r"^mask\['conv'\]\['bias'\]=0: expected"),
    ([np.zeros(2, np.float32)], r"^mask\[0\]=array"),
])
def test_a_mask_that_is_not_bools_is_refused_where_it_is_given(mask, match):
    with pytest.raises(TypeError, match=match):
        add_l1(0.1, mask=mask)


def test_a_mask_of_bools_selects_the_leaves_it_marks():
    params, grads = params_tree(), grads_tree()
    mask = {"conv": {"kernel": np.bool_(False), "bias": True},
            "dense": {"kernel": jnp.asarray(True), "bias": False}}
    t = add_l2(0.5, mask=mask)
    updates, _ = t.update(grads, t.init(params), params)
    for layer in ("conv", "dense"):
        for name in ("kernel", "bias"):
            expected = grads[layer][name] + (0.5 * params[layer][name] if mask[layer][name]
                                             else 0.0)
            np.testing.assert_allclose(updates[layer][name], expected, rtol=1e-6)


def test_max_norm_needs_params():
    t = max_norm(1.0, mask="all")
    with pytest.raises(ValueError, match="max_norm needs params"):
        t.update({"k": jnp.ones((2, 2))}, t.init({"k": jnp.ones((2, 2))}))
