"""oneDNN's CPU convolutions as XLA custom calls: an optional lowering of fcnn's conv.

    from fcnn.ops import onednn
    if onednn.supports(x.shape, kernel.shape, strides, pads, dilation, 1, groups, x.dtype):
        y = onednn.conv_forward(x, kernel, strides, pads, dilation, 1, groups)

`conv_forward`, `conv_input_grad` and `conv_kernel_grad` have the semantics and
signatures of `fcnn.ops.lowering`'s functions and fall back to XLA's convolution when
oneDNN cannot run a call (see `conv` for the rules, `build` for how the C++ in conv.cc
is compiled on first use). Needs oneDNN >= 3 (`pip install onednn-cpu-gomp
onednn-devel-cpu-gomp`) and a C++ compiler; without them `available()` is False and
a RuntimeWarning says why, once.

Environment:
    FCNN_ONEDNN=0              never use oneDNN (everything runs on XLA)
    FCNN_ONEDNN_THREADING      "xla" (default): batch chunks on XLA's own thread pool,
                               oneDNN single-threaded in each; "omp": oneDNN's OpenMP team
    FCNN_ONEDNN_CHUNKS         batch chunks per XLA thread in "xla" mode (default 2)
    FCNN_ONEDNN_THREADS        OpenMP team size in "omp" mode (default: all CPUs)
    FCNN_CACHE_DIR             where the compiled library goes (default ~/.cache/fcnn)
    FCNN_ONEDNN_ROOT           a oneDNN install prefix to use instead of the one found
The threading settings are read once per process, when the first call runs.
"""

from fcnn.ops.onednn.build import OnednnUnavailable, cache_dir
from fcnn.ops.onednn.conv import (
    available,
    conv_forward,
    conv_input_grad,
    conv_kernel_grad,
    implementation,
    supports,
    version,
)

__all__ = [
    "OnednnUnavailable",
    "available",
    "cache_dir",
    "conv_forward",
    "conv_input_grad",
    "conv_kernel_grad",
    "implementation",
    "supports",
    "version",
]
