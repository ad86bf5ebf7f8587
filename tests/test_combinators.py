"""The layer protocol and combinators, on small layers defined here."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn.layers.base import check_train_flag, make_layer, require_rng


def scale_layer(init_value=2.0):
    """y = a * x with one learnable scalar a."""

    def init(rng, input_shape):
        del rng
        return tuple(input_shape), {"a": jnp.asarray(init_value, jnp.float32)}, {}

    def apply(params, state, x, *, train, rng=None):
        del train, rng
        return params["a"] * x, state

    return make_layer("scale", init, apply)


def counter_layer():
    """Identity that counts its training calls in `state`."""

    def init(rng, input_shape):
        del rng
        return tuple(input_shape), {}, {"calls": jnp.zeros((), jnp.int32)}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        return x, {"calls": state["calls"] + (1 if train else 0)}

    return make_layer("counter", init, apply)


def noise_layer():
    """Adds uniform noise in training; needs an rng then."""

    def init(rng, input_shape):
        del rng
        return tuple(input_shape), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params
        if not check_train_flag(train, "noise"):
            return x, state
        rng = require_rng(rng, "noise")
        return x + jax.random.uniform(rng, x.shape, x.dtype), state

    return make_layer("noise", init, apply)


def pad_channels(extra):
    """Appends `extra` zero channels: changes the shape, so residual must refuse it."""

    def init(rng, input_shape):
        del rng
        return tuple(input_shape[:-1]) + (input_shape[-1] + extra,), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, train, rng
        pad = [(0, 0)] * (x.ndim - 1) + [(0, extra)]
        return jnp.pad(x, pad), state

    return make_layer("pad_channels", init, apply)


def test_layer_unpacks_into_init_and_apply():
    init, apply = scale_layer()
    shape, params, state = init(jax.random.PRNGKey(0), (-1, 3))
    assert shape == (-1, 3)
    y, _ = apply(params, state, jnp.ones((2, 3)), train=False)
    np.testing.assert_allclose(y, 2 * np.ones((2, 3)))


def test_serial_threads_values_params_and_state():
    model = fcnn.serial(scale_layer(2.0), counter_layer(), scale_layer(3.0))
    shape, params, state = model.init(jax.random.PRNGKey(0), (4, 5))
    assert shape == (4, 5)
    assert set(params) == {"0", "1", "2"}
    x = jnp.arange(20.0).reshape(4, 5)
    y, state = model.apply(params, state, x, train=True)
    y, state = model.apply(params, state, x, train=True)
    np.testing.assert_allclose(y, 6 * np.arange(20.0).reshape(4, 5))
    assert int(state["1"]["calls"]) == 2
    _, eval_state = model.apply(params, state, x, train=False)
    assert int(eval_state["1"]["calls"]) == 2


def test_compose_is_serial():
    assert fcnn.compose is fcnn.serial


def test_serial_splits_rng_so_children_draw_different_noise():
    model = fcnn.serial(noise_layer(), noise_layer())
    _, params, state = model.init(jax.random.PRNGKey(0), (1, 1000))
    x = jnp.zeros((1, 1000))
    both, _ = model.apply(params, state, x, train=True, rng=jax.random.PRNGKey(1))
    # Two independent U(0, 1) draws sum to a mean near 1.0 with variance 2/12; the
    # same draw twice would give variance 4/12.
    assert abs(float(jnp.mean(both)) - 1.0) < 0.05
    assert abs(float(jnp.var(both)) - 2 / 12) < 0.03
    again, _ = model.apply(params, state, x, train=True, rng=jax.random.PRNGKey(1))
    np.testing.assert_array_equal(again, both)


def test_stochastic_layer_without_rng_in_training_names_the_fix():
    model = fcnn.serial(noise_layer())
    _, params, state = model.init(jax.random.PRNGKey(0), (1, 3))
    with pytest.raises(ValueError, match="noise needs an rng in training mode.*train=False"):
        model.apply(params, state, jnp.zeros((1, 3)), train=True)
    y, _ = model.apply(params, state, jnp.zeros((1, 3)), train=False)
    np.testing.assert_array_equal(y, np.zeros((1, 3)))


def test_train_must_be_a_python_bool():
    with pytest.raises(TypeError, match=r"train=1.*True or False"):
        check_train_flag(1, "noise")
    with pytest.raises(TypeError, match="train="):
        fcnn.serial(noise_layer()).apply({"0": {}}, {"0": {}}, jnp.zeros((1, 2)), train=jnp.array(True))


def test_train_is_keyword_only_without_default():
    model = fcnn.serial(scale_layer())
    _, params, state = model.init(jax.random.PRNGKey(0), (1, 2))
    with pytest.raises(TypeError):
        model.apply(params, state, jnp.zeros((1, 2)))  # pylint: disable=missing-kwoa
    with pytest.raises(TypeError):
        model.apply(params, state, jnp.zeros((1, 2)), False)  # pylint: disable=too-many-function-args


def test_fan_out_parallel_and_fan_in():
    branch = fcnn.serial(
        fcnn.fan_out(2), fcnn.parallel(scale_layer(2.0), scale_layer(5.0)), fcnn.fan_in_sum()
    )
    shape, params, state = branch.init(jax.random.PRNGKey(0), (2, 3))
    assert shape == (2, 3)
    y, _ = branch.apply(params, state, jnp.ones((2, 3)), train=False)
    np.testing.assert_allclose(y, 7 * np.ones((2, 3)))

    concat = fcnn.serial(
        fcnn.fan_out(2), fcnn.parallel(fcnn.identity(), pad_channels(2)), fcnn.fan_in_concat()
    )
    shape, params, state = concat.init(jax.random.PRNGKey(0), (2, 3))
    y, _ = concat.apply(params, state, jnp.ones((2, 3)), train=False)
    assert shape == (2, 8)
    chex.assert_shape(y, shape)


def test_parallel_rejects_wrong_number_of_inputs():
    model = fcnn.parallel(scale_layer(), scale_layer())
    with pytest.raises(ValueError, match="tuple of 2 shapes.*fan_out"):
        model.init(jax.random.PRNGKey(0), (2, 3))
    _, params, state = model.init(jax.random.PRNGKey(0), ((2, 3), (2, 3)))
    with pytest.raises(ValueError, match="expected a tuple of 2 inputs"):
        model.apply(params, state, jnp.ones((2, 3)), train=False)


def test_fan_in_sum_rejects_different_shapes():
    model = fcnn.fan_in_sum()
    with pytest.raises(ValueError, match=r"input 1 has shape \(2, 4\), expected \(2, 3\)"):
        model.init(jax.random.PRNGKey(0), ((2, 3), (2, 4)))


def test_residual_adds_the_input_and_checks_the_shape():
    model = fcnn.residual(scale_layer(3.0))
    shape, params, state = model.init(jax.random.PRNGKey(0), (2, 3))
    y, _ = model.apply(params, state, jnp.ones((2, 3)), train=False)
    assert shape == (2, 3)
    np.testing.assert_allclose(y, 4 * np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"maps shape \(2, 3\) to \(2, 5\)"):
        fcnn.residual(pad_channels(2)).init(jax.random.PRNGKey(0), (2, 3))


def test_combinators_reject_non_layers():
    with pytest.raises(TypeError, match="argument 1.*forget to call the constructor"):
        fcnn.serial(scale_layer(), scale_layer)
    with pytest.raises(ValueError, match="at least one layer"):
        fcnn.serial()
    with pytest.raises(ValueError, match="num=0"):
        fcnn.fan_out(0)


def test_grad_jit_and_vmap_through_serial():
    model = fcnn.serial(scale_layer(2.0), scale_layer(3.0))
    _, params, state = model.init(jax.random.PRNGKey(0), (1, 4))
    x = jnp.arange(4.0).reshape(1, 4)

    def loss(p):
        y, _ = model.apply(p, state, x, train=True)
        return jnp.sum(y)

    grads = jax.jit(jax.grad(loss))(params)
    # d/da0 sum(a0 a1 x) = a1 sum(x) = 3 * 6, d/da1 = a0 sum(x) = 2 * 6
    np.testing.assert_allclose(grads["0"]["a"], 18.0)
    np.testing.assert_allclose(grads["1"]["a"], 12.0)

    stacked = jax.tree_util.tree_map(lambda a: jnp.stack([a, 2 * a]), params)
    ys = jax.vmap(lambda p: model.apply(p, state, x, train=False)[0])(stacked)
    np.testing.assert_allclose(ys[1], 4 * ys[0])


def test_count_params_and_summary():
    model = fcnn.serial(scale_layer(), fcnn.residual(scale_layer()), counter_layer())
    _, params, _ = model.init(jax.random.PRNGKey(0), (2, 3))
    assert fcnn.count_params(params) == 2
    assert fcnn.count_params({"w": np.zeros((3, 4)), "b": np.zeros(4)}) == 16
    lines = []
    text = fcnn.summary(model, (2, 3), print_fn=lines.append)
    assert lines == [text]
    rows = text.splitlines()
    assert rows[0].split() == ["layer", "output", "shape", "params", "state"]
    assert [r.split()[0] for r in rows[2:5]] == ["scale", "residual", "counter"]
    assert rows[-2].split()[-2:] == ["2", "1"]  # the counter keeps one scalar of state
    assert rows[-1] == "trainable parameters 2; non-trainable state (running statistics) 1"


def test_apply_with_intermediates_matches_apply_and_lists_every_leaf():
    from fcnn.layers.base import apply_with_intermediates

    model = fcnn.serial(
        noise_layer(), fcnn.serial(scale_layer(2.0), noise_layer()), fcnn.residual(scale_layer(3.0))
    )
    _, params, state = model.init(jax.random.PRNGKey(0), (2, 3))
    x = jnp.ones((2, 3))
    rng = jax.random.PRNGKey(7)
    y, new_state = model.apply(params, state, x, train=True, rng=rng)
    y2, new_state2, seen = apply_with_intermediates(model, params, state, x, train=True, rng=rng)
    np.testing.assert_array_equal(y, y2)
    assert [(s.path, s.name) for s in seen] == [
        ("0", "noise"), ("1/0", "scale"), ("1/1", "noise"), ("2", "residual")
    ]
    np.testing.assert_array_equal(seen[-1].value, y)
    np.testing.assert_allclose(seen[1].value, 2 * seen[0].value)
    chex.assert_trees_all_equal(new_state, new_state2)


def test_init_takes_none_as_the_batch_size_and_says_how_to_call_it():
    model = fcnn.serial(fcnn.Conv(4, 3), fcnn.Relu(), fcnn.Flatten(), fcnn.Dense(2))
    assert model.init(jax.random.PRNGKey(0), (None, 8, 8, 1))[0] == (-1, 2)
    assert model.init(jax.random.PRNGKey(0), [None, 8, 8, 1])[0] == (-1, 2)
    with pytest.raises(TypeError, match=r"serial.init: rng=0: expected a PRNG key, e.g. model.init\(jax.random.PRNGKey\(0\)"):
        model.init(0, (None, 8, 8, 1))
    with pytest.raises(TypeError, match=r"input_shape=\(None, None, 8, 1\): expected a tuple of ints with the batch axis first"):
        model.init(jax.random.PRNGKey(0), (None, None, 8, 1))
    with pytest.raises(TypeError, match=r"serial\(\[\.\.\.\]\): got one list of 2 layers: .* serial\(\*layers\)"):
        fcnn.serial([fcnn.Relu(), fcnn.Relu()])


def test_a_batch_without_its_batch_axis_at_init_is_named_at_training():
    """init((8, 8, 1)) builds a 1-D model (8 examples of 8 steps, 1 channel): training
    on 2-D images then says that init's shape needs the batch axis."""
    from fcnn.train.step import check_batch_fits

    model = fcnn.serial(fcnn.Conv(4, 3), fcnn.Flatten(), fcnn.Dense(2))
    _, params, _ = model.init(jax.random.PRNGKey(0), (8, 8, 1))
    with pytest.raises(ValueError, match=r"batch axis: \(None, \*image_shape\)"):
        check_batch_fits(model, params, (16, 8, 8, 1))
