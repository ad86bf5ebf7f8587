"""Pure differentiable primitives, each a `jax.custom_vjp` with a hand-written backward.

Every op takes `backward="custom"` (the hand-derived rule, the default) or
`backward="autodiff"` (plain autodiff of the same forward), so the two can be compared.
"""

from fcnn.ops.conv import conv, conv_output_shape  # noqa: F401
from fcnn.ops.dense import dense  # noqa: F401
from fcnn.ops.activations import (  # noqa: F401
    ACTIVATION_NAMES,
    elu,
    gelu,
    get_activation,
    leaky_relu,
    log_softmax,
    maxout,
    prelu,
    relu,
    rrelu,
    selu,
    sigmoid,
    silu,
    softmax,
    softplus,
    swish,
    tanh,
)
from fcnn.ops.dropout import dropout, spatial_dropout  # noqa: F401
from fcnn.ops.pooling import avg_pool, global_avg_pool, max_pool  # noqa: F401
from fcnn.ops.lrn import lrn  # noqa: F401
from fcnn.ops.normalization import normalize, normalize_with_stats, weight_normalize  # noqa: F401
