"""The notes' worked backpropagation example, end to end, on fcnn layers.

A 2-2-2 network, Dense + sigmoid twice, inputs (0.05, 0.10), weights w1..w8 =
0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55 (w1: i1->h1, w2: i2->h1, w3: i1->h2,
w4: i2->h2, w5: h1->o1, w6: h2->o1, w7: h1->o2, w8: h2->o2), biases 0.35 (hidden) and
0.60 (output), targets (0.01, 0.99), loss E = sum 1/2 (target - output)^2. Expected
numbers are the notes' printed values (out_o1 is 0.75136507: the notes print
0.75136079, a typo), each compared to half a unit of its last printed digit.
"""

import chex
import jax
import jax.numpy as jnp
from absl.testing import parameterized

import fcnn
from fcnn import losses

X = jnp.array([[0.05, 0.10]])
TARGET = jnp.array([[0.01, 0.99]])


def _params():
    # Dense kernels are (in, out): kernel[i, j] is the weight from input i to unit j.
    return {
        "0": {"kernel": jnp.array([[0.15, 0.25], [0.20, 0.30]]), "bias": jnp.array([0.35, 0.35])},
        "1": {},
        "2": {"kernel": jnp.array([[0.40, 0.50], [0.45, 0.55]]), "bias": jnp.array([0.60, 0.60])},
        "3": {},
    }


def _model(backward):
    return fcnn.serial(
        fcnn.Dense(2, backward=backward), fcnn.Sigmoid(backward=backward),
        fcnn.Dense(2, backward=backward), fcnn.Sigmoid(backward=backward),
    )


def _close(test, value, printed: str):
    """Equal to the printed decimal up to half a unit of its last digit."""
    tolerance = 0.5 * 10.0 ** -len(printed.split(".")[1])
    test.assertAlmostEqual(float(value), float(printed), delta=tolerance)


class WorkedExampleTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("custom_rules", "custom"), ("autodiff", "autodiff"))
    def test_forward_gradient_and_one_sgd_step(self, backward):
        model = _model(backward)
        out_shape, init_params, state = model.init(jax.random.PRNGKey(0), (-1, 2))
        self.assertEqual(out_shape, (-1, 2))
        params = _params()
        chex.assert_trees_all_equal_shapes(params, init_params)
        hidden = fcnn.serial(fcnn.Dense(2, backward=backward), fcnn.Sigmoid(backward=backward))

        def loss(p):
            out, _ = model.apply(p, state, X, train=False)
            return losses.half_squared_error(out, TARGET, backward=backward)

        @self.variant
        def run(p):
            h, _ = hidden.apply({"0": p["0"], "1": {}}, {"0": {}, "1": {}}, X, train=False)
            out, _ = model.apply(p, state, X, train=False)
            e, grads = jax.value_and_grad(loss)(p)
            # SGD with learning rate 0.5 on the weights; biases stay, as in the notes
            stepped = jax.tree_util.tree_map(lambda w, g: w - 0.5 * g, p, grads)
            for layer in ("0", "2"):
                stepped[layer]["bias"] = p[layer]["bias"]
            return h, out, e, grads, stepped, loss(stepped)

        h, out, e, grads, stepped, e_after = run(params)
        _close(self, h[0, 0], "0.593269992")  # out_h1
        _close(self, h[0, 1], "0.596884378")  # out_h2
        _close(self, out[0, 0], "0.75136507")  # out_o1 (printed 0.75136079 in the notes)
        _close(self, out[0, 1], "0.772928465")  # out_o2
        _close(self, e, "0.298371109")  # E_total
        _close(self, grads["2"]["kernel"][0, 0], "0.082167041")  # dE/dw5
        _close(self, stepped["2"]["kernel"][0, 0], "0.35891648")  # w5+
        _close(self, stepped["0"]["kernel"][0, 0], "0.149780716")  # w1+
        chex.assert_trees_all_equal(stepped["0"]["bias"], params["0"]["bias"])
        self.assertLess(float(e_after), float(e))

    def test_custom_rules_and_autodiff_agree_on_every_gradient(self):
        grads = {}
        for backward in ("custom", "autodiff"):
            model = _model(backward)
            _, _, state = model.init(jax.random.PRNGKey(0), (-1, 2))

            def loss(p, model=model, state=state, backward=backward):
                out, _ = model.apply(p, state, X, train=False)
                return losses.half_squared_error(out, TARGET, backward=backward)

            grads[backward] = jax.grad(loss)(_params())
        chex.assert_trees_all_close(grads["custom"], grads["autodiff"], atol=1e-15)
