"""oneDNN's convolutions inside jitted JAX code: forward, input gradient, kernel gradient.

The three functions compute exactly what `fcnn.ops.lowering`'s pure functions compute
(channels-last x (N, *S, C_in), kernel (*K, C_in // groups, C_out), 1-3 spatial
dimensions), with the same signatures:

    conv_forward(x, kernel, strides, pads, dilation, input_dilation, groups)
        y = lax.conv_general_dilated(x, kernel, ...)                 (N, *O, C_out)
    conv_input_grad(dy, kernel, input_shape, strides, pads, ...)
        dx = J_x^T dy, the vjp of the forward in x                    input_shape
    conv_kernel_grad(x, dy, kernel_shape, strides, pads, ...)
        dw = J_w^T dy, the vjp of the forward in the kernel           kernel_shape

When `supports(...)` holds they run oneDNN's primitives (the C++ in conv.cc) as XLA FFI
custom calls; otherwise they run XLA's convolution and its transpose, so they are
always correct and a caller may route to them unconditionally. `supports` is False when
the library cannot be built or loaded (a RuntimeWarning says why, once per process),
when FCNN_ONEDNN=0, for dtypes other than float32 and bfloat16 (both operands alike),
input dilation other than 1, negative padding, an empty batch, and when oneDNN would
run the configuration with a reference (unoptimised) implementation.

Transformations:
    jax.jit      the custom calls are ordinary HLO custom calls.
    jax.vmap     a batching rule folds a vmapped axis of the activations into N
                 (vmap over examples or micro-batches stays on oneDNN); when the kernel
                 is vmapped (forward, input grad) or in the kernel gradient (whose batch
                 is summed), the rule runs XLA's convolution, vmapped, instead.
    jax.grad     each function is bilinear and its vjp is two of the three functions:
                 forward(x, w):        dx = input_grad(g, w),   dw = kernel_grad(x, g)
                 input_grad(dy, w):    ddy = forward(g, w),     dw = kernel_grad(g, dy)
                 kernel_grad(x, dy):   dx = input_grad(dy, g),  ddy = forward(x, g)
                 so reverse mode works to any order. Forward mode (jax.jvp, jacfwd,
                 hessian) is not defined on the oneDNN path (custom_vjp).
"""

from __future__ import annotations

import ctypes
import functools
import os
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fcnn.ops.onednn import build

UNAVAILABLE_NOTICE = "fcnn: oneDNN convolutions are unavailable ({reason}); using XLA's instead"
DISABLED_BY_ENV = "FCNN_ONEDNN=0"
BAD_GEOMETRY = (
    "{what}: expected x (N, *S, C_in) and kernel (*K, C_in // groups, C_out) of equal "
    "rank 3-5, one (low, high) pad pair and one stride/dilation per spatial dimension, "
    "and an output of positive size; got {detail}"
)
_SPATIAL = {1: "W", 2: "HW", 3: "DHW"}
_DTYPES = {np.dtype(np.float32): 0, np.dtype(jnp.bfloat16): 1}
_PASSES = {"forward": 0, "input_grad": 1, "kernel_grad": 2}
_TARGETS = {
    "forward": "fcnn_onednn_conv_forward",
    "input_grad": "fcnn_onednn_conv_input_grad",
    "kernel_grad": "fcnn_onednn_conv_kernel_grad",
}

_state = {"notified": False}


# ----------------------------------------------------------------------------------
# Availability


def _load() -> build.Loaded | None:
    """The loaded library, or None (with the notice once) when it cannot be had."""
    if os.environ.get("FCNN_ONEDNN", "1") == "0":
        return None
    try:
        return build.load()
    except build.OnednnUnavailable as e:
        if not _state["notified"]:
            _state["notified"] = True
            warnings.warn(UNAVAILABLE_NOTICE.format(reason=e), RuntimeWarning, stacklevel=3)
        return None


def available() -> bool:
    """True when oneDNN's convolutions are built and loaded (building them on first
    use, a few seconds once per machine); False, with a one-time RuntimeWarning giving
    the reason, when they cannot be (no oneDNN, no compiler), and when FCNN_ONEDNN=0."""
    return _load() is not None


def version() -> str | None:
    """oneDNN's version, CPU runtime, instruction set and threads, or None."""
    loaded = _load()
    return None if loaded is None else loaded.version


# ----------------------------------------------------------------------------------
# The static description of one convolution


class Spec(NamedTuple):
    """Everything but the batch size: input spatial size and channels, the kernel
    shape, and the settings. Hashable; the batch comes from the arrays."""

    in_spatial: tuple[int, ...]
    c_in: int
    kernel_shape: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    input_dilation: tuple[int, ...]
    groups: int

    @property
    def ndim(self) -> int:
        return len(self.in_spatial)

    @property
    def c_out(self) -> int:
        return self.kernel_shape[-1]

    @property
    def out_spatial(self) -> tuple[int, ...]:
        return tuple(
            ((s - 1) * ld + 1 + lo + hi - ((k - 1) * d + 1)) // st + 1
            for s, ld, (lo, hi), k, d, st in zip(
                self.in_spatial, self.input_dilation, self.pads, self.kernel_shape,
                self.dilation, self.strides)
        )

    def x_shape(self, n: int) -> tuple[int, ...]:
        return (n, *self.in_spatial, self.c_in)

    def y_shape(self, n: int) -> tuple[int, ...]:
        return (n, *self.out_spatial, self.c_out)


def _tuple(value, ndim, name) -> tuple[int, ...]:
    if value is None:
        return (1,) * ndim
    if isinstance(value, (int, np.integer)):
        return (int(value),) * ndim
    value = tuple(int(v) for v in value)
    if len(value) != ndim:
        raise ValueError(BAD_GEOMETRY.format(
            what=name, detail=f"{value} for {ndim} spatial dimension(s)"))
    return value


def make_spec(x_shape, kernel_shape, strides=None, pads=None, dilation=None,
              input_dilation=None, groups=1) -> Spec:
    """Normalises and checks one convolution's geometry (raises ValueError)."""
    x_shape, kernel_shape = tuple(int(s) for s in x_shape), tuple(int(s) for s in kernel_shape)
    if len(x_shape) not in (3, 4, 5) or len(kernel_shape) != len(x_shape):
        raise ValueError(BAD_GEOMETRY.format(
            what="rank", detail=f"x {x_shape}, kernel {kernel_shape}"))
    ndim = len(x_shape) - 2
    pads = ((0, 0),) * ndim if pads is None else tuple((int(lo), int(hi)) for lo, hi in pads)
    if len(pads) != ndim:
        raise ValueError(BAD_GEOMETRY.format(what="pads", detail=f"{pads}"))
    groups = int(groups)
    c_in, k_in, c_out = x_shape[-1], kernel_shape[-2], kernel_shape[-1]
    if groups < 1 or k_in * groups != c_in or c_out % groups:
        raise ValueError(BAD_GEOMETRY.format(
            what="groups", detail=f"groups={groups}, x {x_shape}, kernel {kernel_shape}"))
    spec = Spec(x_shape[1:-1], c_in, kernel_shape, _tuple(strides, ndim, "strides"), pads,
                _tuple(dilation, ndim, "dilation"),
                _tuple(input_dilation, ndim, "input_dilation"), groups)
    if min(spec.strides + spec.dilation + spec.input_dilation) < 1 or min(spec.out_spatial) < 1:
        raise ValueError(BAD_GEOMETRY.format(
            what="settings", detail=f"{spec}, output spatial size {spec.out_spatial}"))
    return spec


# ----------------------------------------------------------------------------------
# Support


def _is_reference(impl: str) -> bool:
    return impl.startswith("ref") or ":ref" in impl


def _implementation(pass_: str, spec: Spec, n: int, dtype_code: int) -> str:
    """oneDNN's implementation name for one pass (it creates and caches the primitive),
    or 'unsupported: <reason>'."""
    loaded = _load()
    if loaded is None:
        return "unsupported: library unavailable"
    return _query(loaded, pass_, spec, n, dtype_code)


@functools.lru_cache(maxsize=None)
def _query(loaded: build.Loaded, pass_: str, spec: Spec, n: int, dtype_code: int) -> str:
    nd = spec.ndim

    def arr(values):
        a = np.ascontiguousarray(values, dtype=np.int64)
        return a, a.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))

    arrays = [arr(v) for v in (
        spec.x_shape(n), spec.kernel_shape, spec.y_shape(n), spec.strides, spec.dilation,
        [lo for lo, _ in spec.pads], [hi for _, hi in spec.pads])]
    buf = ctypes.create_string_buffer(512)
    rc = loaded.library.fcnn_onednn_implementation(
        ctypes.c_int64(_PASSES[pass_]), ctypes.c_int64(dtype_code), ctypes.c_int64(nd + 2),
        *(p for _, p in arrays), ctypes.c_int64(spec.groups), buf, ctypes.c_int64(len(buf)))
    text = buf.value.decode(errors="replace")
    return text if rc == 0 else f"unsupported: {text}"


def _static_reason(spec: Spec, n: int, dtypes) -> str | None:
    """Why the oneDNN path cannot take this call before asking oneDNN, or None."""
    dtypes = {np.dtype(d) for d in dtypes}
    if len(dtypes) != 1 or next(iter(dtypes)) not in _DTYPES:
        return f"dtypes {sorted(str(d) for d in dtypes)}: needs float32 or bfloat16, alike"
    if any(ld != 1 for ld in spec.input_dilation):
        return f"input_dilation {spec.input_dilation}"
    if min(sum(spec.pads, ())) < 0:
        return f"negative padding {spec.pads}"
    if n < 1:
        return "empty batch"
    return None


def implementation(pass_: str, x_shape, kernel_shape, strides=None, pads=None,
                   dilation=None, input_dilation=None, groups=1,
                   dtype=np.float32) -> str:
    """The oneDNN implementation that would run `pass_` ("forward", "input_grad" or
    "kernel_grad") of this convolution, e.g. "brgconv:avx512_core", or a string
    starting with "unsupported:" giving the reason it would not run on oneDNN."""
    if pass_ not in _PASSES:
        raise ValueError(f"pass_={pass_!r}: expected one of {', '.join(_PASSES)}")
    spec = make_spec(x_shape, kernel_shape, strides, pads, dilation, input_dilation, groups)
    reason = _static_reason(spec, x_shape[0], [dtype])
    if reason is not None:
        return f"unsupported: {reason}"
    return _implementation(pass_, spec, int(x_shape[0]), _DTYPES[np.dtype(dtype)])


def _spec_supported(spec: Spec, n: int, dtypes) -> bool:
    if _static_reason(spec, n, dtypes) is not None or _load() is None:
        return False
    code = _DTYPES[np.dtype(dtypes[0])]
    return all(
        not impl.startswith("unsupported") and not _is_reference(impl)
        for impl in (_implementation(p, spec, n, code) for p in _PASSES)
    )


def supports(x_shape, kernel_shape, strides=None, pads=None, dilation=None,
             input_dilation=None, groups=1, dtype=np.float32) -> bool:
    """True when all three passes of this convolution run on oneDNN, with an optimised
    (non-reference) implementation; False when they would fall back to XLA (see the
    module docstring for the cases), including when oneDNN is unavailable."""
    try:
        spec = make_spec(x_shape, kernel_shape, strides, pads, dilation, input_dilation,
                         groups)
    except ValueError:
        return False
    return _spec_supported(spec, int(x_shape[0]), [dtype])


# ----------------------------------------------------------------------------------
# XLA's computation of the same three passes (the fallback)


def _xla_forward(spec: Spec, x, kernel):
    sp = _SPATIAL[spec.ndim]
    return lax.conv_general_dilated(
        x, kernel, window_strides=spec.strides, padding=spec.pads,
        lhs_dilation=spec.input_dilation, rhs_dilation=spec.dilation,
        dimension_numbers=("N" + sp + "C", sp + "IO", "N" + sp + "C"),
        feature_group_count=spec.groups,
    )


def _xla_input_grad(spec: Spec, dy, kernel):
    x_aval = jax.ShapeDtypeStruct(spec.x_shape(dy.shape[0]), dy.dtype)
    (dx,) = jax.linear_transpose(lambda x: _xla_forward(spec, x, kernel), x_aval)(dy)
    return dx


def _xla_kernel_grad(spec: Spec, x, dy):
    k_aval = jax.ShapeDtypeStruct(spec.kernel_shape, x.dtype)
    (dw,) = jax.linear_transpose(lambda k: _xla_forward(spec, x, k), k_aval)(dy)
    return dw


_XLA = {"forward": _xla_forward, "input_grad": _xla_input_grad,
        "kernel_grad": _xla_kernel_grad}


# ----------------------------------------------------------------------------------
# The custom calls, with their batching rule


def _out_shape(pass_: str, spec: Spec, a):
    n = a.shape[0]
    return {"forward": spec.y_shape(n), "input_grad": spec.x_shape(n),
            "kernel_grad": spec.kernel_shape}[pass_]


def _ffi(pass_: str, spec: Spec, a, b):
    out = jax.ShapeDtypeStruct(_out_shape(pass_, spec, a), a.dtype)
    return jax.ffi.ffi_call(_TARGETS[pass_], out, vmap_method="sequential")(
        a, b,
        strides=np.asarray(spec.strides, np.int64),
        dilation=np.asarray(spec.dilation, np.int64),
        pad_lo=np.asarray([lo for lo, _ in spec.pads], np.int64),
        pad_hi=np.asarray([hi for _, hi in spec.pads], np.int64),
        groups=np.int64(spec.groups),
    )


@functools.lru_cache(maxsize=None)
def _call(pass_: str, spec: Spec):
    """The custom call of one pass, as a function of its two arrays, with a batching
    rule: a vmapped activation axis folds into N (forward, input grad, when the kernel
    is shared); anything else runs XLA's convolution under vmap."""

    @jax.custom_batching.custom_vmap
    def call(a, b):
        return _ffi(pass_, spec, a, b)

    @call.def_vmap
    def rule(axis_size, in_batched, a, b):
        a_batched, b_batched = in_batched
        if pass_ != "kernel_grad" and a_batched and not b_batched:
            folded = a.reshape((-1,) + a.shape[2:])  # (B, N, ...) -> (B * N, ...)
            out = call(folded, b)
            return out.reshape((axis_size, -1) + out.shape[1:]), True
        in_axes = (0 if a_batched else None, 0 if b_batched else None)
        return jax.vmap(functools.partial(_XLA[pass_], spec), in_axes=in_axes)(a, b), True

    return call


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _forward(spec, x, kernel):
    return _call("forward", spec)(x, kernel)


def _forward_fwd(spec, x, kernel):
    return _forward(spec, x, kernel), (x, kernel)


def _forward_bwd(spec, residuals, g):
    x, kernel = residuals  # y = A_w x:  dx = A_w^T g,  dw = kernel_grad(x, g)
    return _input_grad(spec, g, kernel), _kernel_grad(spec, x, g)


_forward.defvjp(_forward_fwd, _forward_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _input_grad(spec, dy, kernel):
    return _call("input_grad", spec)(dy, kernel)


def _input_grad_fwd(spec, dy, kernel):
    return _input_grad(spec, dy, kernel), (dy, kernel)


def _input_grad_bwd(spec, residuals, g):
    dy, kernel = residuals  # <A_w^T dy, g> = <dy, A_w g>
    return _forward(spec, g, kernel), _kernel_grad(spec, g, dy)


_input_grad.defvjp(_input_grad_fwd, _input_grad_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _kernel_grad(spec, x, dy):
    return _call("kernel_grad", spec)(x, dy)


def _kernel_grad_fwd(spec, x, dy):
    return _kernel_grad(spec, x, dy), (x, dy)


def _kernel_grad_bwd(spec, residuals, g):
    x, dy = residuals  # <kernel_grad(x, dy), g> = <dy, A_g x>
    return _input_grad(spec, dy, g), _forward(spec, x, g)


_kernel_grad.defvjp(_kernel_grad_fwd, _kernel_grad_bwd)


# ----------------------------------------------------------------------------------
# Public functions (lowering's signatures)


def _check_shape(name, got, expected, what):
    if tuple(got) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(got)}: expected {tuple(expected)}, {what}")


def conv_forward(x, kernel, strides=None, pads=None, dilation=None, input_dilation=None,
                 groups=1):
    """Forward convolution on oneDNN (XLA when unsupported).

    x (N, *S, C_in), kernel (*K, C_in // G, C_out) -> y (N, *O, C_out);
    y[n, o, co] = sum_{k, ci} xp[n, o*S + k*D, g*Cig + ci] w[k, ci, co]: equals
    `lax.conv_general_dilated` with (low, high) `pads`, kernel `dilation`, `groups`.
    """
    spec = make_spec(x.shape, kernel.shape, strides, pads, dilation, input_dilation, groups)
    if not _spec_supported(spec, x.shape[0], [x.dtype, kernel.dtype]):
        return _xla_forward(spec, x, kernel)
    return _forward(spec, x, kernel)


def conv_input_grad(dy, kernel, input_shape, strides=None, pads=None, dilation=None,
                    input_dilation=None, groups=1):
    """Input gradient on oneDNN's backward-data primitive (XLA when unsupported).

    dy (N, *O, C_out), kernel (*K, C_in // G, C_out) -> dx of `input_shape`
    (N, *S, C_in): the vjp of the forward in x, a full correlation of dy (dilated by
    the stride) with the flipped kernel.
    """
    spec = make_spec(input_shape, kernel.shape, strides, pads, dilation, input_dilation,
                     groups)
    _check_shape("dy", dy.shape, spec.y_shape(input_shape[0]),
                 f"the output shape for an input of shape {tuple(input_shape)}")
    if not _spec_supported(spec, dy.shape[0], [dy.dtype, kernel.dtype]):
        return _xla_input_grad(spec, dy, kernel)
    return _input_grad(spec, dy, kernel)


def conv_kernel_grad(x, dy, kernel_shape, strides=None, pads=None, dilation=None,
                     input_dilation=None, groups=1):
    """Kernel gradient on oneDNN's backward-weights primitive (XLA when unsupported).

    x (N, *S, C_in), dy (N, *O, C_out) -> dw of `kernel_shape` (*K, C_in // G, C_out);
    dw[k, ci, co] = sum_{n, o} xp[n, o*S + k*D, g*Cig + ci] dy[n, o, co].
    """
    spec = make_spec(x.shape, kernel_shape, strides, pads, dilation, input_dilation, groups)
    _check_shape("dy", dy.shape, spec.y_shape(x.shape[0]),
                 f"the output shape for x of shape {tuple(x.shape)}")
    if not _spec_supported(spec, x.shape[0], [x.dtype, dy.dtype]):
        return _xla_kernel_grad(spec, x, dy)
    return _kernel_grad(spec, x, dy)
