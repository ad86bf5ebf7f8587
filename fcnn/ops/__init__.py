"""Pure differentiable primitives, each a `jax.custom_vjp` with a hand-written backward.

One concept per module; call the functions through their module, which keeps a module
and a function of the same name apart (`fcnn.ops.conv.conv`, `fcnn.ops.dense.dense`):

    activations    sigmoid, tanh, relu, leaky_relu, prelu, rrelu, softplus, elu, selu,
                   gelu, silu, softmax, log_softmax, maxout; get_activation(name)
    conv           conv, conv_output_shape (1-3 spatial dims, strides, padding,
                   dilation, input dilation, groups)
    conv_transpose conv_transpose, conv_transpose_output_shape (1-3 spatial dims,
                   strides, padding, output_padding, dilation, groups)
    dense          dense
    dropout        dropout, spatial_dropout, drop_path (stochastic depth)
    lowering       alternative lowerings of the convolution (same semantics)
    lrn            lrn (local response normalization)
    normalization  normalize (batch/layer/instance/group norm), weight_normalize
    padding        pad (modes "zeros", "reflect", "replicate", "circular")
    pooling        max_pool, avg_pool, global_avg_pool, global_max_pool,
                   adaptive_avg_pool
    resize         upsample ("nearest", "bilinear"; integer factors)

Every op takes `backward="custom"` (the hand-derived rule, the default) or
`backward="autodiff"` (plain autodiff of the same forward), so the two can be compared.
"""

from fcnn.ops import (  # noqa: F401
    activations,
    conv,
    conv_transpose,
    dense,
    dropout,
    lowering,
    lrn,
    normalization,
    padding,
    pooling,
    resize,
)
