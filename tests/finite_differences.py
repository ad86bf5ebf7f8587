"""Central finite differences of a scalar loss along random directions, against
`jax.grad` (the hand rule, when the op under test has one), in float64."""

import jax
import jax.numpy as jnp
import numpy as np


def check_directional_derivatives(variant, loss, x, *, directions=3, eps=1e-5, seed=2,
                                  rtol=1e-8, atol=1e-9):
    """Asserts (loss(x + eps d) - loss(x - eps d)) / (2 eps) == <grad loss(x), d> for
    `directions` normal directions d; `variant` is chex's `self.variant` (jit or not)."""
    ds = np.random.default_rng(seed).normal(size=(directions, *np.shape(x)))

    @variant
    def numeric_and_analytic(x, ds):
        grad = jax.grad(loss)(x)
        analytic = jnp.stack([jnp.vdot(grad, d) for d in ds])
        numeric = jnp.stack([(loss(x + eps * d) - loss(x - eps * d)) / (2 * eps) for d in ds])
        return numeric, analytic

    numeric, analytic = numeric_and_analytic(x, ds)
    np.testing.assert_allclose(numeric, analytic, rtol=rtol, atol=atol)
