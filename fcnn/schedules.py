"""Learning-rate decays as optax schedules: `schedule(step) -> learning rate`.

The seven decays of the notes (they follow TensorFlow's `tf.train.*_decay` family).
Each is a pure function of the integer step, so it can be passed as `learning_rate`
to any optax optimizer and is evaluated inside the jitted train step. Where optax
already computes exactly the same formula (exponential, polynomial without cycle,
cosine) its schedule is reused.

    piecewise_constant      values[i] on the i-th interval between boundaries
    exponential_decay       lr * rate^(step / decay_steps)
    natural_exp_decay       lr * exp(-rate * step / decay_steps)
    polynomial_decay        (lr - end_lr) * (1 - step / decay_steps)^power + end_lr
    cosine_decay            lr * ((1 - alpha) * 0.5 * (1 + cos(pi * step / decay_steps)) + alpha)
    linear_cosine_decay     lr * ((alpha + linear) * cosine + beta)
    noisy_linear_cosine_decay  the same with Gaussian noise added to `linear`

Bad arguments (learning rate <= 0, decay_steps <= 0, end_lr > lr, ...) raise a
`ValueError` naming the argument when the schedule is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from fcnn._checks import check_bool, check_int, check_number

Schedule = Callable[[jax.typing.ArrayLike], jax.Array]

__all__ = [
    "SCHEDULES",
    "constant",
    "cosine_decay",
    "exponential_decay",
    "linear_cosine_decay",
    "make_schedule",
    "natural_exp_decay",
    "noisy_linear_cosine_decay",
    "piecewise_constant",
    "polynomial_decay",
]


def check_learning_rate(value, name: str = "learning_rate") -> float:
    """Returns `value` as a float after checking it is a finite number > 0."""
    return check_number(value, name, low=0.0, low_open=True, what="a learning rate",
                        hint="(a finite number)")


def _decay_steps(value) -> int:
    return check_int(value, "decay_steps", low=1, hint="(a number of steps)")


def _float_step(step):
    return jnp.asarray(step).astype(jnp.result_type(float))


def constant(learning_rate: float) -> Schedule:
    """The constant schedule lr(step) = learning_rate."""
    learning_rate = check_learning_rate(learning_rate)
    return optax.constant_schedule(learning_rate)


def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """Piecewise constant: values[0] up to boundaries[0], then values[1], ...

        lr(step) = values[0]   if step <= boundaries[0]
                   values[i]   if boundaries[i-1] < step <= boundaries[i]
                   values[-1]  if step > boundaries[-1]

    e.g. boundaries=[100000, 110000], values=[1.0, 0.5, 0.1] gives 1.0 for the first
    100000 steps, 0.5 up to step 110000 and 0.1 after. optax's
    `piecewise_constant_schedule` takes multiplicative scales and switches at
    `step >= boundary`, so it is not reused.
    """
    boundaries = list(boundaries)
    values = list(values)
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"values={values!r}: expected len(boundaries) + 1 = {len(boundaries) + 1} "
            f"values (one per interval), got {len(values)}"
        )
    for i, b in enumerate(boundaries):
        check_int(b, f"boundaries[{i}]", low=0, hint=f"(a step; boundaries={boundaries!r})")
    if any(b1 <= b0 for b0, b1 in zip(boundaries, boundaries[1:])):
        raise ValueError(f"boundaries={boundaries!r}: expected strictly increasing steps")
    for i, v in enumerate(values):
        check_learning_rate(v, f"values[{i}]")
    b_arr = jnp.asarray(boundaries, dtype=jnp.int32) if boundaries else None
    v_arr = tuple(float(v) for v in values)

    def schedule(step):
        if b_arr is None:
            return jnp.asarray(v_arr[0], jnp.result_type(float))
        step = jnp.asarray(step)
        bounds = b_arr.reshape((1,) * step.ndim + (-1,))
        index = jnp.sum(step[..., None] > bounds, axis=-1)
        return jnp.asarray(v_arr, jnp.result_type(float))[index]

    return schedule


def exponential_decay(
    learning_rate: float, decay_steps: int, decay_rate: float, *, staircase: bool = False
) -> Schedule:
    """Exponential decay: lr(step) = lr * decay_rate^(step / decay_steps).

    With `staircase=True` the exponent is floor(step / decay_steps): the rate drops
    by a factor `decay_rate` every `decay_steps` steps. This is optax's
    `exponential_decay`.
    """
    learning_rate = check_learning_rate(learning_rate)
    decay_steps = _decay_steps(decay_steps)
    decay_rate = check_number(decay_rate, "decay_rate", low=0.0, low_open=True)
    staircase = check_bool(staircase, "staircase")
    return optax.exponential_decay(learning_rate, decay_steps, decay_rate, staircase=staircase)


def natural_exp_decay(
    learning_rate: float, decay_steps: int, decay_rate: float, *, staircase: bool = False
) -> Schedule:
    """Natural exponential decay: lr(step) = lr * exp(-decay_rate * step / decay_steps).

    With `staircase=True` the exponent uses floor(step / decay_steps).
    """
    # The notes print this decay with the step in the denominator
    # (exp(-decay_rate * decay_steps / step)), which is infinite at step 0 and grows
    # with training; the decay meant (and TensorFlow's natural_exp_decay) has
    # step / decay_steps, as here.
    learning_rate = check_learning_rate(learning_rate)
    decay_steps = _decay_steps(decay_steps)
    decay_rate = check_number(decay_rate, "decay_rate", low=0.0)
    staircase = check_bool(staircase, "staircase")

    def schedule(step):
        p = _float_step(step) / decay_steps
        if staircase:
            p = jnp.floor(p)
        return learning_rate * jnp.exp(-decay_rate * p)

    return schedule


def polynomial_decay(
    learning_rate: float,
    decay_steps: int,
    end_learning_rate: float = 1e-4,
    *,
    power: float = 1.0,
    cycle: bool = False,
) -> Schedule:
    """Polynomial decay from `learning_rate` to `end_learning_rate` in `decay_steps`.

        lr(step) = (lr - end_lr) * (1 - step / decay_steps)^power + end_lr

    Without `cycle` the step is clipped to decay_steps (the rate stays at end_lr
    after). With `cycle=True` the horizon restarts instead: decay_steps is
    multiplied by ceil(step / decay_steps) (by 1 at step 0), so the rate jumps back
    up at each multiple of decay_steps and decays again, more slowly each time.
    Without cycle this is optax's `polynomial_schedule`.
    """
    learning_rate = check_learning_rate(learning_rate)
    decay_steps = _decay_steps(decay_steps)
    end_learning_rate = check_number(end_learning_rate, "end_learning_rate", low=0.0)
    power = check_number(power, "power", low=0.0, low_open=True)
    cycle = check_bool(cycle, "cycle")
    if end_learning_rate > learning_rate:
        raise ValueError(
            f"end_learning_rate={end_learning_rate!r} > learning_rate={learning_rate!r}: a "
            "decay must end at or below its starting rate (for a warm-up use "
            "optax.linear_schedule)"
        )
    if not cycle:
        return optax.polynomial_schedule(learning_rate, end_learning_rate, power, decay_steps)

    def schedule(step):
        step = _float_step(step)
        multiplier = jnp.where(step == 0, 1.0, jnp.ceil(step / decay_steps))
        horizon = decay_steps * multiplier
        frac = 1.0 - step / horizon
        return (learning_rate - end_learning_rate) * frac**power + end_learning_rate

    return schedule


def cosine_decay(learning_rate: float, decay_steps: int, *, alpha: float = 0.0) -> Schedule:
    """Cosine decay to a floor `alpha * lr` (Loshchilov & Hutter, SGDR, 2017).

        t = min(step, decay_steps)
        lr(step) = lr * ((1 - alpha) * 0.5 * (1 + cos(pi * t / decay_steps)) + alpha)

    This is optax's `cosine_decay_schedule` (exponent 1).
    """
    learning_rate = check_learning_rate(learning_rate)
    decay_steps = _decay_steps(decay_steps)
    alpha = check_number(alpha, "alpha", low=0.0, high=1.0)
    return optax.cosine_decay_schedule(learning_rate, decay_steps, alpha=alpha)


def _clipped_step(step, decay_steps):
    return jnp.minimum(_float_step(step), decay_steps)


def _linear_and_cosine(step, decay_steps, num_periods):
    t = _clipped_step(step, decay_steps)
    linear = (decay_steps - t) / decay_steps
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * 2.0 * num_periods * t / decay_steps))
    return linear, cosine


def linear_cosine_decay(
    learning_rate: float,
    decay_steps: int,
    *,
    num_periods: float = 0.5,
    alpha: float = 0.0,
    beta: float = 0.001,
) -> Schedule:
    """Linear cosine decay (Bello et al., Neural Optimizer Search, 2017).

        t       = min(step, decay_steps)
        linear  = (decay_steps - t) / decay_steps
        cosine  = 0.5 * (1 + cos(pi * 2 * num_periods * t / decay_steps))
        lr(step) = lr * ((alpha + linear) * cosine + beta)
    """
    learning_rate = check_learning_rate(learning_rate)
    decay_steps = _decay_steps(decay_steps)
    num_periods = check_number(num_periods, "num_periods", low=0.0)
    alpha = check_number(alpha, "alpha", low=0.0)
    beta = check_number(beta, "beta", low=0.0)

    def schedule(step):
        linear, cosine = _linear_and_cosine(step, decay_steps, num_periods)
        return learning_rate * ((alpha + linear) * cosine + beta)

    return schedule


def noisy_linear_cosine_decay(
    learning_rate: float,
    decay_steps: int,
    *,
    initial_variance: float = 1.0,
    variance_decay: float = 0.55,
    num_periods: float = 0.5,
    alpha: float = 0.0,
    beta: float = 0.001,
    seed: int = 0,
) -> Schedule:
    """Linear cosine decay with Gaussian noise on the linear term.

        t       = min(step, decay_steps)
        eps_t ~ N(0, initial_variance / (1 + t)^variance_decay)   (a variance)
        lr(step) = lr * ((alpha + linear + eps_t) * cosine + beta)

    with `linear` and `cosine` as in `linear_cosine_decay`. As in TensorFlow, the
    variance uses the clipped step t, so it stops decaying at decay_steps. The
    noise is a pure function of (seed, step): eps_t = sqrt(variance_t) * z_t with
    z_t = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), step)),
    so a resumed run sees the same rates.
    """
    learning_rate = check_learning_rate(learning_rate)
    decay_steps = _decay_steps(decay_steps)
    initial_variance = check_number(initial_variance, "initial_variance", low=0.0)
    variance_decay = check_number(variance_decay, "variance_decay", low=0.0)
    num_periods = check_number(num_periods, "num_periods", low=0.0)
    alpha = check_number(alpha, "alpha", low=0.0)
    beta = check_number(beta, "beta", low=0.0)
    key = jax.random.PRNGKey(check_int(seed, "seed"))

    def schedule(step):
        linear, cosine = _linear_and_cosine(step, decay_steps, num_periods)
        z = noise(key, step)
        variance = initial_variance / (1.0 + _clipped_step(step, decay_steps)) ** variance_decay
        eps = jnp.sqrt(variance) * z
        return learning_rate * ((alpha + linear + eps) * cosine + beta)

    return schedule


@jax.jit
def noise(key, step) -> jax.Array:
    """The standard normal draws z_t used by `noisy_linear_cosine_decay` at `step`.

    `step` is an int or an int array; the result has its shape.
    """
    step = jnp.asarray(step)
    flat = step.reshape(-1).astype(jnp.uint32)
    draw = jax.vmap(lambda s: jax.random.normal(jax.random.fold_in(key, s), (), jnp.result_type(float)))
    return draw(flat).reshape(step.shape)


SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "constant": constant,
    "piecewise_constant": piecewise_constant,
    "exponential": exponential_decay,
    "natural_exp": natural_exp_decay,
    "polynomial": polynomial_decay,
    "cosine": cosine_decay,
    "linear_cosine": linear_cosine_decay,
    "noisy_linear_cosine": noisy_linear_cosine_decay,
}


def make_schedule(name: str, **kwargs) -> Schedule:
    """Builds a schedule by name (a key of `SCHEDULES`) with its keyword arguments."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule {name!r}: expected one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)
