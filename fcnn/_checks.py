"""Argument normalisation and validation shared by every op and layer.

Every public constructor normalises its int-or-tuple arguments here, once, so that
errors name the argument, the value received and what was expected, and are raised
before any array work is done.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import jax
import numpy as np
from jax import lax

BACKWARDS = ("custom", "autodiff")

EXPECTED_BOOL = "{name}={value!r}: expected True or False"

PADDING_HELP = (
    'expected "SAME", "VALID", a non-negative int, or one (low, high) pair of '
    "non-negative ints per spatial dimension"
)


def is_int(value) -> bool:
    """True for Python and NumPy integers, False for bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_backward(backward: str) -> str:
    """Validates the `backward` switch that selects a hand-written rule or autodiff."""
    if backward not in BACKWARDS:
        raise ValueError(f"backward={backward!r}: expected one of {BACKWARDS}")
    return backward


def _fmt(bound) -> str:
    return str(bound) if is_int(bound) else f"{bound:g}"


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return (f" in {'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}"
                f"{')' if high_open else ']'}")
    if low is not None:
        return f" {'>' if low_open else '>='} {_fmt(low)}"
    if high is not None:
        return f" {'<' if high_open else '<='} {_fmt(high)}"
    return ""


def _expected(name: str, value, what: str, hint: str) -> str:
    return f"{name}={value!r}: expected {what}" + (f" {hint}" if hint else "")


def check_number(value, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False,
                 what: str = "a finite number", hint: str = "") -> float:
    """Returns `value` as a float after checking it is a finite real number within the
    bounds (`low`/`high` inclusive unless `low_open`/`high_open`).

    Python and NumPy numbers are accepted; bools are not. The one number check of the
    library: every argument that must be a number is checked here. The error reads
    "{name}={value!r}: expected {what}{bounds} {hint}": `what` names the kind of number
    (e.g. "a learning rate") and `hint` adds what the number means or a usual value.
    """
    ok = (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and math.isfinite(value))
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(
            _expected(name, value, what + _bounds(low, high, low_open, high_open), hint))
    return float(value)


def number_or_array(value, name: str, **bounds):
    """`check_number` for a Python or NumPy number; an array is returned unchecked.

    For arguments that may be traced (inside jit or vmap) or injected as arrays (a
    population's hyper-parameters): their value is not known when the check runs.
    """
    if isinstance(value, (jax.Array, np.ndarray)):
        return value
    return check_number(value, name, **bounds)


def check_int(value, name: str, *, low: int | None = None, high: int | None = None,
              what: str | None = None, hint: str = "") -> int:
    """Returns `value` as an int after checking it is an integer (not a bool) in
    [low, high]; the one integer check of the library. The error reads
    "{name}={value!r}: expected {what}{bounds} {hint}" ("a positive int" for low=1)."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        if what is None and (low, high) == (1, None):
            expected = "a positive int"
        else:
            expected = (what or "an int") + _bounds(low, high, False, False)
        raise ValueError(_expected(name, value, expected, hint))
    return int(value)


def check_axis(axis, ndim: int, name: str = "axis", *, shape=None, hint: str = "") -> int:
    """Returns `axis` (negative counts from the end) as an index in 0..ndim-1.

    A TypeError when it is not an int, a ValueError naming the rank (and `shape`) when
    it is out of range. Every single-axis argument is checked here (a tuple of axes:
    `fcnn.ops.normalization.canonical_axes`).
    """
    if not is_int(axis):
        raise TypeError(f"{name}={axis!r}: expected an int")
    where = f"for an input of rank {ndim}" + ("" if shape is None else f" (shape {tuple(shape)})")
    return check_int(axis, name, low=-ndim, high=ndim - 1,
                     hint=f"{where} {hint}" if hint else where) % ndim


def positive_int(value, name: str) -> int:
    """Returns `value` as an int after checking it is a positive integer."""
    return check_int(value, name, low=1)


def finite_number(value, name: str, *, minimum: float | None = None) -> float:
    """Returns `value` as a float after checking it is a finite real number (>= minimum)."""
    return check_number(value, name, low=minimum)


def check_bool(value, name: str) -> bool:
    """Returns `value` as a bool after checking it is one (a Python or NumPy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(EXPECTED_BOOL.format(name=name, value=value))
    return bool(value)


def spatial_tuple(value, ndim: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """Normalises an int-or-tuple argument to one int per spatial dimension.

    An int is repeated `ndim` times; a sequence must have exactly `ndim` entries.
    Every entry must be an int >= `minimum`.
    """
    if is_int(value):
        values = (int(value),) * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != ndim:
            raise ValueError(
                f"{name}={value!r}: expected an int or a tuple of {ndim} ints "
                f"(one per spatial dimension), got {len(values)} entries"
            )
        if not all(is_int(v) for v in values):
            raise TypeError(f"{name}={value!r}: expected ints, got {value!r}")
        values = tuple(int(v) for v in values)
    else:
        raise TypeError(
            f"{name}={value!r}: expected an int or a tuple of {ndim} ints"
        )
    if any(v < minimum for v in values):
        kind = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name}={value!r}: every entry must be {kind}")
    return values


def spatial_tuple_or_none(value, ndim: int | None, name: str):
    """Like `spatial_tuple`, but keeps None and allows `ndim` to be unknown yet.

    Layers are built before the input rank is known; when `ndim` is None the value is
    only type-checked here and normalised again at init.
    """
    if value is None:
        return None
    if ndim is None:
        if is_int(value):
            return positive_int(value, name)
        if isinstance(value, Sequence) and not isinstance(value, str):
            return spatial_tuple(value, len(value), name)
        raise TypeError(f"{name}={value!r}: expected an int or a tuple of ints")
    return spatial_tuple(value, ndim, name)


def check_padding(padding, name: str = "padding"):
    """Checks the form of a padding argument without knowing the rank yet.

    Returns the padding unchanged (strings upper-cased, pairs as tuples).
    """
    if isinstance(padding, str):
        upper = padding.upper()
        if upper not in ("SAME", "VALID"):
            raise ValueError(f"{name}={padding!r}: {PADDING_HELP}")
        return upper
    if is_int(padding):
        if padding < 0:
            raise ValueError(f"{name}={padding!r}: {PADDING_HELP}")
        return int(padding)
    if isinstance(padding, Sequence):
        pairs = []
        for pair in padding:
            if (
                not isinstance(pair, Sequence)
                or isinstance(pair, str)
                or len(pair) != 2
                or not all(is_int(p) and p >= 0 for p in pair)
            ):
                raise ValueError(
                    f"{name}={padding!r}: {PADDING_HELP}; for symmetric padding "
                    "per dimension write ((1, 1), (2, 2))"
                )
            pairs.append((int(pair[0]), int(pair[1])))
        return tuple(pairs)
    raise TypeError(f"{name}={padding!r}: {PADDING_HELP}")


def padding_pairs(
    padding,
    in_spatial: Sequence[int],
    window: Sequence[int],
    strides: Sequence[int],
    name: str = "padding",
) -> tuple[tuple[int, int], ...]:
    """Resolves a padding argument to explicit (low, high) pairs, one per dimension.

    `window` is the effective (dilated) window size. "SAME" pads so that the output
    size is ceil(in / stride), with the extra cell (if odd) on the high side, as
    `lax.padtype_to_pads` does.
    """
    padding = check_padding(padding, name)
    ndim = len(in_spatial)
    if padding == "VALID":
        return ((0, 0),) * ndim
    if padding == "SAME":
        return tuple(
            tuple(p) for p in lax.padtype_to_pads(in_spatial, window, strides, "SAME")
        )
    if isinstance(padding, int):
        return ((padding, padding),) * ndim
    if len(padding) != ndim:
        raise ValueError(
            f"{name}={padding!r}: expected {ndim} (low, high) pairs, one per "
            f"spatial dimension, got {len(padding)}"
        )
    return padding


def output_size(size: int, window: int, stride: int, pad: tuple[int, int]) -> int:
    """The notes' output width W2 = (W1 - F + P_low + P_high) // S + 1.

    With symmetric padding P on each side this is (W1 - F + 2P) / S + 1.
    `window` is the effective (dilated) window size.
    """
    return (size + pad[0] + pad[1] - window) // stride + 1


def dilated_size(size: int, dilation: int) -> int:
    """Size of a window of `size` taps with `dilation - 1` holes between taps."""
    return (size - 1) * dilation + 1


def check_rank(shape: Sequence[int], allowed: Sequence[int], name: str, what: str):
    """Raises if `len(shape)` is not one of `allowed` (ranks include the batch)."""
    if len(shape) not in allowed:
        raise ValueError(
            f"{name} has shape {tuple(shape)} (rank {len(shape)}): {what} expects "
            f"rank {' or '.join(str(r) for r in allowed)} "
            "(batch, *spatial, channels), channels last"
        )


def check_output_positive(
    out_spatial, in_spatial, window, strides, pads, name: str
) -> None:
    """Raises when a window does not fit the padded input (output size <= 0)."""
    for d, o in enumerate(out_spatial):
        if o <= 0:
            raise ValueError(
                f"{name}: window of size {window[d]} does not fit spatial dimension "
                f"{d} of size {in_spatial[d]} with padding {pads[d]} and stride "
                f"{strides[d]} (output size would be {o}); use a smaller window, "
                "more padding, or a larger input"
            )
