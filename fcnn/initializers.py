"""Weight initializers: `init(rng, shape, dtype=float32) -> array`.

Fans follow the channels-last layouts of fcnn: a Dense kernel is (in, out); an N-d
convolution kernel is HWIO, (*window, in, out), so

    fan_in  = prod(window) * in      fan_out = prod(window) * out.

Variance-scaling initializers draw with variance `scale / fan`:

    LeCun   (fan_in,  scale 1): std = 1/sqrt(fan_in), the notes' calibration that keeps
            the variance of a unit's output equal to that of its inputs.
    Xavier  (average of fans, scale 1): Glorot & Bengio (2010).
    He      (fan_in,  scale 2): He et al. (2015), for ReLU networks.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from fcnn._checks import check_number, positive_int

Initializer = Callable[..., jax.Array]


def compute_fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a kernel of `shape`: (in, out) or (*window, in, out)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(
            f"shape={shape}: fans need a kernel of rank >= 2, (in, out) or (*window, in, out)"
        )
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return receptive * shape[-2], receptive * shape[-1]


def zeros(rng, shape, dtype=jnp.float32):
    """All zeros (biases; for weights it keeps every unit identical)."""
    del rng
    return jnp.zeros(shape, dtype)


def ones(rng, shape, dtype=jnp.float32):
    """All ones (batch-norm scale)."""
    del rng
    return jnp.ones(shape, dtype)


def constant(value: float) -> Initializer:
    """Every entry equal to `value`."""
    value = check_number(value, "value")

    def init(rng, shape, dtype=jnp.float32):
        del rng
        return jnp.full(shape, value, dtype)

    return init


def normal(std: float = 0.01) -> Initializer:
    """N(0, std^2); the notes' small random numbers are `normal(0.01)` (0.01 * randn)."""
    std = check_number(std, "std", low=0.0)

    def init(rng, shape, dtype=jnp.float32):
        return std * jax.random.normal(rng, shape, dtype)

    return init


def uniform(scale: float = 0.05) -> Initializer:
    """U(-scale, scale)."""
    scale = check_number(scale, "scale", low=0.0)

    def init(rng, shape, dtype=jnp.float32):
        return jax.random.uniform(rng, shape, dtype, -scale, scale)

    return init


_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")


def variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """Draws with variance scale / n, n = fan_in, fan_out or their average.

    "uniform" uses U(-a, a) with a = sqrt(3 * scale / n), which has that variance.
    "truncated_normal" truncates at two standard deviations and rescales so the
    variance is still scale / n.
    """
    scale = check_number(scale, "scale", low=0.0)
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r}: expected one of {_MODES}")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution={distribution!r}: expected one of {_DISTRIBUTIONS}")

    def init(rng, shape, dtype=jnp.float32):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(n, 1)
        if distribution == "normal":
            return math.sqrt(variance) * jax.random.normal(rng, shape, dtype)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return jax.random.uniform(rng, shape, dtype, -limit, limit)
        # std of a standard normal truncated to [-2, 2]
        std = math.sqrt(variance) / 0.87962566103423978
        return std * jax.random.truncated_normal(rng, -2.0, 2.0, shape, dtype)

    return init


def lecun_normal(rng, shape, dtype=jnp.float32):
    """N(0, 1/fan_in): std 1/sqrt(n), the notes' variance calibration."""
    return variance_scaling(1.0, "fan_in", "normal")(rng, shape, dtype)


def lecun_uniform(rng, shape, dtype=jnp.float32):
    """U(-a, a), a = sqrt(3/fan_in)."""
    return variance_scaling(1.0, "fan_in", "uniform")(rng, shape, dtype)


def xavier_normal(rng, shape, dtype=jnp.float32):
    """N(0, 2/(fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    return variance_scaling(1.0, "fan_avg", "normal")(rng, shape, dtype)


def xavier_uniform(rng, shape, dtype=jnp.float32):
    """U(-a, a), a = sqrt(6/(fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    return variance_scaling(1.0, "fan_avg", "uniform")(rng, shape, dtype)


def he_normal(rng, shape, dtype=jnp.float32):
    """N(0, 2/fan_in) (He et al., 2015), for ReLU networks."""
    return variance_scaling(2.0, "fan_in", "normal")(rng, shape, dtype)


def he_uniform(rng, shape, dtype=jnp.float32):
    """U(-a, a), a = sqrt(6/fan_in) (He et al., 2015)."""
    return variance_scaling(2.0, "fan_in", "uniform")(rng, shape, dtype)


glorot_normal, glorot_uniform = xavier_normal, xavier_uniform
kaiming_normal, kaiming_uniform = he_normal, he_uniform


def sparse(num_connections: int = 15, std: float = 1.0) -> Initializer:
    """Each output unit gets `num_connections` random inputs with N(0, std^2) weights.

    All other incoming weights are zero (Martens, 2010). For a conv kernel the inputs
    of a unit are its prod(window) * in incoming weights.
    """
    num_connections = positive_int(num_connections, "num_connections")
    std = check_number(std, "std", low=0.0)

    def init(rng, shape, dtype=jnp.float32):
        fan_in, _ = compute_fans(shape)
        if num_connections > fan_in:
            raise ValueError(
                f"num_connections={num_connections}: larger than the {fan_in} inputs "
                f"of each unit for a kernel of shape {tuple(shape)}"
            )
        units = shape[-1]
        rng_pick, rng_value = jax.random.split(rng)
        scores = jax.random.uniform(rng_pick, (units, fan_in))
        ranks = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
        mask = (ranks < num_connections).T  # (fan_in, units)
        values = std * jax.random.normal(rng_value, (fan_in, units), dtype)
        return jnp.where(mask, values, 0).astype(dtype).reshape(shape)

    return init


def orthogonal(scale: float = 1.0) -> Initializer:
    """A (scaled) orthogonal matrix over (fan_in, out) (Saxe et al., 2014).

    Rows or columns, whichever are fewer, are orthonormal.
    """
    scale = check_number(scale, "scale", low=0.0)

    def init(rng, shape, dtype=jnp.float32):
        fan_in, _ = compute_fans(shape)
        units = shape[-1]
        rows, cols = max(fan_in, units), min(fan_in, units)
        # QR in at least the requested precision: a float32 draw cast to float64 is
        # only orthogonal to ~1e-7
        work = jnp.promote_types(dtype, jnp.float32) if jnp.issubdtype(dtype, jnp.floating) else jnp.float32
        a = jax.random.normal(rng, (rows, cols), work)
        q, r = jnp.linalg.qr(a)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]  # unique, uniformly distributed Q
        if fan_in < units:
            q = q.T
        return (scale * q).astype(dtype).reshape(shape)

    return init


_BY_NAME = {
    "zeros": zeros,
    "ones": ones,
    "normal": normal(),
    "uniform": uniform(),
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": kaiming_normal,
    "kaiming_uniform": kaiming_uniform,
    "sparse": sparse(),
    "orthogonal": orthogonal(),
}


def get(initializer) -> Initializer:
    """Returns an initializer given by name or passes a callable through."""
    if callable(initializer):
        return initializer
    if isinstance(initializer, str) and initializer in _BY_NAME:
        return _BY_NAME[initializer]
    raise ValueError(
        f"initializer={initializer!r}: unknown initializer; valid names are "
        f"{sorted(_BY_NAME)} (or pass a function (rng, shape, dtype) -> array)"
    )
