"""Diagnostics on hand-made activations and gradients with known answers."""

import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import diagnostics
from fcnn.layers.base import ACTIVATION, Intermediate, Layer
from fcnn.ops.activations import ACTIVATIONS


def test_dead_and_active_fractions_per_unit():
    # 2 examples x 2 positions x 4 units; unit 0 never fires, unit 3 fires once.
    y = jnp.array(
        [[[0.0, 1.0, 2.0, 0.0], [-1.0, 0.5, 0.0, 0.0]],
         [[0.0, 0.0, 3.0, 0.0], [-2.0, 1.0, 1.0, 0.1]]]
    )
    assert float(diagnostics.dead_fraction(y)) == pytest.approx(0.25)
    positives = 7  # 1, 2, 0.5, 3, 1, 1, 0.1
    assert float(diagnostics.active_fraction(y)) == pytest.approx(positives / 16)


def test_saturation_uses_the_derivative():
    # sigmoid derivative f(1-f) < 0.025 <=> f < 0.02566 or f > 0.97434
    f = jnp.array([0.01, 0.03, 0.5, 0.97, 0.99])
    assert float(diagnostics.saturated_fraction(f, ACTIVATIONS["sigmoid"])) == pytest.approx(2 / 5)
    # tanh derivative 1 - f^2 < 0.1 <=> |f| > 0.9487
    t = jnp.array([-0.99, -0.9, 0.0, 0.94, 0.96])
    assert float(diagnostics.saturated_fraction(t, ACTIVATIONS["tanh"])) == pytest.approx(2 / 5)
    assert diagnostics.saturated_fraction(t, ACTIVATIONS["relu"]) is None
    assert diagnostics.saturated_fraction(t, None) is None


def _user_activation():
    """A layer written by a user with the public constructor: role ACTIVATION."""
    def init(rng, input_shape):
        return tuple(input_shape), {}, {}

    def apply(params, state, x, *, train, rng=None):
        return jnp.clip(x, 0.0, 1.0), state

    return Layer(init, apply, name="HardClip", role=ACTIVATION)


def test_unit_statistics_selects_activation_layers_by_role():
    items = [
        Intermediate("0", fcnn.Conv(8, 3), jnp.ones((2, 4))),
        Intermediate("1", fcnn.Relu(), jnp.array([[0.0, 1.0], [0.0, 2.0]])),
        Intermediate("2", fcnn.LeakyRelu(), jnp.array([[-0.01, 1.0]])),
        Intermediate("3/1", fcnn.Sigmoid(), jnp.array([[0.5, 0.999]])),
        Intermediate("4", _user_activation(), jnp.array([[0.0, 0.0], [0.0, 1.0]])),
    ]
    stats = diagnostics.unit_statistics(items)
    assert sorted(stats) == ["1", "2", "3/1", "4"]
    assert float(stats["4"]["dead"]) == pytest.approx(0.5) and "saturated" not in stats["4"]
    assert float(stats["1"]["dead"]) == pytest.approx(0.5)
    assert float(stats["1"]["active"]) == pytest.approx(0.5)
    assert "saturated" not in stats["1"]
    assert float(stats["3/1"]["saturated"]) == pytest.approx(0.5)


def test_layer_gradient_norms_group_by_layer():
    grads = {
        "0": {"kernel": jnp.full((2, 2), 1.0), "bias": jnp.array([2.0, 0.0])},
        "1": {},
        "3": {"0": {"kernel": jnp.array([3.0, 4.0])}},
    }
    norms = diagnostics.layer_gradient_norms(grads)
    assert sorted(norms) == ["0", "3/0"]
    np.testing.assert_allclose(norms["0"], np.sqrt(4 * 1.0 + 4.0))
    np.testing.assert_allclose(norms["3/0"], 5.0)


def test_bias_gradient_norms_take_only_the_bias_of_each_layer():
    grads = {"0": {"kernel": jnp.ones((2, 3)), "bias": jnp.array([3.0, 4.0])},
             "1": {"scale": jnp.ones(3)},
             "2": {"0": {"kernel": jnp.ones(1), "bias": jnp.array([-12.0, 0.0, 5.0])}}}
    norms = diagnostics.bias_gradient_norms(grads)
    assert set(norms) == {"0", "2/0"}
    np.testing.assert_allclose([norms["0"], norms["2/0"]], [5.0, 13.0])


def test_activity_is_measured_against_the_activations_value_at_zero():
    """Comparable across activations: a sigmoid value is active above 1/2, a softplus
    one above log 2, a ReLU one above 0: each is exactly a positive pre-activation."""
    z = jnp.array([[-2.0, -0.1, 0.3, 1.5], [-1.0, 0.0, 0.2, -0.5]])  # 3 of 8 positive
    for name in ("sigmoid", "tanh", "relu", "leaky_relu", "softplus", "elu", "gelu"):
        layer = fcnn.Activation(name)
        y, _ = layer.apply({}, {}, z, train=False)
        stats = diagnostics.unit_statistics([Intermediate("0", layer, y)])["0"]
        assert float(stats["active"]) == pytest.approx(3 / 8), name
        assert float(stats["dead"]) == pytest.approx(2 / 4), name  # units 0 and 1 never positive
    assert diagnostics.value_at_zero(ACTIVATIONS["sigmoid"]) == pytest.approx(0.5)
    assert diagnostics.value_at_zero(ACTIVATIONS["softplus"]) == pytest.approx(np.log(2))
