"""Model builders: the reference CNN, the configurable CNN the studies vary, an MLP.

    refnet():  conv 3x3x32 - ReLU - maxpool 2 - conv 3x3x64 - ReLU - maxpool 2
               - flatten - dense 128 - ReLU - dense num_classes

Convolutions are "SAME" padded, so an HxW input reaches the dense layer as
(H // 4) x (W // 4) x 64 features; the dense layer's input size is taken from the
input shape at init, so the same builder serves 8x8 digits, 28x28 MNIST and 32x32
CIFAR-10, with any number of channels.
"""

from __future__ import annotations

import jax.numpy as jnp

import fcnn
from fcnn import initializers
from fcnn._checks import check_number, positive_int
from fcnn.layers.base import Layer, check_train_flag

POOLS = ("max", "avg", "stride")
NORMS = (None, "batch", "group")
MAXOUT_PIECES = 2


def _activation(name: str, kwargs: dict, backward: str) -> Layer:
    return fcnn.Activation(name, **kwargs, backward=backward)


def _norm(norm: str | None, groups: int, backward: str) -> list[Layer]:
    if norm is None:
        return []
    if norm == "batch":
        return [fcnn.BatchNorm(backward=backward)]
    return [fcnn.GroupNorm(num_groups=groups, backward=backward)]


def cnn(
    num_classes: int,
    activation: str = "relu",
    *,
    widths=(16, 32),
    hidden: int = 128,
    kernel_size: int = 3,
    pool: str = "max",
    norm: str | None = None,
    groups: int = 4,
    dropout: float = 0.0,
    feature_dim: int | None = None,
    kernel_init="lecun_normal",
    activation_kwargs: dict | None = None,
    backward: str = "custom",
) -> Layer:
    """[conv k x k - (norm) - act - (pool)] per width, flatten, dense `hidden` - (norm) -
    act - (dropout) - [dense `feature_dim`] - dense `num_classes` (logits).

    Input (N, H, W, C); output (N, num_classes).
    activation: any `fcnn.Activation` name, options in `activation_kwargs`; with
      "maxout" every conv / hidden dense has `pieces` (default 2) times the units
      and the maxout units keep the width of the others.
    pool: "max", "avg" (2x2 windows, stride 2) or "stride" (no pooling layer: the
      convolution itself has stride 2, so depth and output size stay the same).
    norm: None, "batch" (BatchNorm) or "group" (GroupNorm with `groups` groups), after
      each convolution and the hidden dense layer, before the activation.
    feature_dim: a linear feature layer of this width before the classifier (the
      center-loss study's 2-D features).
    """
    num_classes = positive_int(num_classes, "num_classes")
    hidden = positive_int(hidden, "hidden")
    widths = tuple(positive_int(w, "widths") for w in widths)
    if not widths:
        raise ValueError("widths=(): expected at least one convolution stage")
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}: expected one of {POOLS}")
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: expected one of {NORMS}")
    dropout = check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
    act_kwargs = dict(activation_kwargs or {})
    k = 1
    if activation == "maxout":
        k = act_kwargs.setdefault("pieces", MAXOUT_PIECES)
    kernel_init = initializers.get(kernel_init)
    layers: list[Layer] = []
    for width in widths:
        layers.append(fcnn.Conv(width * k, kernel_size, strides=2 if pool == "stride" else 1,
                                padding="SAME", kernel_init=kernel_init, backward=backward))
        layers += _norm(norm, groups, backward)
        layers.append(_activation(activation, act_kwargs, backward))
        if pool == "max":
            layers.append(fcnn.MaxPool(2, backward=backward))
        elif pool == "avg":
            layers.append(fcnn.AvgPool(2, backward=backward))
    layers += [fcnn.Flatten(), fcnn.Dense(hidden * k, kernel_init=kernel_init, backward=backward)]
    layers += _norm(norm, groups, backward)
    layers.append(_activation(activation, act_kwargs, backward))
    if dropout > 0:
        layers.append(fcnn.Dropout(dropout, backward=backward))
    if feature_dim is not None:
        layers.append(fcnn.Dense(positive_int(feature_dim, "feature_dim"), kernel_init=kernel_init,
                                 backward=backward))
    layers.append(fcnn.Dense(num_classes, kernel_init=kernel_init, backward=backward))
    return fcnn.serial(*layers)


def refnet(
    num_classes: int = 10,
    activation: str = "relu",
    *,
    widths=(32, 64),
    hidden: int = 128,
    kernel_size: int = 3,
    dropout: float = 0.0,
    batchnorm: bool = False,
    backward: str = "custom",
    activation_kwargs: dict | None = None,
) -> Layer:
    """The reference CNN: `cnn` with max pooling, widths (32, 64) and, optionally,
    BatchNorm after each convolution and the hidden dense layer.

    Input (N, H, W, C) with H and W divisible by 4 for the default two stages (other
    sizes are floored by the pooling); output (N, num_classes).
    """
    return cnn(num_classes, activation, widths=widths, hidden=hidden, kernel_size=kernel_size,
               dropout=dropout, norm="batch" if batchnorm else None, backward=backward,
               activation_kwargs=activation_kwargs)


def mlp(
    num_classes: int,
    activation: str = "relu",
    *,
    depth: int = 2,
    width: int = 128,
    kernel_init="lecun_normal",
    output_bias: float = 0.0,
    dropout: float = 0.0,
    input_dropout: float = 0.0,
) -> Layer:
    """Flatten, `depth` x [dense `width` - act - (dropout)], dense `num_classes`.

    `output_bias` initialises every output bias to that constant (a large value puts
    sigmoid outputs in saturation); `input_dropout` drops input pixels.
    """
    depth = positive_int(depth, "depth")
    layers: list[Layer] = [fcnn.Flatten()]
    if input_dropout > 0:
        layers.append(fcnn.Dropout(input_dropout))
    for _ in range(depth):
        layers += [fcnn.Dense(width, kernel_init=kernel_init), fcnn.Activation(activation)]
        if dropout > 0:
            layers.append(fcnn.Dropout(dropout))
    bias_init = initializers.constant(output_bias) if output_bias else initializers.zeros
    layers.append(fcnn.Dense(num_classes, kernel_init=kernel_init, bias_init=bias_init))
    return fcnn.serial(*layers)


# ----------------------------------------------------------------------------------
# The classic architectures of the CNN textbooks. Each builder returns one Layer
# (input channels-last, (N, H, W, C)); its docstring gives the structure, the paper
# and the published parameter count, which tests/test_models.py checks exactly.
# Parameters are what `fcnn.count_params(params)` counts: weights, biases and the
# BatchNorm scale and shift; running statistics are `state`, not parameters.

# BatchNorm running-statistics momentum for the torchvision/Keras renditions: the
# weight of the old value, so PyTorch's momentum=0.1 is our 0.9.
BN_MOMENTUM = 0.9

LENET_POOLS = ("avg", "max")
VGG_CONFIGS = {  # Simonyan & Zisserman (2015), Table 1: configurations A, B, D, E
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}
VGG_HEADS = ("imagenet", "conv", "cifar")
VGG_CONV_HEAD_WINDOW = 7  # the 7x7x512 map of a 224x224 input after five 2x2 pools
RESNET_CIFAR_SHORTCUTS = ("A", "B")
RESNET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}  # He et al. (2016), Table 1
# Darknet-19 (YOLO9000, Table 6): filters and kernel size of each conv_bn_leaky block,
# "M" a 2x2 max pool with stride 2.
DARKNET19_LAYERS = (
    (32, 3), "M", (64, 3), "M", (128, 3), (64, 1), (128, 3), "M",
    (256, 3), (128, 1), (256, 3), "M",
    (512, 3), (256, 1), (512, 3), (256, 1), (512, 3), "M",
    (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3),
)
# MobileNet v1 (Howard et al., 2017, Table 1): (pointwise filters, depthwise stride)
# of the 13 depthwise-separable blocks after the 3x3/2 stem of 32 filters.
MOBILENET_V1_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


def _named(layer: Layer, name: str) -> Layer:
    """`layer` under another name: same functions, children and role, so tools that
    walk SERIAL layers still see every child."""
    return Layer(layer.init, layer.apply, name=name, children=layer.children,
                 role=layer.role, info=layer.info)


def _choice(value, name: str, options) -> object:
    if value not in options:
        raise ValueError(f"{name}={value!r}: expected one of {tuple(options)}")
    return value


def _bn(backward: str, momentum: float = BN_MOMENTUM) -> Layer:
    return fcnn.BatchNorm(momentum=momentum, backward=backward)


def _relu(backward: str) -> Layer:
    return fcnn.Activation("relu", backward=backward)


def lenet5(
    num_classes: int = 10,
    activation: str = "tanh",
    *,
    pool: str = "avg",
    kernel_init="lecun_normal",
    backward: str = "custom",
) -> Layer:
    """LeNet-5 on 32x32 single-channel images, in its modern rendition (61,706 parameters).

        C1 conv 5x5x6 VALID - act - S2 pool 2x2/2 - C3 conv 5x5x16 VALID - act
        - S4 pool 2x2/2 - C5 conv 5x5x120 VALID - act - flatten - F6 dense 84 - act
        - dense num_classes (logits)

    Input (N, 32, 32, C) (pad 28x28 MNIST digits by 2 pixels, as LeCun et al. did);
    output (N, num_classes). Spatial sizes 32 -> 28 -> 14 -> 10 -> 5 -> 1.

    Variant: C3 is fully connected to the six S2 maps (16 * (5*5*6 + 1) = 2,416
    parameters), the subsampling layers have no trainable coefficients and the output
    is a plain dense layer, the usual modern rendition: 156 + 2,416 + 48,120 + 10,164
    + 850 = 61,706 parameters for 10 classes. The paper's network (about 60,000
    trainable parameters) connects C3 to S2 through a partial table (1,516
    parameters), gives each subsampling map a trainable coefficient and bias, and
    ends in Euclidean RBF units with fixed weights; that variant is not built here.

    activation: any `fcnn.Activation` name (the paper's squashing function is a
      scaled tanh; "tanh" here). pool: "avg" (the paper's subsampling) or "max".

    Reference: LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to
    document recognition", Proc. IEEE 86(11), 1998, Section II.B.
    """
    num_classes = positive_int(num_classes, "num_classes")
    pool_layer = {"avg": fcnn.AvgPool, "max": fcnn.MaxPool}[_choice(pool, "pool", LENET_POOLS)]

    def act():
        return fcnn.Activation(activation, backward=backward)

    def conv(features):
        return fcnn.Conv(features, 5, padding="VALID", kernel_init=kernel_init,
                         backward=backward)

    return _named(fcnn.serial(
        conv(6), act(), pool_layer(2, backward=backward),
        conv(16), act(), pool_layer(2, backward=backward),
        conv(120), act(),
        fcnn.Flatten(),
        fcnn.Dense(84, kernel_init=kernel_init, backward=backward), act(),
        fcnn.Dense(num_classes, kernel_init=kernel_init, backward=backward),
    ), "LeNet5")


def alexnet_cifar(
    num_classes: int = 10,
    activation: str = "relu",
    *,
    kernel_init="lecun_normal",
    backward: str = "custom",
) -> Layer:
    """The four-layer CIFAR-10 network of AlexNet's ReLU-vs-tanh figure (89,578 parameters).

    cuda-convnet's "layers-18pct" network (18% test error on CIFAR-10), three
    convolutions and one dense layer, with response normalization and overlapping
    3x3/2 pooling:

        conv 5x5x32 pad 2 - act - maxpool 3x3/2 - LRN(3)
        - conv 5x5x32 pad 2 - act - avgpool 3x3/2 - LRN(3)
        - conv 5x5x64 pad 2 - act - avgpool 3x3/2 - flatten - dense num_classes

    Input (N, 32, 32, 3); output (N, num_classes); spatial sizes 32 -> 16 -> 8 -> 4.
    The pools are "SAME"-padded, which reproduces cuda-convnet's output size
    ceil((W - 3) / 2) + 1 (one cell of padding on the high side).
    Parameters: (5*5*3 + 1)*32 + (5*5*32 + 1)*32 + (5*5*32 + 1)*64 + (4*4*64 + 1)*10
    = 2,432 + 25,632 + 51,264 + 10,250 = 89,578 for 10 classes.

    Differences from the cuda-convnet file, none of which changes the count:
    cuda-convnet applies the ReLU after the first max pool (the same function, as
    max pooling commutes with a monotone activation), and its "rnorm" layers
    normalize over a 3x3 spatial neighbourhood within each map; here they are
    AlexNet's across-channel LRN with n = 3, k = 1, alpha = 5e-5 / n, beta = 0.75
    (the layer-params-18pct scale and power).

    activation: "relu" or "tanh" for the paper's Fig. 1 comparison (any
    `fcnn.Activation` name works).

    Reference: Krizhevsky, Sutskever & Hinton, "ImageNet classification with deep
    convolutional neural networks", NIPS 2012, Section 3.1 and Fig. 1; cuda-convnet
    example-layers/layers-18pct.cfg and layer-params-18pct.cfg.
    """
    num_classes = positive_int(num_classes, "num_classes")

    def block(features, pool_layer, lrn):
        layers = [
            fcnn.Conv(features, 5, padding=2, kernel_init=kernel_init, backward=backward),
            fcnn.Activation(activation, backward=backward),
            pool_layer(3, strides=2, padding="SAME", backward=backward),
        ]
        if lrn:
            layers.append(fcnn.LRN(size=3, k=1.0, alpha=5e-5, beta=0.75, alpha_over_n=True,
                                   backward=backward))
        return layers

    return _named(fcnn.serial(
        *block(32, fcnn.MaxPool, lrn=True),
        *block(32, fcnn.AvgPool, lrn=True),
        *block(64, fcnn.AvgPool, lrn=False),
        fcnn.Flatten(),
        fcnn.Dense(num_classes, kernel_init=kernel_init, backward=backward),
    ), "AlexNetCIFAR")


def alexnet(
    num_classes: int = 1000,
    *,
    dropout: float = 0.5,
    lrn: bool = False,
    kernel_init="he_normal",
    backward: str = "custom",
) -> Layer:
    """AlexNet for ImageNet, the single-tower rendition of torchvision (61,100,840 parameters).

        conv 11x11x64 /4 pad 2 - ReLU - maxpool 3x3/2
        - conv 5x5x192 pad 2 - ReLU - maxpool 3x3/2
        - conv 3x3x384 pad 1 - ReLU - conv 3x3x256 pad 1 - ReLU - conv 3x3x256 pad 1 - ReLU
        - maxpool 3x3/2 - flatten (6*6*256 = 9,216)
        - dropout - dense 4096 - ReLU - dropout - dense 4096 - ReLU - dense num_classes

    Input (N, 224, 224, 3) (227x227 gives the same sizes); spatial sizes
    224 -> 55 -> 27 -> 13 -> 6; output (N, num_classes). torchvision's adaptive
    average pool to 6x6 is the identity at this input size and is left out: the first
    dense layer takes its input size from the input shape at init, so other input
    sizes change the count. `lrn=True` adds the paper's response normalization
    (n = 5, k = 2, alpha = 1e-4, beta = 0.75) after the first two ReLUs; it has no
    parameters.

    This is the network of Krizhevsky's "One weird trick" (2014) as torchvision
    ships it (64/192/384/256/256 filters, one tower); the 2012 paper's two-GPU
    network (96/256/384/384/256 filters, some layers split in two groups) has
    "60 million parameters".

    Reference: Krizhevsky, Sutskever & Hinton, NIPS 2012; Krizhevsky, "One weird trick
    for parallelizing convolutional neural networks", arXiv:1404.5997;
    torchvision.models.alexnet (AlexNet_Weights.IMAGENET1K_V1: num_params 61,100,840).
    """
    num_classes = positive_int(num_classes, "num_classes")
    dropout = check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
    if not isinstance(lrn, bool):
        raise ValueError(f"lrn={lrn!r}: expected True or False")

    def conv(features, size, **kwargs):
        return fcnn.Conv(features, size, kernel_init=kernel_init, backward=backward, **kwargs)

    def pool():
        return fcnn.MaxPool(3, strides=2, backward=backward)

    def norm():
        return [fcnn.LRN(size=5, k=2.0, alpha=1e-4, beta=0.75, backward=backward)] if lrn else []

    def drop():
        return [fcnn.Dropout(dropout, backward=backward)] if dropout > 0 else []

    features = fcnn.serial(
        conv(64, 11, strides=4, padding=2), _relu(backward), *norm(), pool(),
        conv(192, 5, padding=2), _relu(backward), *norm(), pool(),
        conv(384, 3, padding=1), _relu(backward),
        conv(256, 3, padding=1), _relu(backward),
        conv(256, 3, padding=1), _relu(backward), pool(),
    )
    classifier = fcnn.serial(
        fcnn.Flatten(),
        *drop(), fcnn.Dense(4096, kernel_init=kernel_init, backward=backward), _relu(backward),
        *drop(), fcnn.Dense(4096, kernel_init=kernel_init, backward=backward), _relu(backward),
        fcnn.Dense(num_classes, kernel_init=kernel_init, backward=backward),
    )
    return _named(fcnn.serial(_named(features, "features"), _named(classifier, "classifier")),
                  "AlexNet")


def vgg(
    depth: int = 16,
    num_classes: int = 1000,
    *,
    batchnorm: bool = False,
    head: str = "imagenet",
    width_multiplier: float = 1.0,
    hidden: int = 4096,
    dropout: float = 0.5,
    kernel_init="he_normal",
    backward: str = "custom",
) -> Layer:
    """VGG-11/13/16/19 (configurations A, B, D, E), with or without BatchNorm.

    Features: per configuration, blocks of [conv 3x3 pad 1 - (BatchNorm) - ReLU]
    separated by 2x2/2 max pools (five pools), e.g. VGG-16:
    64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M. The convolutions keep
    their bias with BatchNorm too, as torchvision's vgg*_bn do. Output params and
    state are {"0": features, "1": head}.

    head:
      "imagenet": flatten (7*7*512 at 224x224) - dense hidden - ReLU - dropout
        - dense hidden - ReLU - dropout - dense num_classes; input (N, 224, 224, 3),
        output (N, num_classes). Published counts (torchvision, 1000 classes):
        VGG-11 132,863,336; VGG-11-BN 132,868,840; VGG-16 138,357,544;
        VGG-16-BN 138,365,992.
      "conv": the same head as convolutions (the paper's dense evaluation, Sec. 3.2):
        conv 7x7 VALID hidden - ReLU - dropout - conv 1x1 hidden - ReLU - dropout
        - conv 1x1 num_classes; output a class-score map (N, H', W', num_classes),
        (N, 1, 1, num_classes) at 224x224 and larger maps for larger inputs.
        `vgg_dense_head_to_conv` turns "imagenet" params into these, exactly.
      "cifar": flatten - dense num_classes, on 32x32 inputs (the feature map is then
        1x1x512), output (N, num_classes): VGG-16 14,719,818 parameters for 10
        classes, 14,728,266 with BatchNorm (the count of the common PyTorch CIFAR
        VGG, e.g. kuangliu/pytorch-cifar, which always has BatchNorm); VGG-11
        9,225,610 and 9,231,114.

    width_multiplier scales every convolution's filters (int(c * m), at least 1) and
    `hidden` is the width of the two hidden dense layers; both are for small
    experiments and tests (the paper's values are 1.0 and 4096).

    Reference: Simonyan & Zisserman, "Very deep convolutional networks for large-scale
    image recognition", ICLR 2015, Table 1 (configurations) and Table 2 (138M
    parameters for VGG-16); torchvision.models.vgg (counts above, from
    VGG*_Weights.IMAGENET1K_V1 num_params).
    """
    depth = _choice(positive_int(depth, "depth"), "depth", VGG_CONFIGS)
    num_classes = positive_int(num_classes, "num_classes")
    head = _choice(head, "head", VGG_HEADS)
    if not isinstance(batchnorm, bool):
        raise ValueError(f"batchnorm={batchnorm!r}: expected True or False")
    width_multiplier = check_number(width_multiplier, "width_multiplier", low=0.0, low_open=True)
    hidden = positive_int(hidden, "hidden")
    dropout = check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)

    layers: list[Layer] = []
    for entry in VGG_CONFIGS[depth]:
        if entry == "M":
            layers.append(fcnn.MaxPool(2, backward=backward))
            continue
        features = max(1, int(entry * width_multiplier))
        layers.append(fcnn.Conv(features, 3, padding=1, kernel_init=kernel_init,
                                backward=backward))
        if batchnorm:
            layers.append(_bn(backward))
        layers.append(_relu(backward))

    def drop():
        return [fcnn.Dropout(dropout, backward=backward)] if dropout > 0 else []

    def dense(n):
        return fcnn.Dense(n, kernel_init=kernel_init, backward=backward)

    def conv(n, size, padding):
        return fcnn.Conv(n, size, padding=padding, kernel_init=kernel_init, backward=backward)

    if head == "imagenet":
        classifier = fcnn.serial(
            fcnn.Flatten(),
            dense(hidden), _relu(backward), *drop(),
            dense(hidden), _relu(backward), *drop(),
            dense(num_classes),
        )
    elif head == "conv":
        classifier = fcnn.serial(
            conv(hidden, VGG_CONV_HEAD_WINDOW, "VALID"), _relu(backward), *drop(),
            conv(hidden, 1, "VALID"), _relu(backward), *drop(),
            conv(num_classes, 1, "VALID"),
        )
    else:
        classifier = fcnn.serial(fcnn.Flatten(), dense(num_classes))
    name = f"VGG{depth}" + ("-BN" if batchnorm else "")
    return _named(fcnn.serial(_named(fcnn.serial(*layers), "features"),
                              _named(classifier, f"classifier[{head}]")), name)


def vgg_dense_head_to_conv(params: dict) -> dict:
    """Params of `vgg(..., head="imagenet")` as params of the same `vgg(..., head="conv")`.

    The first dense kernel (7*7*C, F) is reshaped to the HWIO kernel (7, 7, C, F): the
    flatten of a channels-last (N, 7, 7, C) map puts x[n, h, w, c] at index
    (h * 7 + w) * C + c, which is exactly the row-major order of (7, 7, C), so the 7x7
    VALID convolution computes the same sums. The other dense kernels (F_in, F)
    become 1x1 kernels (1, 1, F_in, F); biases and the features are unchanged. No
    arithmetic is done: the conversion is exact and the two models give the same
    output on a 224x224 input (the conv head a 1x1 map of it), to float rounding.

    Raises ValueError when `params` is not the params of a dense-head VGG.
    """
    window = VGG_CONV_HEAD_WINDOW
    if not isinstance(params, dict) or set(params) != {"0", "1"}:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(
            f"params has keys {got}: expected the params of vgg(..., head='imagenet'), "
            "keyed {'0': features, '1': classifier}")
    head = params["1"]
    # serial(Flatten, Dense, ReLU, [Dropout], Dense, ReLU, [Dropout], Dense): the
    # dense layers are the entries holding a kernel; the others carry over.
    keys = sorted(head, key=int)
    dense_keys = [k for k in keys if isinstance(head[k], dict) and "kernel" in head[k]]
    if len(dense_keys) != 3 or keys[0] in dense_keys or any(
            jnp.ndim(head[k]["kernel"]) != 2 for k in dense_keys):
        raise ValueError(
            "params['1'] is not a dense VGG head (flatten then three dense layers); "
            "pass the params of vgg(..., head='imagenet')")
    first = head[dense_keys[0]]["kernel"]
    rows, features = first.shape
    if rows % (window * window):
        raise ValueError(
            f"params['1']: the first dense kernel has {rows} rows, not a multiple of "
            f"{window}x{window}; the conv head needs the {window}x{window} feature map of a "
            "224x224 input")
    channels = rows // (window * window)
    out = {}
    # The conv head has no Flatten: every later entry moves one key down.
    for k in keys[1:]:
        entry = dict(head[k])
        if k in dense_keys:
            kernel = entry["kernel"]
            shape = ((window, window, channels, features) if k == dense_keys[0]
                     else (1, 1) + tuple(kernel.shape))
            entry["kernel"] = jnp.reshape(kernel, shape)
        out[str(int(k) - 1)] = entry
    return {"0": params["0"], "1": out}


def _zero_pad_shortcut(features: int, strides: int) -> Layer:
    """He et al.'s option A shortcut: x[:, ::s, ::s] with zero channels appended up to
    `features`. (N, *S, C) -> (N, *ceil(S / s), features); no params, no state."""
    name = f"ZeroPadShortcut({features}, strides={strides})"

    def init(rng, input_shape):
        del rng
        shape = tuple(input_shape)
        if len(shape) < 3 or shape[-1] > features:
            raise ValueError(
                f"{name}: input_shape={shape}: expected (batch, *spatial, channels) with "
                f"at most {features} channels")
        spatial = tuple(-(-n // strides) for n in shape[1:-1])
        return (shape[0], *spatial, features), {}, {}

    def apply(params, state, x, *, train, rng=None):
        del params, rng
        check_train_flag(train, name)
        x = x[(slice(None),) + (slice(None, None, strides),) * (x.ndim - 2)]
        pad = [(0, 0)] * (x.ndim - 1) + [(0, features - x.shape[-1])]
        return jnp.pad(x, pad), state

    return Layer(init, apply, name=name)


def _basic_block(c_in: int, features: int, strides: int, shortcut: str,
                 kernel_init, backward: str) -> Layer:
    """ResNet's basic block: relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x)).

    The shortcut is the identity when the shape is kept; otherwise option "A"
    (subsample and zero-pad channels, no parameters) or "B" (1x1 convolution with
    stride, then BatchNorm). Built as serial(fan_out(2), parallel(main, shortcut),
    fan_in_sum, ReLU), so its params are {"1": {"0": main, "1": shortcut}}.
    """
    def conv(n, size, s, padding):
        return fcnn.Conv(n, size, strides=s, padding=padding, use_bias=False,
                         kernel_init=kernel_init, backward=backward)

    main = fcnn.serial(
        conv(features, 3, strides, 1), _bn(backward), _relu(backward),
        conv(features, 3, 1, 1), _bn(backward),
    )
    if strides == 1 and c_in == features:
        short = fcnn.identity()
    elif shortcut == "A":
        short = _zero_pad_shortcut(features, strides)
    else:
        short = _named(fcnn.serial(conv(features, 1, strides, "VALID"), _bn(backward)),
                       "projection")
    block = fcnn.serial(fcnn.fan_out(2), fcnn.parallel(_named(main, "main"), short),
                        fcnn.fan_in_sum(), _relu(backward))
    return _named(block, f"BasicBlock({features}, strides={strides})")


def _resnet_stages(c_in: int, widths, blocks, first_strides: int, shortcut: str,
                   kernel_init, backward: str) -> list[Layer]:
    stages = []
    for i, (features, n) in enumerate(zip(widths, blocks)):
        stage = []
        for j in range(n):
            strides = first_strides if (i > 0 and j == 0) else 1
            stage.append(_basic_block(c_in, features, strides, shortcut, kernel_init, backward))
            c_in = features
        stages.append(_named(fcnn.serial(*stage), f"stage{i + 1}"))
    return stages


def resnet_cifar(
    depth: int = 20,
    num_classes: int = 10,
    *,
    shortcut: str = "A",
    kernel_init="he_normal",
    backward: str = "custom",
) -> Layer:
    """ResNet-20/32/44/56/110 for CIFAR-10: depth = 6n + 2 (n = 3, 5, 7, 9, 18).

        conv 3x3x16 - BN - ReLU
        - n basic blocks of 16 filters (32x32), n of 32 (16x16), n of 64 (8x8)
        - global average pool - dense num_classes

    A basic block is conv 3x3 - BN - ReLU - conv 3x3 - BN, added to the shortcut,
    then ReLU; the first block of stages 2 and 3 has stride 2. Convolutions have no
    bias (BatchNorm's shift plays its part). shortcut="A" (the paper's CIFAR choice):
    identity shortcuts everywhere, the two that change shape subsample with stride
    2 and append zero channels (no parameters). shortcut="B": those two are 1x1
    convolutions with stride 2 and BatchNorm (+576 and +2,176 parameters).

    Input (N, 32, 32, 3); output (N, num_classes). Counting (option A, 10 classes):
    stem 432 + 32; stage 1 n * 2 * (2,304 + 32); stage 2 (4,608 + 64) + (9,216 + 64)
    + (n - 1) * 2 * (9,216 + 64); stage 3 (18,432 + 128) + (36,864 + 128)
    + (n - 1) * 2 * (36,864 + 128); dense 650. ResNet-20: 269,722; each +2 blocks
    per stage adds 2 * 97,216: ResNet-32 464,154, ResNet-44 658,586, ResNet-56
    853,018, ResNet-110 1,727,962 (paper: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M).

    Reference: He, Zhang, Ren & Sun, "Deep residual learning for image recognition",
    CVPR 2016, Section 4.2 and Table 6.
    """
    depth = positive_int(depth, "depth")
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"depth={depth}: expected 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...)")
    num_classes = positive_int(num_classes, "num_classes")
    shortcut = _choice(shortcut, "shortcut", RESNET_CIFAR_SHORTCUTS)
    n = (depth - 2) // 6
    stem = fcnn.serial(
        fcnn.Conv(16, 3, padding=1, use_bias=False, kernel_init=kernel_init, backward=backward),
        _bn(backward), _relu(backward),
    )
    stages = _resnet_stages(16, (16, 32, 64), (n, n, n), 2, shortcut, kernel_init, backward)
    return _named(fcnn.serial(
        _named(stem, "stem"), *stages,
        fcnn.GlobalAvgPool(backward=backward),
        fcnn.Dense(num_classes, kernel_init=kernel_init, backward=backward),
    ), f"ResNet{depth}")


def resnet(
    depth: int = 18,
    num_classes: int = 1000,
    *,
    kernel_init="he_normal",
    backward: str = "custom",
) -> Layer:
    """ResNet-18 and ResNet-34 for ImageNet (basic blocks, projection shortcuts).

        conv 7x7x64 /2 pad 3 - BN - ReLU - maxpool 3x3/2 pad 1
        - stages of basic blocks with 64, 128, 256, 512 filters
          (2, 2, 2, 2 blocks for ResNet-18; 3, 4, 6, 3 for ResNet-34),
          the first block of stages 2-4 with stride 2
        - global average pool - dense num_classes

    Where a block changes the shape, its shortcut is a 1x1 convolution with stride 2
    and BatchNorm (the paper's option B, as torchvision); elsewhere the identity.
    Input (N, 224, 224, 3), spatial sizes 224 -> 112 -> 56 -> 28 -> 14 -> 7; output
    (N, num_classes). Published: 11,689,512 (ResNet-18) and 21,797,672 (ResNet-34)
    parameters for 1000 classes (torchvision ResNet18/34_Weights.IMAGENET1K_V1
    num_params; BatchNorm scale and shift counted, running statistics not).

    Reference: He, Zhang, Ren & Sun, CVPR 2016, Table 1; torchvision.models.resnet.
    """
    depth = _choice(positive_int(depth, "depth"), "depth", RESNET_BLOCKS)
    num_classes = positive_int(num_classes, "num_classes")
    stem = fcnn.serial(
        fcnn.Conv(64, 7, strides=2, padding=3, use_bias=False, kernel_init=kernel_init,
                  backward=backward),
        _bn(backward), _relu(backward),
        fcnn.MaxPool(3, strides=2, padding=1, backward=backward),
    )
    stages = _resnet_stages(64, (64, 128, 256, 512), RESNET_BLOCKS[depth], 2, "B",
                            kernel_init, backward)
    return _named(fcnn.serial(
        _named(stem, "stem"), *stages,
        fcnn.GlobalAvgPool(backward=backward),
        fcnn.Dense(num_classes, kernel_init=kernel_init, backward=backward),
    ), f"ResNet{depth}")


def darknet19(
    num_classes: int = 1000,
    *,
    include_top: bool = True,
    backward: str = "custom",
) -> Layer:
    """Darknet-19, the YOLOv2 backbone, built from `fcnn.conv_bn_leaky` blocks.

    18 conv-BN-leaky(0.1) blocks (convolutions without bias) and five 2x2/2 max
    pools, as in YOLO9000 Table 6:
        32 3x3, M, 64 3x3, M, 128 3x3, 64 1x1, 128 3x3, M, 256 3x3, 128 1x1, 256 3x3,
        M, 512 3x3, 256 1x1, 512 3x3, 256 1x1, 512 3x3, M,
        1024 3x3, 512 1x1, 1024 3x3, 512 1x1, 1024 3x3
    then, with include_top, the classifier: conv 1x1 num_classes (with bias, linear,
    no BatchNorm, as in darknet's cfg/darknet19.cfg) - global average pool; output
    (N, num_classes) logits (the softmax is the loss's). With include_top=False the
    output is the feature map (N, H / 32, W / 32, 1024), the detector's backbone.

    Input: any (N, H, W, C) with H, W >= 32 (the paper classifies at 224x224 and
    fine-tunes at 448x448; the pools floor odd sizes). The parameter count does not
    depend on the input size: 20,842,376 for 1000 classes (19,817,376 in the blocks
    including 2 * C BatchNorm parameters each, plus 1024 * 1000 + 1000). The paper
    gives no parameter count (only 5.58 billion operations at 224x224); the same
    20,842,376 is what torchsummary reports for PyTorch ports of darknet19.cfg.

    Reference: Redmon & Farhadi, "YOLO9000: better, faster, stronger", CVPR 2017,
    Section 3 and Table 6.
    """
    num_classes = positive_int(num_classes, "num_classes")
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top={include_top!r}: expected True or False")
    layers: list[Layer] = []
    for entry in DARKNET19_LAYERS:
        if entry == "M":
            layers.append(fcnn.MaxPool(2, backward=backward))
        else:
            layers.append(fcnn.conv_bn_leaky(*entry, backward=backward))
    if not include_top:
        return _named(fcnn.serial(*layers), "Darknet19[backbone]")
    return _named(fcnn.serial(
        _named(fcnn.serial(*layers), "features"),
        fcnn.Conv(num_classes, 1, backward=backward),
        fcnn.GlobalAvgPool(backward=backward),
    ), "Darknet19")


def mobilenet_v1(
    num_classes: int = 1000,
    *,
    alpha: float = 1.0,
    dropout: float = 1e-3,
    include_top: bool = True,
    kernel_init="he_normal",
    backward: str = "custom",
) -> Layer:
    """MobileNet v1: a 3x3 stem and 13 depthwise-separable blocks, width multiplier alpha.

        conv 3x3 /2 int(32 * alpha) - BN - ReLU
        - 13 x [depthwise conv 3x3 (Conv with groups = C_in, no bias) - BN - ReLU
                - pointwise conv 1x1 int(f * alpha) - BN - ReLU]
          with f = 64, 128, 128, 256, 256, 512, 512 x5, 1024, 1024 and stride 2 in
          the depthwise conv of blocks 2, 4, 6 and 12
        - global average pool - dropout - dense num_classes

    Convolutions have no bias (BatchNorm follows each). Padding is "SAME", which for
    even sizes is Keras's pad-(0, 1)-then-VALID. Input (N, H, W, C), e.g. 224x224
    (spatial size / 32 at the end); output (N, num_classes), or the feature map
    (N, H / 32, W / 32, int(1024 * alpha)) with include_top=False. The paper uses
    ReLU; Keras uses ReLU6 (no parameters either way).

    Parameters at alpha = 1.0, 1000 classes: 4,231,976 (weights, biases, BatchNorm
    scale and shift) plus 21,888 running means and variances in `state`: 4,253,864
    in all, Keras's "Total params" for keras.applications.MobileNet (the paper:
    4.2 million).

    Reference: Howard et al., "MobileNets: efficient convolutional neural networks for
    mobile vision applications", arXiv:1704.04861, 2017, Table 1 and Section 3.3;
    keras.applications.mobilenet.
    """
    num_classes = positive_int(num_classes, "num_classes")
    alpha = check_number(alpha, "alpha", low=0.0, low_open=True)
    dropout = check_number(dropout, "dropout", low=0.0, high=1.0, high_open=True)
    if not isinstance(include_top, bool):
        raise ValueError(f"include_top={include_top!r}: expected True or False")

    def width(f):
        return max(1, int(f * alpha))

    def conv_bn_relu(features, size, strides=1, groups=1):
        return [fcnn.Conv(features, size, strides=strides, padding="SAME", groups=groups,
                          use_bias=False, kernel_init=kernel_init, backward=backward),
                _bn(backward, 0.99), _relu(backward)]  # Keras's BatchNorm momentum 0.99

    c = width(32)
    layers = [_named(fcnn.serial(*conv_bn_relu(c, 3, strides=2)), "stem")]
    for i, (f, strides) in enumerate(MOBILENET_V1_BLOCKS):
        block = fcnn.serial(*conv_bn_relu(c, 3, strides=strides, groups=c),
                            *conv_bn_relu(width(f), 1))
        layers.append(_named(block, f"DepthwiseSeparable{i + 1}({width(f)}, strides={strides})"))
        c = width(f)
    name = f"MobileNetV1(alpha={alpha:g})"
    if not include_top:
        return _named(fcnn.serial(*layers), name)
    head = [fcnn.GlobalAvgPool(backward=backward)]
    if dropout > 0:
        head.append(fcnn.Dropout(dropout, backward=backward))
    head.append(fcnn.Dense(num_classes, kernel_init=kernel_init, backward=backward))
    return _named(fcnn.serial(_named(fcnn.serial(*layers), "features"), *head), name)


__all__ = [
    "alexnet", "alexnet_cifar", "cnn", "darknet19", "lenet5", "mlp", "mobilenet_v1",
    "refnet", "resnet", "resnet_cifar", "vgg", "vgg_dense_head_to_conv",
]
