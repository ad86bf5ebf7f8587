"""Learning-rate decays against their closed forms, written again here in NumPy."""

import math

import chex
import jax
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from fcnn import schedules

DECAY_STEPS = 40
# step 0, every step of the decay, the last decay step, and well beyond it
STEPS = np.concatenate([np.arange(0, DECAY_STEPS + 2), [DECAY_STEPS * 2 - 1, DECAY_STEPS * 2,
                                                          DECAY_STEPS * 2 + 1, 1000]])


def np_piecewise(steps, boundaries, values):
    out = []
    for s in steps:
        i = 0
        while i < len(boundaries) and s > boundaries[i]:
            i += 1
        out.append(values[i])
    return np.array(out)


def np_exponential(steps, lr, decay_steps, rate, staircase):
    p = steps / decay_steps
    if staircase:
        p = np.floor(p)
    return lr * rate**p


def np_natural_exp(steps, lr, decay_steps, rate, staircase):
    p = steps / decay_steps
    if staircase:
        p = np.floor(p)
    return lr * np.exp(-rate * p)


def np_polynomial(steps, lr, decay_steps, end_lr, power, cycle):
    out = []
    for s in steps:
        horizon = decay_steps
        if cycle:
            horizon = decay_steps * (1 if s == 0 else math.ceil(s / decay_steps))
        else:
            s = min(s, decay_steps)
        out.append((lr - end_lr) * (1 - s / horizon) ** power + end_lr)
    return np.array(out)


def np_cosine(steps, lr, decay_steps, alpha):
    t = np.minimum(steps, decay_steps)
    return lr * ((1 - alpha) * 0.5 * (1 + np.cos(np.pi * t / decay_steps)) + alpha)


def np_linear_cosine(steps, lr, decay_steps, num_periods, alpha, beta, eps=0.0):
    t = np.minimum(steps, decay_steps)
    linear = (decay_steps - t) / decay_steps
    cosine = 0.5 * (1 + np.cos(np.pi * 2 * num_periods * t / decay_steps))
    return lr * ((alpha + linear + eps) * cosine + beta)


CASES = [
    ("piecewise", lambda: schedules.piecewise_constant([10, 25], [0.1, 0.05, 0.01]),
     lambda s: np_piecewise(s, [10, 25], [0.1, 0.05, 0.01])),
    ("exponential", lambda: schedules.exponential_decay(0.1, DECAY_STEPS, 0.5),
     lambda s: np_exponential(s, 0.1, DECAY_STEPS, 0.5, False)),
    ("exponential_staircase",
     lambda: schedules.exponential_decay(0.1, 7, 0.5, staircase=True),
     lambda s: np_exponential(s, 0.1, 7, 0.5, True)),
    ("natural_exp", lambda: schedules.natural_exp_decay(0.1, DECAY_STEPS, 0.7),
     lambda s: np_natural_exp(s, 0.1, DECAY_STEPS, 0.7, False)),
    ("natural_exp_staircase", lambda: schedules.natural_exp_decay(0.1, 7, 0.7, staircase=True),
     lambda s: np_natural_exp(s, 0.1, 7, 0.7, True)),
    ("polynomial", lambda: schedules.polynomial_decay(0.1, DECAY_STEPS, 0.001, power=2.0),
     lambda s: np_polynomial(s, 0.1, DECAY_STEPS, 0.001, 2.0, False)),
    ("polynomial_linear", lambda: schedules.polynomial_decay(0.1, DECAY_STEPS, 0.01),
     lambda s: np_polynomial(s, 0.1, DECAY_STEPS, 0.01, 1.0, False)),
    ("polynomial_cycle",
     lambda: schedules.polynomial_decay(0.1, DECAY_STEPS, 0.001, power=0.5, cycle=True),
     lambda s: np_polynomial(s, 0.1, DECAY_STEPS, 0.001, 0.5, True)),
    ("cosine", lambda: schedules.cosine_decay(0.1, DECAY_STEPS),
     lambda s: np_cosine(s, 0.1, DECAY_STEPS, 0.0)),
    ("cosine_floor", lambda: schedules.cosine_decay(0.1, DECAY_STEPS, alpha=0.2),
     lambda s: np_cosine(s, 0.1, DECAY_STEPS, 0.2)),
    ("linear_cosine", lambda: schedules.linear_cosine_decay(0.1, DECAY_STEPS),
     lambda s: np_linear_cosine(s, 0.1, DECAY_STEPS, 0.5, 0.0, 0.001)),
    ("linear_cosine_periods",
     lambda: schedules.linear_cosine_decay(0.1, DECAY_STEPS, num_periods=2.5, alpha=0.1, beta=0.01),
     lambda s: np_linear_cosine(s, 0.1, DECAY_STEPS, 2.5, 0.1, 0.01)),
    ("noisy_without_noise",
     lambda: schedules.noisy_linear_cosine_decay(0.1, DECAY_STEPS, initial_variance=0.0),
     lambda s: np_linear_cosine(s, 0.1, DECAY_STEPS, 0.5, 0.0, 0.001)),
]


class ClosedFormTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CASES)
    def test_matches_closed_form_at_every_step(self, make, expected):
        schedule = self.variant(make())
        got = np.asarray(schedule(STEPS))
        chex.assert_shape(got, STEPS.shape)
        np.testing.assert_allclose(got, expected(STEPS.astype(np.float64)), rtol=1e-6, atol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    def test_noisy_linear_cosine_uses_the_stated_noise(self):
        lr, initial_variance, variance_decay = 0.1, 0.3, 0.55
        schedule = self.variant(schedules.noisy_linear_cosine_decay(
            lr, DECAY_STEPS, initial_variance=initial_variance, variance_decay=variance_decay,
            seed=3))
        key = jax.random.PRNGKey(3)
        # the standard normal draws, taken from jax.random directly
        z = np.array([float(jax.random.normal(jax.random.fold_in(key, int(s)), (), np.float64))
                      for s in STEPS])
        eps = np.sqrt(initial_variance / (1.0 + STEPS) ** variance_decay) * z
        expected = np_linear_cosine(STEPS.astype(np.float64), lr, DECAY_STEPS, 0.5, 0.0, 0.001, eps)
        got = np.asarray(schedule(STEPS))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-12)
        # a scalar step gives the same rate as the same step inside a vector
        assert float(schedule(int(STEPS[5]))) == pytest.approx(got[5], rel=1e-12)


def test_noise_variance_decays_as_stated():
    """Over many seeds, the noise at step t has variance initial_variance / (1 + t)^decay."""
    lr, initial_variance, variance_decay, decay_steps = 1.0, 2.0, 0.55, 10_000
    steps = np.array([0, 9, 99])
    draws = np.stack([
        np.asarray(schedules.noisy_linear_cosine_decay(
            lr, decay_steps, initial_variance=initial_variance,
            variance_decay=variance_decay, seed=seed)(steps)) for seed in range(400)
    ])
    base = np.asarray(schedules.linear_cosine_decay(lr, decay_steps)(steps))
    cosine = 0.5 * (1 + np.cos(np.pi * steps / decay_steps))
    eps = (draws - base) / cosine
    want = initial_variance / (1 + steps) ** variance_decay
    np.testing.assert_allclose(np.var(eps, axis=0) / want, 1.0, atol=0.2)


def test_schedules_work_inside_an_optax_optimizer():
    schedule = schedules.cosine_decay(0.5, 4)
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
    params = {"w": np.ones(3)}
    state = opt.init(params)
    seen = []
    for _ in range(6):
        updates, state = opt.update({"w": np.ones(3)}, state, params)
        seen.append(float(state.hyperparams["learning_rate"]))
    np.testing.assert_allclose(seen, np_cosine(np.arange(6.0), 0.5, 4, 0.0), rtol=1e-6)


def test_cycle_restarts_the_polynomial_decay():
    schedule = schedules.polynomial_decay(1.0, 10, 0.0, cycle=True)
    assert float(schedule(10)) == pytest.approx(0.0, abs=1e-12)
    # just after a multiple of decay_steps the horizon doubles: 1 - 11 / 20
    assert float(schedule(11)) == pytest.approx(1 - 11 / 20)


@pytest.mark.parametrize("build, match", [
    (lambda: schedules.exponential_decay(0.0, 10, 0.5), r"learning_rate=0\.0.*> 0"),
    (lambda: schedules.exponential_decay(-1.0, 10, 0.5), r"learning_rate=-1\.0"),
    (lambda: schedules.cosine_decay(0.1, 0), r"decay_steps=0.*positive int"),
    (lambda: schedules.natural_exp_decay(0.1, -5, 0.5), r"decay_steps=-5"),
    (lambda: schedules.linear_cosine_decay(0.1, 2.5), r"decay_steps=2\.5"),
    (lambda: schedules.polynomial_decay(0.1, 10, 0.5), r"end_learning_rate=0\.5 > learning_rate"),
    (lambda: schedules.cosine_decay(0.1, 10, alpha=1.5), r"alpha=1\.5.*\[0, 1\]"),
    (lambda: schedules.piecewise_constant([10, 5], [1.0, 0.5, 0.1]), r"strictly increasing"),
    (lambda: schedules.piecewise_constant([10], [1.0]), r"len\(boundaries\) \+ 1 = 2"),
    (lambda: schedules.piecewise_constant([10], [1.0, 0.0]),
     r"values\[1\]=0\.0: expected a learning rate > 0"),
    (lambda: schedules.piecewise_constant([-1], [1.0, 0.5]),
     r"boundaries\[0\]=-1: expected an int >= 0 \(a step; boundaries=\[-1\]\)"),
    (lambda: schedules.make_schedule("warp", learning_rate=0.1), r"schedule 'warp'"),
    (lambda: schedules.noisy_linear_cosine_decay(0.1, 10, initial_variance=-1.0),
     r"initial_variance=-1\.0"),
])
def test_bad_arguments_are_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_make_schedule_by_name():
    schedule = schedules.make_schedule("exponential", learning_rate=0.1, decay_steps=10,
                                       decay_rate=0.5)
    assert float(schedule(10)) == pytest.approx(0.05)
