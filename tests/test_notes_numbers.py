"""Every worked number of the notes behind the project, as a test that can fail.

Each expected value is written here from the notes (or computed here with plain
Python arithmetic), never taken from the code under test. Numbers the other test
files already hold are not repeated: the stride-1 5x5 example (tests/test_conv.py,
read from docs/derivations/conv.md), the 56-parameter conv layer and the 760
parameters of ten 5x5x3 filters (tests/test_conv.py), and the 2-2-2 network's
outputs, E_total, dE/dw5, w5+ and w1+ (tests/test_backprop_example.py).
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import losses, schedules
from fcnn.ops import activations as act
from fcnn.ops.conv import conv, conv_output_shape
from fcnn.ops.dense import dense
from tests.reference import derivation_pages as pages


def _close_to_printed(value, printed: str):
    """Equal to a printed decimal up to half a unit of its last printed digit."""
    digits = len(printed.split(".")[1])
    assert abs(float(value) - float(printed)) <= 0.5 * 10.0 ** -digits, (float(value), printed)


def _dense_layer(kernel, bias):
    """fcnn.Dense with the given weights, after checking init builds the same shapes."""
    kernel, bias = np.asarray(kernel, np.float64), np.asarray(bias, np.float64)
    layer = fcnn.Dense(kernel.shape[1])
    out_shape, params, _ = layer.init(jax.random.PRNGKey(0), (-1, kernel.shape[0]))
    assert out_shape == (-1, kernel.shape[1])
    assert params["kernel"].shape == kernel.shape and params["bias"].shape == bias.shape
    return layer, {"kernel": jnp.asarray(kernel), "bias": jnp.asarray(bias)}


def _step(z):
    """The perceptron's output rule: 1 if w.x + b > 0 else 0."""
    return (np.asarray(z) > 0).astype(int)


# ----------------------------------------------------------------------------------
# Perceptrons


def test_perceptron_singer_vote_is_below_threshold():
    # inputs (1, 3, 2), weights (4, 1, -3): 4*1 + 1*3 - 3*2 = 1, below the threshold 3
    x, w, threshold = [1.0, 3.0, 2.0], [4.0, 1.0, -3.0], 3.0
    weighted_sum = 4 * 1 + 1 * 3 - 3 * 2
    assert weighted_sum == 1 < threshold
    # the threshold moves into the bias: output = step(w.x - threshold)
    layer, params = _dense_layer([[wi] for wi in w], [-threshold])
    z, _ = layer.apply(params, {}, jnp.asarray([x]), train=False)
    assert float(z[0, 0]) == weighted_sum - threshold == -2
    assert _step(z)[0, 0] == 0
    # without the bias the op gives the weighted sum itself
    np.testing.assert_array_equal(dense(jnp.asarray([x]), params["kernel"]), [[1.0]])


def test_perceptron_nand_gate_reproduces_the_truth_table():
    # weights w = (-2, -2), bias b = 3
    layer, params = _dense_layer([[-2.0], [-2.0]], [3.0])
    inputs = [(0, 0), (0, 1), (1, 0), (1, 1)]
    z, _ = layer.apply(params, {}, jnp.asarray(inputs, jnp.float64), train=False)
    np.testing.assert_array_equal(z[:, 0], [3, 1, 1, -1])  # -2 x1 - 2 x2 + 3 by hand
    nand = [int(not (a and b)) for a, b in inputs]
    assert nand == [1, 1, 1, 0]
    np.testing.assert_array_equal(_step(z[:, 0]), nand)
    # the op gives the same
    z_op = dense(jnp.asarray(inputs, jnp.float64), params["kernel"], params["bias"])
    np.testing.assert_array_equal(_step(z_op[:, 0]), nand)


# ----------------------------------------------------------------------------------
# The 5x5 image and 3x3 filter

IMAGE = [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]]
FILTER = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
STRIDE_1 = [[4, 3, 4], [2, 4, 3], [2, 3, 4]]
STRIDE_2 = [[4, 4], [2, 4]]


def _windows_by_hand(image, kernel, stride):
    img, k = np.asarray(image), np.asarray(kernel)
    n = (img.shape[0] - k.shape[0]) // stride + 1
    return [[int(np.sum(img[i * stride:i * stride + 3, j * stride:j * stride + 3] * k))
             for j in range(n)] for i in range(n)]


def test_the_stride_1_example_is_the_one_already_tested():
    # tests/test_conv.py tests conv against the page's [conv_5x5]: it must be this one
    page = pages.example("conv", "conv_5x5")
    assert page["image"] == IMAGE and page["filter"] == FILTER
    assert page["feature_map"] == STRIDE_1 and page["strides"] == 1
    assert _windows_by_hand(IMAGE, FILTER, 1) == STRIDE_1


@pytest.mark.parametrize("backward", ["custom", "autodiff"])
def test_5x5_image_3x3_filter_stride_2(backward):
    assert _windows_by_hand(IMAGE, FILTER, 2) == STRIDE_2
    # a(0,0) = 1+1+1+1 (corners and centre of the top-left window) = 4
    assert 1 * 1 + 1 * 1 + 1 * 1 + 1 * 1 == STRIDE_2[0][0]
    x = jnp.asarray(IMAGE, jnp.float64).reshape(1, 5, 5, 1)
    kernel = jnp.asarray(FILTER, jnp.float64).reshape(3, 3, 1, 1)
    y = conv(x, kernel, strides=2, padding="VALID", backward=backward)
    assert y.shape == (1, 2, 2, 1)
    np.testing.assert_array_equal(y[0, :, :, 0], STRIDE_2)
    # the stride-2 map is the stride-1 map read at every other position
    np.testing.assert_array_equal(np.asarray(STRIDE_1)[::2, ::2], STRIDE_2)

    layer = fcnn.Conv(1, 3, strides=2, padding="VALID", use_bias=False, backward=backward)
    out_shape, params, _ = layer.init(jax.random.PRNGKey(0), (1, 5, 5, 1))
    assert out_shape == (1, 2, 2, 1) and params["kernel"].shape == (3, 3, 1, 1)
    y_layer, _ = layer.apply({"kernel": kernel}, {}, x, train=False)
    np.testing.assert_array_equal(y_layer[0, :, :, 0], STRIDE_2)


# ----------------------------------------------------------------------------------
# The 2-2-2 sigmoid network (Matt Mazur's worked example): the intermediates that
# tests/test_backprop_example.py does not check.

I1, I2 = 0.05, 0.10
W = dict(w1=0.15, w2=0.20, w3=0.25, w4=0.30, w5=0.40, w6=0.45, w7=0.50, w8=0.55)
B1, B2 = 0.35, 0.60
T1, T2 = 0.01, 0.99


def _mazur_layers():
    # Dense kernels are (in, out): kernel[i, j] is the weight from input i to unit j
    hidden, hidden_params = _dense_layer([[W["w1"], W["w3"]], [W["w2"], W["w4"]]], [B1, B1])
    output, output_params = _dense_layer([[W["w5"], W["w7"]], [W["w6"], W["w8"]]], [B2, B2])
    return hidden, hidden_params, output, output_params


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def test_2_2_2_network_intermediates():
    hidden, hp, output, op = _mazur_layers()
    sigmoid = fcnn.Sigmoid()
    x = jnp.asarray([[I1, I2]])
    net_h, _ = hidden.apply(hp, {}, x, train=False)
    out_h, _ = sigmoid.apply({}, {}, net_h, train=False)
    net_o, _ = output.apply(op, {}, out_h, train=False)
    out_o, _ = sigmoid.apply({}, {}, net_o, train=False)

    # net_h1 = w1 i1 + w2 i2 + b1 = 0.15*0.05 + 0.2*0.1 + 0.35
    assert 0.15 * 0.05 + 0.20 * 0.10 + 0.35 == pytest.approx(0.3775, abs=1e-15)
    _close_to_printed(net_h[0, 0], "0.3775")
    _close_to_printed(out_h[0, 0], "0.593269992")
    _close_to_printed(net_o[0, 0], "1.105905967")
    # The notes print out_o1 = 0.75136079, a typo: 1 / (1 + exp(-1.105905967)) is
    # 0.75136507 (Mazur's original post has 0.75136507), so the correct value is tested.
    assert _sigmoid(1.105905967) == pytest.approx(0.75136507, abs=5e-9)
    _close_to_printed(out_o[0, 0], "0.75136507")
    assert abs(float(out_o[0, 0]) - 0.75136079) > 1e-6

    # E_o = 1/2 (target - out)^2, one example, one unit at a time
    e_o1 = losses.half_squared_error(out_o[:, :1], jnp.asarray([[T1]]))
    e_o2 = losses.half_squared_error(out_o[:, 1:], jnp.asarray([[T2]]))
    e_total = losses.half_squared_error(out_o, jnp.asarray([[T1, T2]]))
    _close_to_printed(e_o1, "0.274811083")
    _close_to_printed(e_o2, "0.023560026")
    _close_to_printed(e_total, "0.298371109")
    assert float(e_total) == pytest.approx(float(e_o1) + float(e_o2), abs=1e-15)


def test_2_2_2_network_every_weight_after_one_step():
    """All eight updated weights of Mazur's post (lr 0.5, biases not updated) and
    the total error after the step."""
    hidden, hp, output, op = _mazur_layers()
    model = fcnn.serial(hidden, fcnn.Sigmoid(), output, fcnn.Sigmoid())
    params = {"0": hp, "1": {}, "2": op, "3": {}}
    state = {"0": {}, "1": {}, "2": {}, "3": {}}
    x, target = jnp.asarray([[I1, I2]]), jnp.asarray([[T1, T2]])

    def loss(p):
        out, _ = model.apply(p, state, x, train=False)
        return losses.half_squared_error(out, target)

    grads = jax.grad(loss)(params)
    new = {layer: params[layer]["kernel"] - 0.5 * grads[layer]["kernel"] for layer in ("0", "2")}
    printed = {  # weight: (layer, row, column, printed value after the step)
        "w1": ("0", 0, 0, "0.149780716"), "w2": ("0", 1, 0, "0.19956143"),
        "w3": ("0", 0, 1, "0.24975114"), "w4": ("0", 1, 1, "0.29950229"),
        "w5": ("2", 0, 0, "0.35891648"), "w6": ("2", 1, 0, "0.408666186"),
        "w7": ("2", 0, 1, "0.511301270"), "w8": ("2", 1, 1, "0.561370121"),
    }
    for layer, row, col, value in printed.values():
        _close_to_printed(new[layer][row, col], value)
    stepped = {"0": {"kernel": new["0"], "bias": hp["bias"]}, "1": {},
               "2": {"kernel": new["2"], "bias": op["bias"]}, "3": {}}
    # Mazur prints E_total = 0.291027924 after the step; exact arithmetic gives
    # 0.2910277737 (also from his own printed weights: the 8th digit of his value is
    # off), so the value is checked to 6 digits and against the formula by hand.
    def e_total_by_hand(w1, w2, w3, w4, w5, w6, w7, w8):
        h1, h2 = _sigmoid(w1 * I1 + w2 * I2 + B1), _sigmoid(w3 * I1 + w4 * I2 + B1)
        o1, o2 = _sigmoid(w5 * h1 + w6 * h2 + B2), _sigmoid(w7 * h1 + w8 * h2 + B2)
        return 0.5 * (T1 - o1) ** 2 + 0.5 * (T2 - o2) ** 2

    assert e_total_by_hand(*W.values()) == pytest.approx(0.298371109, abs=5e-10)
    stepped_weights = [float(new[printed[w][0]][printed[w][1], printed[w][2]]) for w in W]
    e_after = loss(stepped)
    assert float(e_after) == pytest.approx(e_total_by_hand(*stepped_weights), abs=1e-12)
    _close_to_printed(e_after, "0.291028")


# ----------------------------------------------------------------------------------
# Softmax


@pytest.mark.parametrize("backward", ["custom", "autodiff"])
def test_softmax_of_3_1_minus_3(backward):
    exps = [math.exp(3.0), math.exp(1.0), math.exp(-3.0)]
    expected = [e / sum(exps) for e in exps]
    for value, printed in zip(expected, ["0.8789", "0.1189", "0.0022"]):
        _close_to_printed(value, printed)
    logits = jnp.asarray([[3.0, 1.0, -3.0]])
    p = act.softmax(logits, backward=backward)
    np.testing.assert_allclose(p[0], expected, rtol=1e-12)
    y, _ = fcnn.Softmax(backward=backward).apply({}, {}, logits, train=False)
    for value, printed in zip(y[0], ["0.8789", "0.1189", "0.0022"]):
        _close_to_printed(value, printed)


# ----------------------------------------------------------------------------------
# Parameter counts and output sizes


def test_fully_connected_alternative_has_768000_weights():
    # Assumption (the figure only fits this reading): the notes' fully connected
    # alternative joins every value of a 32x32x3 image to each of 250 hidden units,
    # 32 * 32 * 3 * 250 = 768,000 weights (biases not counted).
    assert 32 * 32 * 3 == 3072 and 3072 * 250 == 768_000
    model = fcnn.serial(fcnn.Flatten(), fcnn.Dense(250, use_bias=False))
    out_shape, params, _ = model.init(jax.random.PRNGKey(0), (-1, 32, 32, 3))
    assert out_shape == (-1, 250)
    assert params["1"]["kernel"].shape == (3072, 250)
    assert fcnn.count_params(params) == 768_000
    _, with_bias, _ = fcnn.serial(fcnn.Flatten(), fcnn.Dense(250)).init(
        jax.random.PRNGKey(0), (-1, 32, 32, 3))
    assert fcnn.count_params(with_bias) == 768_000 + 250
    # against ten 5x5x3 filters: (5*5*3 + 1) * 10 = 760 parameters, about 1000x fewer
    assert 768_000 // ((5 * 5 * 3 + 1) * 10) == 1010


def _w2(w1, f, p, s):
    """W2 = (W1 - F + 2P) / S + 1, exact (the window must fit)."""
    assert (w1 - f + 2 * p) % s == 0, "the window does not fit"
    return (w1 - f + 2 * p) // s + 1


def test_32x32x3_input_5x5x3_filter_gives_28x28():
    assert _w2(32, 5, 0, 1) == 32 - 5 + 1 == 28
    assert conv_output_shape((1, 32, 32, 3), (5, 5, 3, 1), 1, "VALID") == (1, 28, 28, 1)
    assert conv_output_shape((1, 32, 32, 3), (5, 5, 3, 1), 1, 0) == (1, 28, 28, 1)
    out_shape, params, _ = fcnn.Conv(1, 5, padding="VALID").init(
        jax.random.PRNGKey(0), (-1, 32, 32, 3))
    assert out_shape == (-1, 28, 28, 1) and params["kernel"].shape == (5, 5, 3, 1)


@pytest.mark.parametrize("p, w2", [(0, 5), (1, 7)])
def test_7_wide_input_3_wide_filter_stride_1(p, w2):
    # The notes write "padding 1 gives (7 - 3)/1 + 1 = 5", but that sum has no padding
    # term: (7 - 3 + 0)/1 + 1 = 5 is P = 0; with P = 1 it is (7 - 3 + 2)/1 + 1 = 7.
    assert _w2(7, 3, p, 1) == (7 - 3 + 2 * p) + 1 == w2
    assert conv_output_shape((1, 7, 7, 1), (3, 3, 1, 1), 1, p) == (1, w2, w2, 1)
    y = conv(jnp.ones((1, 7, 7, 1)), jnp.ones((3, 3, 1, 1)), strides=1, padding=p)
    assert y.shape == (1, w2, w2, 1)


def test_7_wide_input_3_wide_filter_strides_2_and_3():
    assert _w2(7, 3, 0, 2) == 3
    assert conv_output_shape((1, 7, 1), (3, 1, 1), 2, "VALID") == (1, 3, 1)
    # stride 3 does not fit: (7 - 3)/3 + 1 = 2.33; VALID drops the last column
    assert (7 - 3) % 3 != 0
    with pytest.raises(AssertionError, match="does not fit"):
        _w2(7, 3, 0, 3)
    assert conv_output_shape((1, 7, 1), (3, 1, 1), 3, "VALID") == (1, (7 - 3) // 3 + 1, 1)


# ----------------------------------------------------------------------------------
# TensorFlow's 4-tuple ksize/strides are refused with the fcnn equivalent


@pytest.mark.parametrize("layer", [fcnn.MaxPool, fcnn.AvgPool])
def test_tensorflow_nhwc_ksize_is_refused_with_the_fcnn_call(layer):
    name = layer.__name__
    with pytest.raises(ValueError, match=re.escape(
            f"{name}: window_shape=(1, 2, 2, 1) looks like TensorFlow's NHWC ksize "
            f"(1, 2, 2, 1): fcnn takes the spatial window only, "
            f"{name}((2, 2), strides=(2, 2))")):
        layer((1, 2, 2, 1), strides=(1, 2, 2, 1))
    with pytest.raises(ValueError, match=re.escape(
            f"strides=(1, 2, 2, 1) looks like TensorFlow's NHWC strides (1, 2, 2, 1): "
            f"fcnn takes the spatial strides only, {name}(3, strides=(2, 2), "
            "padding='SAME')")):
        layer(3, strides=(1, 2, 2, 1), padding="SAME")
    with pytest.raises(ValueError, match=re.escape(
            f"fcnn takes the spatial window only, {name}((3, 3))")):
        layer((1, 3, 3, 1))
    with pytest.raises(ValueError, match=re.escape(
            f"TensorFlow's NDHWC ksize (1, 2, 2, 2, 1): fcnn takes the spatial window "
            f"only, {name}((2, 2, 2))")):
        layer((1, 2, 2, 2, 1))
    # a 4-tuple that is not TensorFlow's layout keeps the general message
    with pytest.raises(ValueError, match=r"tuple of 1, 2 or 3 entries .* got 4"):
        layer((2, 2, 2, 2))


def test_the_suggested_maxpool_call_pools_2x2():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    y, _ = fcnn.MaxPool((2, 2), strides=(2, 2)).apply({}, {}, x, train=False)
    # max of each 2x2 block of [[0..3], [4..7], [8..11], [12..15]]
    np.testing.assert_array_equal(y[0, :, :, 0], [[5, 7], [13, 15]])


# ----------------------------------------------------------------------------------
# The learning-rate decays against TensorFlow 1's formulas (tf.train.*_decay, from
# tensorflow/python/training/learning_rate_decay_v2.py), written again here.

DECAY_STEPS = 100
STEPS = np.concatenate([np.arange(0, 3 * DECAY_STEPS + 2), [999, 1000, 1001, 12_345]])


def tf_exponential_decay(lr, step, decay_steps, decay_rate, staircase=False):
    p = step / decay_steps
    if staircase:
        p = math.floor(p)
    return lr * decay_rate ** p


def tf_natural_exp_decay(lr, step, decay_steps, decay_rate, staircase=False):
    p = step / decay_steps
    if staircase:
        p = math.floor(p)
    return lr * math.exp(-decay_rate * p)


def tf_piecewise_constant(step, boundaries, values):
    if step <= boundaries[0]:
        return values[0]
    if step > boundaries[-1]:
        return values[-1]
    for low, high, v in zip(boundaries[:-1], boundaries[1:], values[1:-1]):
        if low < step <= high:
            return v
    raise AssertionError("unreachable")


def tf_polynomial_decay(lr, step, decay_steps, end_lr=0.0001, power=1.0, cycle=False):
    if cycle:
        multiplier = 1.0 if step == 0 else math.ceil(step / decay_steps)
        decay_steps = decay_steps * multiplier
    else:
        step = min(step, decay_steps)
    p = step / decay_steps
    return (lr - end_lr) * (1 - p) ** power + end_lr


def tf_cosine_decay(lr, step, decay_steps, alpha=0.0):
    step = min(step, decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * step / decay_steps))
    return lr * ((1 - alpha) * cosine + alpha)


def tf_linear_cosine_decay(lr, step, decay_steps, num_periods=0.5, alpha=0.0, beta=0.001,
                           eps=0.0):
    step = min(step, decay_steps)
    linear = (decay_steps - step) / decay_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_periods * step / decay_steps))
    return lr * ((alpha + linear + eps) * cosine + beta)


def tf_noise_std(step, decay_steps, initial_variance, variance_decay):
    # TF clips global_step to decay_steps BEFORE the variance: it stops decaying there
    step = min(step, decay_steps)
    return math.sqrt(initial_variance / (1.0 + step) ** variance_decay)


TF_CASES = {
    "piecewise_constant": (
        lambda: schedules.piecewise_constant([50, 120, 250], [0.1, 0.05, 0.01, 0.001]),
        lambda s: tf_piecewise_constant(s, [50, 120, 250], [0.1, 0.05, 0.01, 0.001])),
    "exponential": (
        lambda: schedules.exponential_decay(0.1, DECAY_STEPS, 0.96),
        lambda s: tf_exponential_decay(0.1, s, DECAY_STEPS, 0.96)),
    "exponential_staircase": (
        lambda: schedules.exponential_decay(0.1, 30, 0.5, staircase=True),
        lambda s: tf_exponential_decay(0.1, s, 30, 0.5, staircase=True)),
    "natural_exp": (
        lambda: schedules.natural_exp_decay(0.1, DECAY_STEPS, 0.5),
        lambda s: tf_natural_exp_decay(0.1, s, DECAY_STEPS, 0.5)),
    "natural_exp_staircase": (
        lambda: schedules.natural_exp_decay(0.1, 30, 0.5, staircase=True),
        lambda s: tf_natural_exp_decay(0.1, s, 30, 0.5, staircase=True)),
    "polynomial": (
        lambda: schedules.polynomial_decay(0.1, DECAY_STEPS, 0.01, power=0.5),
        lambda s: tf_polynomial_decay(0.1, s, DECAY_STEPS, 0.01, power=0.5)),
    "polynomial_default_end": (
        lambda: schedules.polynomial_decay(0.1, DECAY_STEPS),
        lambda s: tf_polynomial_decay(0.1, s, DECAY_STEPS)),
    "polynomial_cycle": (
        lambda: schedules.polynomial_decay(0.1, DECAY_STEPS, 0.01, power=2.0, cycle=True),
        lambda s: tf_polynomial_decay(0.1, s, DECAY_STEPS, 0.01, power=2.0, cycle=True)),
    "cosine": (
        lambda: schedules.cosine_decay(0.1, DECAY_STEPS),
        lambda s: tf_cosine_decay(0.1, s, DECAY_STEPS)),
    "cosine_alpha": (
        lambda: schedules.cosine_decay(0.1, DECAY_STEPS, alpha=0.3),
        lambda s: tf_cosine_decay(0.1, s, DECAY_STEPS, alpha=0.3)),
    "linear_cosine": (
        lambda: schedules.linear_cosine_decay(0.1, DECAY_STEPS),
        lambda s: tf_linear_cosine_decay(0.1, s, DECAY_STEPS)),
    "linear_cosine_periods_alpha_beta": (
        lambda: schedules.linear_cosine_decay(0.1, DECAY_STEPS, num_periods=2.0, alpha=0.2,
                                              beta=0.05),
        lambda s: tf_linear_cosine_decay(0.1, s, DECAY_STEPS, 2.0, 0.2, 0.05)),
}


@pytest.mark.parametrize("name", sorted(TF_CASES))
def test_schedule_matches_tensorflow_1(name):
    make, tf_formula = TF_CASES[name]
    schedule = make()
    got = np.asarray(schedule(STEPS))
    expected = np.array([tf_formula(int(s)) for s in STEPS])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
    for s in (0, DECAY_STEPS, 3 * DECAY_STEPS + 1):  # a scalar step too
        assert float(schedule(s)) == pytest.approx(tf_formula(s), rel=1e-6, abs=1e-12)


def _z(seed, steps):
    """fcnn's documented standard normal draw at each step (TF draws its own)."""
    key = jax.random.PRNGKey(seed)
    return np.array([float(jax.random.normal(jax.random.fold_in(key, int(s)), (), jnp.float64))
                     for s in steps])


# num_periods=1 (and 1.25) keeps the cosine factor nonzero past decay_steps (at the
# default 0.5 it is 0 there, which would hide the noise and its variance).
@pytest.mark.parametrize("kwargs", [
    dict(initial_variance=1.0, variance_decay=0.55, num_periods=1.0),
    dict(initial_variance=0.3, variance_decay=0.9, num_periods=1.25, alpha=0.1, beta=0.01),
    dict(initial_variance=1.0, variance_decay=0.55),  # TF's defaults
])
def test_noisy_linear_cosine_decay_matches_tensorflow_1(kwargs):
    seed, lr = 7, 0.1
    schedule = schedules.noisy_linear_cosine_decay(lr, DECAY_STEPS, seed=seed, **kwargs)
    z = _z(seed, STEPS)
    shape = {k: kwargs[k] for k in ("num_periods", "alpha", "beta") if k in kwargs}
    expected = np.array([
        tf_linear_cosine_decay(lr, int(s), DECAY_STEPS, **shape,
                               eps=tf_noise_std(int(s), DECAY_STEPS, kwargs["initial_variance"],
                                                kwargs["variance_decay"]) * zi)
        for s, zi in zip(STEPS, z)])
    np.testing.assert_allclose(np.asarray(schedule(STEPS)), expected, rtol=1e-6, atol=1e-12)


def test_noisy_linear_cosine_noise_stops_decaying_at_decay_steps():
    """Past decay_steps, TF's noise std stays at sqrt(v0 / (1 + decay_steps)^d); a
    variance computed from the unclipped step would keep shrinking."""
    lr, v0, d, seed = 1.0, 1.0, 0.55, 11
    noisy = schedules.noisy_linear_cosine_decay(lr, DECAY_STEPS, initial_variance=v0,
                                                variance_decay=d, num_periods=1.0, beta=0.0,
                                                seed=seed)
    steps = np.array([DECAY_STEPS, DECAY_STEPS + 1, 2 * DECAY_STEPS, 10 * DECAY_STEPS])
    # at t = decay_steps: linear = 0 and cosine = 1, so lr(step) = eps = std * z
    std = np.asarray(noisy(steps)) / _z(seed, steps)
    want = math.sqrt(v0 / (1 + DECAY_STEPS) ** d)
    assert want == pytest.approx(0.2811, abs=1e-4)  # 101^(-0.55 / 2)
    np.testing.assert_allclose(std, want, rtol=1e-9)
    unclipped = math.sqrt(v0 / (1 + 10 * DECAY_STEPS) ** d)
    assert abs(std[-1] - unclipped) > 0.1


# ----------------------------------------------------------------------------------
# The conv-BN-leaky block: Keras' BatchNormalization defaults against fcnn's


KERAS_MOMENTUM, KERAS_EPSILON = 0.99, 1e-3  # tf.keras.layers.BatchNormalization defaults


def _identity_block(**kwargs):
    """conv_bn_leaky(2, 1) with an identity 1x1 kernel, so the batch norm sees x."""
    block = fcnn.conv_bn_leaky(2, 1, **kwargs)
    _, params, state = block.init(jax.random.PRNGKey(0), (-1, 2, 2, 2))
    params["0"]["kernel"] = jnp.eye(2).reshape(1, 1, 2, 2)
    return block, params, state


def test_running_mean_after_one_update_follows_keras_momentum():
    # channel 0: values 1, 3 (mean 2); channel 1: values -0.1, 0.1 (mean 0, variance 0.01)
    x = jnp.stack([jnp.full((2, 2), 1.0), jnp.asarray([[-0.1, 0.1], [-0.1, 0.1]])], -1)
    x = jnp.stack([x, x.at[..., 0].set(3.0)])  # (2, 2, 2, 2)
    block, params, state = _identity_block()
    _, new_state = block.apply(params, state, x, train=True)
    mean = np.asarray(new_state["1"]["mean"])
    # Keras (and Darknet, and fcnn): momentum weighs the OLD value,
    #   new = 0.99 * 0 + 0.01 * 2 = 0.02
    keras_mean = KERAS_MOMENTUM * 0.0 + (1 - KERAS_MOMENTUM) * 2.0
    assert keras_mean == pytest.approx(0.02)
    # PyTorch's convention, momentum weighing the BATCH, with the same number 0.99:
    #   new = 0.01 * 0 + 0.99 * 2 = 1.98
    torch_reading = (1 - KERAS_MOMENTUM) * 0.0 + KERAS_MOMENTUM * 2.0
    assert torch_reading == pytest.approx(1.98)
    np.testing.assert_allclose(mean, [0.02, 0.0], atol=1e-7)
    # the same with BatchNorm itself
    bn = fcnn.BatchNorm(momentum=0.99)
    _, bn_params, bn_state = bn.init(jax.random.PRNGKey(0), (-1, 2, 2, 2))
    _, bn_state = bn.apply(bn_params, bn_state, x, train=True)
    np.testing.assert_allclose(bn_state["mean"], [0.02, 0.0], atol=1e-7)


def test_conv_bn_leaky_epsilon_is_darknets_not_keras():
    # channel 1 holds -0.1 and 0.1: batch mean 0, batch variance 0.01
    x = jnp.stack([jnp.ones((2, 2)), jnp.asarray([[-0.1, 0.1], [-0.1, 0.1]])], -1)[None]
    x = jnp.concatenate([x, x])
    darknet_y = 0.1 / math.sqrt(0.01 + 1e-5)  # 0.9995003747
    keras_y = 0.1 / math.sqrt(0.01 + KERAS_EPSILON)  # 0.9534625892
    assert darknet_y == pytest.approx(0.99950037, abs=1e-8)
    assert keras_y == pytest.approx(0.95346259, abs=1e-8)
    # the two differ by sqrt(0.011 / 0.01001) = 1.0483, about 5 %
    assert darknet_y / keras_y == pytest.approx(1.04828, abs=1e-5)

    block, params, state = _identity_block()  # fcnn's defaults: epsilon 1e-5
    y, _ = block.apply(params, state, x, train=True)
    assert float(y[0, 0, 1, 1]) == pytest.approx(darknet_y, rel=1e-5)
    # leaky slope 0.1 on the negative side
    assert float(y[0, 0, 0, 1]) == pytest.approx(-0.1 * darknet_y, rel=1e-5)

    keras_block, params, state = _identity_block(epsilon=KERAS_EPSILON,
                                                 momentum=KERAS_MOMENTUM)
    y, _ = keras_block.apply(params, state, x, train=True)
    assert float(y[0, 0, 1, 1]) == pytest.approx(keras_y, rel=1e-5)


# ----------------------------------------------------------------------------------
# RReLU slopes: uniform on [lower, upper] (Xu et al. 2015), not Gaussian


def _ks_uniform(samples, lower, upper):
    """Kolmogorov-Smirnov distance between the samples and U[lower, upper]."""
    s = np.sort(np.asarray(samples, np.float64))
    n = s.size
    cdf = (s - lower) / (upper - lower)
    above = np.max(np.arange(1, n + 1) / n - cdf)
    below = np.max(cdf - np.arange(0, n) / n)
    return max(above, below)


@pytest.mark.parametrize("lower, upper", [(1 / 8, 1 / 3), (0.01, 0.5)])
def test_rrelu_slopes_are_uniform(lower, upper):
    n = 20_000
    x = -jnp.ones((n,), jnp.float64)  # y = slope * x = -slope
    layer = fcnn.RRelu(lower, upper)
    y, _ = layer.apply({}, {}, x, train=True, rng=jax.random.PRNGKey(2015))
    slopes = -np.asarray(y)
    assert slopes.min() >= lower and slopes.max() <= upper
    # the extremes come close to the ends: P(min > lower + 1e-3 (u - l)) = 0.999^n ~ 2e-9
    width = upper - lower
    assert slopes.min() < lower + 1e-3 * width and slopes.max() > upper - 1e-3 * width
    d = _ks_uniform(slopes, lower, upper)
    assert d < 1.63 / math.sqrt(n)  # KS critical value at the 1 % level
    # mean and variance of U[l, u]: (l + u) / 2 and (u - l)^2 / 12
    assert slopes.mean() == pytest.approx((lower + upper) / 2, abs=4 * width / math.sqrt(12 * n))
    assert slopes.var() == pytest.approx(width ** 2 / 12, rel=0.05)
    # a Gaussian with the same mean and standard deviation is far from these samples
    gauss = np.random.default_rng(0).normal((lower + upper) / 2, width / math.sqrt(12), n)
    assert _ks_uniform(np.clip(gauss, lower, upper), lower, upper) > 3 * d
    # evaluation: the fixed mean slope
    y_eval, _ = layer.apply({}, {}, x[:3], train=False)
    np.testing.assert_allclose(y_eval, -(lower + upper) / 2 * np.ones(3), rtol=1e-12)
    # the op draws the same slopes from the same key
    y_op = act.rrelu(x, lower=lower, upper=upper, train=True, rng=jax.random.PRNGKey(2015))
    np.testing.assert_array_equal(y_op, y)
