"""The classic architectures of fcnn.models: parameter counts against the published
figures, the output shape that init predicts, the structure tools walk, and VGG's
dense head turned into convolutions.

Counts are taken abstractly (`jax.eval_shape` on init), so the 138M-parameter VGG-16
costs no memory; the ImageNet models are also applied abstractly, the small ones for
real on a batch of 2.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import models
from fcnn.layers.base import CONVOLUTION, DENSE, walk_layers

CIFAR = (2, 32, 32, 3)
IMAGENET = (2, 224, 224, 3)


def abstract_init(model, input_shape):
    """(output_shape, params, state) of `model.init`, params and state as shapes only."""
    captured = {}

    def init(rng):
        captured["out"], params, state = model.init(rng, input_shape)
        return params, state

    params, state = jax.eval_shape(init, jax.random.PRNGKey(0))
    return captured["out"], params, state


def abstract_apply(model, params, state, input_shape):
    """The shape of `model.apply(...)` in evaluation mode, without computing it."""
    x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
    y, _ = jax.eval_shape(lambda p, s, x: model.apply(p, s, x, train=False), params, state, x)
    return y.shape


def numpy_init(model, input_shape, seed=0):
    """(output_shape, params, state) with init's shapes, filled without jax.random.

    Kernels are He-scaled normals and biases small normals drawn with NumPy, BatchNorm
    scales ones and its state as its init leaves it (zero mean, unit variance, count
    0). On CPU a real init spends seconds compiling one PRNG kernel per weight shape;
    the shape and equivalence tests only need weights of the right shapes.
    """
    out_shape, params, state = abstract_init(model, input_shape)
    rng = np.random.default_rng(seed)

    def param(path, leaf):
        key = getattr(path[-1], "key", None)
        if key == "scale":
            return jnp.ones(leaf.shape, leaf.dtype)
        if key == "bias":
            return jnp.asarray(0.1 * rng.standard_normal(leaf.shape), leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return jnp.asarray(rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in), leaf.dtype)

    def stat(path, leaf):
        fill = 1 if getattr(path[-1], "key", None) == "var" else 0
        return jnp.full(leaf.shape, fill, leaf.dtype)

    return (out_shape, jax.tree_util.tree_map_with_path(param, params),
            jax.tree_util.tree_map_with_path(stat, state))


def jit_apply(model, *, train=False):
    """`model.apply` compiled once (eager mode would compile every op separately)."""
    if train:
        return jax.jit(lambda p, s, x, rng: model.apply(p, s, x, train=True, rng=rng))
    return jax.jit(lambda p, s, x: model.apply(p, s, x, train=False))


def running_statistics(state) -> int:
    """Number of BatchNorm running means and variances in `state` (not its counters)."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return sum(int(np.prod(leaf.shape)) for path, leaf in leaves
               if getattr(path[-1], "key", None) in ("mean", "var"))


# ----------------------------------------------------------------------------------
# Parameter counts: each figure with its source.

# AlexNet's CIFAR-10 network (cuda-convnet layers-18pct), counted by hand:
# three 5x5 convolutions with bias, then a dense layer on the 4x4x64 map.
ALEXNET_CIFAR_BY_HAND = (
    (5 * 5 * 3 + 1) * 32  # conv1: 2,432
    + (5 * 5 * 32 + 1) * 32  # conv2: 25,632
    + (5 * 5 * 32 + 1) * 64  # conv3: 51,264
    + (4 * 4 * 64 + 1) * 10  # fc10: 10,250
)

# LeNet-5, modern rendition (full C3), counted by hand:
LENET5_BY_HAND = (
    (5 * 5 * 1 + 1) * 6  # C1: 156
    + (5 * 5 * 6 + 1) * 16  # C3: 2,416
    + (5 * 5 * 16 + 1) * 120  # C5: 48,120
    + (120 + 1) * 84  # F6: 10,164
    + (84 + 1) * 10  # output: 850
)

# ResNet for CIFAR with option A shortcuts, counted by hand for n blocks per stage
# (convolutions without bias; BatchNorm scale and shift, 2 per channel).
def resnet_cifar_by_hand(n: int) -> int:
    def conv_bn(k, c_in, c_out):
        return k * k * c_in * c_out + 2 * c_out

    stem = conv_bn(3, 3, 16)
    stage1 = n * 2 * conv_bn(3, 16, 16)
    stage2 = conv_bn(3, 16, 32) + conv_bn(3, 32, 32) + (n - 1) * 2 * conv_bn(3, 32, 32)
    stage3 = conv_bn(3, 32, 64) + conv_bn(3, 64, 64) + (n - 1) * 2 * conv_bn(3, 64, 64)
    return stem + stage1 + stage2 + stage3 + 64 * 10 + 10


PUBLISHED = [
    # The classic modern LeNet-5 (full C3 connections, no trainable subsampling,
    # dense output): 61,706, the figure of the common PyTorch/Keras renditions.
    # LeCun et al. (1998) report about 60,000 for the partial-C3 paper network.
    pytest.param(lambda: models.lenet5(), (2, 32, 32, 1), 61_706, id="lenet5-61706"),
    # cuda-convnet layers-18pct.cfg, counted by hand above.
    pytest.param(lambda: models.alexnet_cifar(), CIFAR, ALEXNET_CIFAR_BY_HAND,
                 id="alexnet_cifar-by-hand"),
    # torchvision AlexNet_Weights.IMAGENET1K_V1 meta["num_params"].
    pytest.param(lambda: models.alexnet(), IMAGENET, 61_100_840, id="alexnet-torchvision"),
    # torchvision VGG*_Weights.IMAGENET1K_V1 meta["num_params"].
    pytest.param(lambda: models.vgg(11), IMAGENET, 132_863_336, id="vgg11-torchvision"),
    pytest.param(lambda: models.vgg(11, batchnorm=True), IMAGENET, 132_868_840,
                 id="vgg11_bn-torchvision"),
    pytest.param(lambda: models.vgg(16), IMAGENET, 138_357_544, id="vgg16-torchvision"),
    pytest.param(lambda: models.vgg(16, batchnorm=True), IMAGENET, 138_365_992,
                 id="vgg16_bn-torchvision"),
    # The conv head has the same weights as the dense head, reshaped.
    pytest.param(lambda: models.vgg(16, head="conv"), IMAGENET, 138_357_544,
                 id="vgg16_conv_head-torchvision"),
    # CIFAR heads: kuangliu/pytorch-cifar's VGG (BatchNorm, 512 -> 10) has 14,728,266
    # (VGG-16) and 9,231,114 (VGG-11) parameters; without BatchNorm it is those minus
    # 2 * (BatchNorm channels): 2 * 4,224 and 2 * 2,752.
    pytest.param(lambda: models.vgg(16, 10, head="cifar", batchnorm=True), CIFAR, 14_728_266,
                 id="vgg16_bn_cifar-pytorch_cifar"),
    pytest.param(lambda: models.vgg(16, 10, head="cifar"), CIFAR, 14_728_266 - 2 * 4_224,
                 id="vgg16_cifar"),
    pytest.param(lambda: models.vgg(11, 10, head="cifar", batchnorm=True), CIFAR, 9_231_114,
                 id="vgg11_bn_cifar-pytorch_cifar"),
    pytest.param(lambda: models.vgg(11, 10, head="cifar"), CIFAR, 9_231_114 - 2 * 2_752,
                 id="vgg11_cifar"),
    # He et al. (2016), Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M; exact figures as
    # counted by hand above (akamaster/pytorch_resnet_cifar10 reports the same).
    pytest.param(lambda: models.resnet_cifar(20), CIFAR, 269_722, id="resnet20-269722"),
    pytest.param(lambda: models.resnet_cifar(32), CIFAR, 464_154, id="resnet32-464154"),
    pytest.param(lambda: models.resnet_cifar(44), CIFAR, 658_586, id="resnet44-658586"),
    pytest.param(lambda: models.resnet_cifar(56), CIFAR, 853_018, id="resnet56-853018"),
    pytest.param(lambda: models.resnet_cifar(110), CIFAR, 1_727_962, id="resnet110-1727962"),
    # Option B adds the two projections 16->32 and 32->64 (1x1 conv + BatchNorm).
    pytest.param(lambda: models.resnet_cifar(20, shortcut="B"), CIFAR,
                 269_722 + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64), id="resnet20_option_B"),
    # torchvision ResNet18/34_Weights.IMAGENET1K_V1 meta["num_params"].
    pytest.param(lambda: models.resnet(18), IMAGENET, 11_689_512, id="resnet18-torchvision"),
    pytest.param(lambda: models.resnet(34), IMAGENET, 21_797_672, id="resnet34-torchvision"),
    # YOLO9000 gives no count; 20,842,376 is torchsummary's total for PyTorch ports of
    # darknet's cfg/darknet19.cfg (BatchNorm affine counted, last conv with bias).
    pytest.param(lambda: models.darknet19(), IMAGENET, 20_842_376, id="darknet19-20842376"),
    # Keras applications MobileNet (v1, alpha 1.0): "Trainable params: 4,231,976";
    # its 4,253,864 total adds the running statistics (checked below).
    pytest.param(lambda: models.mobilenet_v1(), IMAGENET, 4_231_976,
                 id="mobilenet_v1-keras_trainable"),
]


@pytest.mark.parametrize("build, input_shape, published", PUBLISHED)
def test_parameter_count_matches_published(build, input_shape, published):
    _, params, _ = abstract_init(build(), input_shape)
    assert fcnn.count_params(params) == published


@pytest.mark.parametrize("n", [3, 5, 7, 9, 18])
def test_resnet_cifar_count_by_hand(n):
    _, params, _ = abstract_init(models.resnet_cifar(6 * n + 2), CIFAR)
    assert fcnn.count_params(params) == resnet_cifar_by_hand(n)


def test_hand_counts_agree_with_the_published_figures():
    assert LENET5_BY_HAND == 61_706
    assert ALEXNET_CIFAR_BY_HAND == 89_578
    assert [resnet_cifar_by_hand(n) for n in (3, 5, 7, 9, 18)] == [
        269_722, 464_154, 658_586, 853_018, 1_727_962]
    # Rounded as in He et al. (2016), Table 6.
    assert [round(resnet_cifar_by_hand(n) / 1e6, 2) for n in (3, 5, 7, 9)] == [
        0.27, 0.46, 0.66, 0.85]
    assert round(resnet_cifar_by_hand(18) / 1e6, 1) == 1.7


def test_mobilenet_total_with_running_statistics_is_keras_count():
    # keras.applications.MobileNet().summary(): Total params 4,253,864, of which
    # 21,888 non-trainable (BatchNorm moving mean and variance).
    _, params, state = abstract_init(models.mobilenet_v1(), IMAGENET)
    assert running_statistics(state) == 21_888
    assert fcnn.count_params(params) + running_statistics(state) == 4_253_864


def test_mobilenet_width_multiplier_scales_the_count():
    # The paper's Table 6: 4.2M, 2.6M, 1.3M parameters at alpha 1.0, 0.75, 0.5
    # (ImageNet, 1000 classes).
    counts = []
    for alpha in (1.0, 0.75, 0.5):
        _, params, _ = abstract_init(models.mobilenet_v1(alpha=alpha), IMAGENET)
        counts.append(round(fcnn.count_params(params) / 1e6, 1))
    assert counts == [4.2, 2.6, 1.3]


def test_vgg16_is_the_papers_138_million():
    # Simonyan & Zisserman (2015), Table 2: 138 million parameters for configuration D.
    _, params, _ = abstract_init(models.vgg(16), IMAGENET)
    assert round(fcnn.count_params(params) / 1e6) == 138


def test_darknet19_count_does_not_depend_on_input_size():
    counts = {fcnn.count_params(abstract_init(models.darknet19(), (1, s, s, 3))[1])
              for s in (224, 256, 448)}
    assert counts == {20_842_376}


# ----------------------------------------------------------------------------------
# Output shapes: init predicts what apply returns.

SMALL = [
    pytest.param(lambda: models.lenet5(), (2, 32, 32, 1), (2, 10), id="lenet5"),
    pytest.param(lambda: models.lenet5(activation="relu", pool="max"), (2, 32, 32, 1), (2, 10),
                 id="lenet5-relu-max"),
    pytest.param(lambda: models.alexnet_cifar(), CIFAR, (2, 10), id="alexnet_cifar-relu"),
    pytest.param(lambda: models.alexnet_cifar(activation="tanh"), CIFAR, (2, 10),
                 id="alexnet_cifar-tanh"),
    pytest.param(lambda: models.vgg(16, 10, head="cifar", width_multiplier=1 / 8), CIFAR,
                 (2, 10), id="vgg16_cifar-narrow"),
    pytest.param(lambda: models.vgg(11, 10, head="cifar", batchnorm=True,
                                    width_multiplier=1 / 8), CIFAR, (2, 10),
                 id="vgg11_bn_cifar-narrow"),
    pytest.param(lambda: models.resnet_cifar(20), CIFAR, (2, 10), id="resnet20"),
    pytest.param(lambda: models.resnet_cifar(20, shortcut="B"), CIFAR, (2, 10),
                 id="resnet20_option_B"),
    pytest.param(lambda: models.mobilenet_v1(10, alpha=0.25), CIFAR, (2, 10),
                 id="mobilenet_v1-0.25"),
    pytest.param(lambda: models.darknet19(10), CIFAR, (2, 10), id="darknet19"),
]


@pytest.mark.parametrize("build, input_shape, expected", SMALL)
def test_apply_returns_the_shape_init_predicts(build, input_shape, expected):
    model = build()
    out_shape, params, state = numpy_init(model, input_shape)
    assert tuple(out_shape) == expected
    x = jax.random.normal(jax.random.PRNGKey(1), input_shape, jnp.float32)
    y, new_state = jit_apply(model)(params, state, x)
    assert y.shape == expected
    assert np.all(np.isfinite(np.asarray(y)))
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)


LARGE = [
    pytest.param(lambda: models.alexnet(), IMAGENET, (2, 1000), id="alexnet-224"),
    pytest.param(lambda: models.alexnet(lrn=True), (2, 227, 227, 3), (2, 1000),
                 id="alexnet-227-lrn"),
    pytest.param(lambda: models.vgg(11), IMAGENET, (2, 1000), id="vgg11"),
    pytest.param(lambda: models.vgg(16, batchnorm=True), IMAGENET, (2, 1000), id="vgg16_bn"),
    pytest.param(lambda: models.vgg(16, head="conv"), IMAGENET, (2, 1, 1, 1000),
                 id="vgg16_conv-224"),
    pytest.param(lambda: models.vgg(16, head="conv"), (2, 288, 288, 3), (2, 3, 3, 1000),
                 id="vgg16_conv-288-score_map"),
    pytest.param(lambda: models.resnet(18), IMAGENET, (2, 1000), id="resnet18"),
    pytest.param(lambda: models.resnet(34), IMAGENET, (2, 1000), id="resnet34"),
    pytest.param(lambda: models.resnet_cifar(110), CIFAR, (2, 10), id="resnet110"),
    pytest.param(lambda: models.darknet19(), (2, 448, 448, 3), (2, 1000), id="darknet19-448"),
    pytest.param(lambda: models.darknet19(include_top=False), (2, 416, 416, 3),
                 (2, 13, 13, 1024), id="darknet19-backbone"),
    pytest.param(lambda: models.mobilenet_v1(), IMAGENET, (2, 1000), id="mobilenet_v1"),
    pytest.param(lambda: models.mobilenet_v1(alpha=0.5, include_top=False), IMAGENET,
                 (2, 7, 7, 512), id="mobilenet_v1-features"),
]


@pytest.mark.parametrize("build, input_shape, expected", LARGE)
def test_large_models_apply_abstractly_to_the_predicted_shape(build, input_shape, expected):
    model = build()
    out_shape, params, state = abstract_init(model, input_shape)
    assert tuple(out_shape) == expected
    assert abstract_apply(model, params, state, input_shape) == expected


def test_init_draws_the_shapes_it_predicts():
    model = models.lenet5()
    out_shape, params, state = model.init(jax.random.PRNGKey(0), (2, 32, 32, 1))
    expected_shape, abstract_params, abstract_state = abstract_init(model, (2, 32, 32, 1))
    assert out_shape == expected_shape == (2, 10)
    assert jax.tree_util.tree_map(jnp.shape, params) == jax.tree_util.tree_map(
        lambda a: a.shape, abstract_params)
    assert fcnn.count_params(params) == 61_706


def test_resnet_cifar_trains_its_batch_statistics():
    model = models.resnet_cifar(20)
    _, params, state = numpy_init(model, CIFAR)
    x = jax.random.normal(jax.random.PRNGKey(1), CIFAR, jnp.float32)
    y, new_state = jit_apply(model, train=True)(params, state, x, jax.random.PRNGKey(2))
    assert y.shape == (2, 10)
    counts = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(new_state)[0]
              if getattr(path[-1], "key", None) == "count"]
    assert len(counts) == 19 and all(int(c) == 1 for c in counts)  # one BatchNorm per conv


# ----------------------------------------------------------------------------------
# Structure: the layers tools walk (children and roles) give the depth in the name.


def weight_layers(model, skip=("projection",)) -> int:
    """Convolutions and dense layers on the main path (shortcut projections skipped)."""
    def walk(layer):
        if layer.name in skip:
            return 0
        own = 1 if layer.role in (CONVOLUTION, DENSE) else 0
        return own + sum(walk(child) for child in layer.children)

    return walk(model)


@pytest.mark.parametrize("build, depth", [
    (lambda: models.lenet5(), 5),  # C1, C3, C5, F6, output
    (lambda: models.alexnet_cifar(), 4),  # "a four-layer convolutional neural network"
    (lambda: models.alexnet(), 8),
    (lambda: models.vgg(11), 11),
    (lambda: models.vgg(16, batchnorm=True), 16),
    (lambda: models.resnet_cifar(20), 20),
    (lambda: models.resnet_cifar(56), 56),
    (lambda: models.resnet_cifar(110), 110),
    (lambda: models.resnet(18), 18),
    (lambda: models.resnet(34), 34),
    (lambda: models.darknet19(), 19),  # "19 convolutional layers"
    (lambda: models.mobilenet_v1(), 28),  # "MobileNet has 28 layers"
])
def test_depth_in_the_name_is_the_number_of_weight_layers(build, depth):
    assert weight_layers(build()) == depth


def test_resnet18_has_three_projection_shortcuts():
    projections = [l for l in walk_layers(models.resnet(18)) if l.name == "projection"]
    assert len(projections) == 3
    assert all(l.children[0].role == CONVOLUTION for l in projections)


def test_option_a_shortcut_has_no_parameters_and_pads_zero_channels():
    model = models.resnet_cifar(20)
    block = model.children[2].children[0]  # stage 2, block 1: 16 -> 32 channels, stride 2
    assert block.name == "BasicBlock(32, strides=2)"
    shortcut = block.children[1].children[1]
    assert shortcut.name == "ZeroPadShortcut(32, strides=2)"
    x = jnp.arange(2 * 4 * 4 * 16, dtype=jnp.float32).reshape(2, 4, 4, 16)
    out_shape, params, state = shortcut.init(jax.random.PRNGKey(0), x.shape)
    y, _ = shortcut.apply(params, state, x, train=False)
    assert params == {} and y.shape == tuple(out_shape) == (2, 2, 2, 32)
    np.testing.assert_array_equal(y[..., :16], x[:, ::2, ::2, :])
    np.testing.assert_array_equal(y[..., 16:], 0.0)


def test_summary_walks_the_blocks_and_totals_the_count():
    text = fcnn.summary(models.resnet_cifar(20), CIFAR, print_fn=None)
    assert "trainable parameters 269,722" in text
    # summary lists the leaves of the SERIAL stages and blocks, e.g. the stem's conv.
    assert "Conv(16, 3)" in text and "GlobalAvgPool" in text


# ----------------------------------------------------------------------------------
# VGG's fully-connected head as convolutions (Simonyan & Zisserman 2015, Sec. 3.2).


def test_vgg_dense_head_as_convolutions_gives_the_same_output():
    # A narrow VGG-11 (filters / 16, hidden 32) at the 224x224 input the 7x7 window needs.
    kwargs = dict(batchnorm=True, width_multiplier=1 / 16, hidden=32)
    dense_model = models.vgg(11, 10, head="imagenet", **kwargs)
    conv_model = models.vgg(11, 10, head="conv", **kwargs)
    shape = (2, 224, 224, 3)
    _, params, state = numpy_init(dense_model, shape)
    _, conv_init_params, conv_state = numpy_init(conv_model, shape)

    conv_params = models.vgg_dense_head_to_conv(params)
    assert jax.tree_util.tree_structure(conv_params) == jax.tree_util.tree_structure(
        conv_init_params)
    assert jax.tree_util.tree_map(jnp.shape, conv_params) == jax.tree_util.tree_map(
        jnp.shape, conv_init_params)
    # The conversion only reshapes: every weight is carried over bit for bit.
    for dense_key, conv_key in (("1", "0"), ("4", "3"), ("7", "6")):
        dense, conv = params["1"][dense_key], conv_params["1"][conv_key]
        np.testing.assert_array_equal(conv["kernel"].reshape(dense["kernel"].shape),
                                      dense["kernel"])
        np.testing.assert_array_equal(conv["bias"], dense["bias"])
    assert conv_params["1"]["0"]["kernel"].shape == (7, 7, 32, 32)

    x = jax.random.normal(jax.random.PRNGKey(1), shape, jnp.float32)
    y_dense, _ = jit_apply(dense_model)(params, state, x)
    y_conv, _ = jit_apply(conv_model)(conv_params, conv_state, x)
    assert y_conv.shape == (2, 1, 1, 10)
    np.testing.assert_allclose(y_conv.reshape(2, 10), y_dense, rtol=1e-5, atol=1e-5)


def test_vgg_dense_head_to_conv_rejects_other_params():
    conv_model = models.vgg(11, 10, head="conv", width_multiplier=1 / 16, hidden=8)
    _, conv_params, _ = numpy_init(conv_model, (1, 224, 224, 3))
    with pytest.raises(ValueError, match="not a dense VGG head"):
        models.vgg_dense_head_to_conv(conv_params)
    with pytest.raises(ValueError, match="expected the params of vgg"):
        models.vgg_dense_head_to_conv({"0": {}})


# ----------------------------------------------------------------------------------
# Arguments are checked where the model is built.


@pytest.mark.parametrize("build, match", [
    (lambda: models.lenet5(pool="median"), r"pool='median'"),
    (lambda: models.lenet5(num_classes=0), r"num_classes=0"),
    (lambda: models.alexnet(dropout=1.0), r"dropout=1.0"),
    (lambda: models.vgg(15), r"depth=15: expected one of \(11, 13, 16, 19\)"),
    (lambda: models.vgg(16.0), r"depth=16.0: expected a positive int"),
    (lambda: models.vgg(16, head="fc"), r"head='fc'"),
    (lambda: models.vgg(16, width_multiplier=0), r"width_multiplier=0"),
    (lambda: models.resnet_cifar(21), r"depth=21: expected 6n \+ 2"),
    (lambda: models.resnet_cifar(20, shortcut="C"), r"shortcut='C'"),
    (lambda: models.resnet(50), r"depth=50: expected one of \(18, 34\)"),
    (lambda: models.darknet19(include_top="yes"), r"include_top='yes'"),
    (lambda: models.mobilenet_v1(alpha=0.0), r"alpha=0.0"),
])
def test_bad_arguments_raise_value_error_naming_them(build, match):
    with pytest.raises(ValueError, match=match):
        build()
