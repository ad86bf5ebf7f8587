"""Losses: values and gradients against autodiff, central finite differences (float64)
and the naive-loop oracle in tests/reference/loss_ref.py; the notes' sigmoid
cross-entropy gradient; the center loss and its update; argument errors."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from fcnn import losses
from fcnn.ops import activations as act
from fcnn.ops.dense import dense
from tests.reference import activation_ref
from tests.reference import derivation_pages as pages
from tests.reference import loss_ref as ref

EPS = 1e-6


@functools.partial(jax.jit, static_argnums=(0, 1))
def _fd_grad(name, argnum, args):
    """Central differences of the scalar loss with respect to args[argnum], batched.

    Jitted once per case and shared by both variants (the yardstick, not the code
    under test).
    """
    loss = functools.partial(CASES[name][0], backward="autodiff")
    x = args[argnum]
    n = x.size
    steps = (EPS * jnp.eye(n, dtype=x.dtype)).reshape((n,) + x.shape)

    def at(v):
        return loss(*args[:argnum], v, *args[argnum + 1:])

    return ((jax.vmap(at)(x[None] + steps) - jax.vmap(at)(x[None] - steps)) / (2 * EPS)).reshape(x.shape)


def _data():
    r = np.random.default_rng(0)
    logits = r.normal(size=(4, 5)) * 2
    probs = r.dirichlet(np.ones(5), size=4)
    labels = np.array([0, 3, 4, 3])
    return {
        "pred": r.normal(size=(4, 3)),
        "target": r.normal(size=(4, 3)),
        "bce_logits": r.normal(size=(4, 3)) * 3,
        "bce_labels": r.uniform(size=(4, 3)),
        "logits": logits,
        "probs": probs,
        "labels": labels,
        "onehot": np.eye(5)[labels],
        # label weights that do not sum to 1 per row (the general (p sum y - y)/n rule)
        "weights": probs * np.array([[0.5], [2.0], [1.0], [0.3]]),
        "features": r.normal(size=(6, 3)),
        "center_labels": np.array([0, 2, 2, 1, 0, 2]),
        "centers": r.normal(size=(4, 3)),
    }


D = _data()

# name -> (loss(*diff_args, backward), diff args, oracle value, oracle grads (tuple))
CASES = {
    "half_squared_error": (
        losses.half_squared_error, ("pred", "target"),
        ref.half_squared_error, ref.half_squared_error_grad,
    ),
    "mean_squared_error": (
        losses.mean_squared_error, ("pred", "target"),
        ref.mean_squared_error, ref.mean_squared_error_grad,
    ),
    "binary_cross_entropy_with_logits": (
        losses.binary_cross_entropy_with_logits, ("bce_logits", "bce_labels"),
        ref.binary_cross_entropy, ref.binary_cross_entropy_grad,
    ),
    "softmax_cross_entropy_onehot": (
        losses.softmax_cross_entropy, ("logits", "onehot"),
        ref.softmax_cross_entropy, ref.softmax_cross_entropy_grad,
    ),
    "softmax_cross_entropy_distribution": (
        losses.softmax_cross_entropy, ("logits", "probs"),
        ref.softmax_cross_entropy, ref.softmax_cross_entropy_grad,
    ),
    "softmax_cross_entropy_unnormalized": (
        losses.softmax_cross_entropy, ("logits", "weights"),
        ref.softmax_cross_entropy, ref.softmax_cross_entropy_grad,
    ),
    "softmax_cross_entropy_int": (
        lambda z, backward: losses.softmax_cross_entropy(z, D["labels"], backward=backward),
        ("logits",),
        lambda z: ref.softmax_cross_entropy(z, D["onehot"]),
        lambda z: ref.softmax_cross_entropy_grad(z, D["onehot"])[:1],
    ),
    "center_loss": (
        lambda x, c, backward: losses.center_loss(x, D["center_labels"], c, backward=backward),
        ("features", "centers"),
        lambda x, c: ref.center_loss(x, D["center_labels"], c),
        lambda x, c: ref.center_loss_grad(x, D["center_labels"], c),
    ),
    "l1_penalty": (
        lambda a, b, backward: losses.l1_penalty({"w": a, "inner": [b]}, backward=backward),
        ("pred", "centers"),
        lambda a, b: ref.l1_penalty([a, b]),
        lambda a, b: (np.sign(a), np.sign(b)),
    ),
    "l2_penalty": (
        lambda a, b, backward: losses.l2_penalty({"w": a, "inner": [b]}, backward=backward),
        ("pred", "centers"),
        lambda a, b: ref.l2_penalty([a, b]),
        lambda a, b: (a, b),
    ),
}


class GradientTest(chex.TestCase):
    """custom rule == autodiff == finite differences == NumPy oracle."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(name, name) for name in CASES])
    def test_three_ways(self, name):
        loss, keys, oracle, oracle_grads = CASES[name]
        args = tuple(jnp.asarray(D[k]) for k in keys)
        argnums = tuple(range(len(args)))

        def custom(*a):
            return loss(*a, backward="custom")

        def plain(*a):
            return loss(*a, backward="autodiff")

        @self.variant
        def run(*a):
            value, grads = jax.value_and_grad(custom, argnums)(*a)
            value_a, grads_a = jax.value_and_grad(plain, argnums)(*a)
            return value, grads, value_a, grads_a

        value, grads, value_a, grads_a = run(*args)
        fd = tuple(_fd_grad(name, i, args) for i in argnums)
        np_args = [np.asarray(a) for a in args]
        chex.assert_shape(value, ())
        chex.assert_trees_all_close(value, value_a, oracle(*np_args), atol=1e-12)
        chex.assert_trees_all_close(grads, grads_a, atol=1e-12)
        chex.assert_trees_all_close(grads, tuple(oracle_grads(*np_args)), atol=1e-10)
        chex.assert_trees_all_close(grads, fd, atol=1e-6)


class NotesDerivationTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(("custom", "custom"), ("autodiff", "autodiff"))
    def test_sigmoid_cross_entropy_weight_gradient(self, backward):
        """dC/dw = 1/n sum x (sigma(z) - y), dC/db = 1/n sum (sigma(z) - y): sigma'(z) cancels."""
        r = np.random.default_rng(3)
        x = r.normal(size=(8, 3))
        y = r.integers(0, 2, size=8).astype(np.float64)
        w, b = r.normal(size=3), 0.3

        @self.variant
        def grads(w, b):
            def cost(w, b):
                return losses.binary_cross_entropy_with_logits(x @ w + b, y, backward=backward)
            return jax.grad(cost, argnums=(0, 1))(w, b)

        dw, db = grads(jnp.asarray(w), jnp.asarray(b))
        sigma = 1 / (1 + np.exp(-(x @ w + b)))
        np.testing.assert_allclose(dw, (x * (sigma - y)[:, None]).mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(db, (sigma - y).mean(), atol=1e-12)

    def test_softmax_cross_entropy_gradient_is_p_minus_y_over_n(self):
        z, labels = jnp.asarray(D["logits"]), jnp.asarray(D["labels"])
        p = activation_ref.softmax(D["logits"])
        want = (p - D["onehot"]) / 4
        for backward in ("custom", "autodiff"):
            g_int = jax.grad(lambda v: losses.softmax_cross_entropy(v, labels, backward=backward))(z)
            g_hot = jax.grad(lambda v: losses.softmax_cross_entropy(v, D["onehot"], backward=backward))(z)
            chex.assert_trees_all_close(g_int, g_hot, want, atol=1e-12)
        self.assertAlmostEqual(
            float(losses.softmax_cross_entropy(z, labels)),
            float(losses.softmax_cross_entropy(z, jnp.asarray(D["onehot"]))), places=12,
        )

    def test_extreme_logits_stay_finite(self):
        @jax.jit
        def run(z):
            sce = jax.value_and_grad(lambda v: losses.softmax_cross_entropy(v, jnp.array([1, 0])))(z)
            bce = jax.value_and_grad(
                lambda v: losses.binary_cross_entropy_with_logits(v, jnp.array([[1.0, 0.0], [0.0, 1.0]]))
            )(z)
            return sce, bce

        for dtype in (jnp.float32, jnp.float64):
            z = jnp.array([[1000.0, -1000.0], [1000.0, -1000.0]], dtype)
            (sce, dsce), (bce, dbce) = run(z)
            chex.assert_tree_all_finite((sce, dsce, bce, dbce))
            # example 0 is wrong by 2000 nats, example 1 right: mean 1000
            self.assertAlmostEqual(float(sce), 1000.0, delta=1e-3)
            # BCE: example 0 is right on both outputs, example 1 wrong by 1000 on each
            self.assertAlmostEqual(float(bce), 2000.0 / 2, delta=1e-3)
            chex.assert_trees_all_close(dsce, np.array([[0.5, -0.5], [0.0, 0.0]]), atol=1e-6)
            chex.assert_trees_all_close(dbce, np.array([[0.0, 0.0], [0.5, -0.5]]), atol=1e-6)


class DerivationPageNetworkTest(chex.TestCase):
    """docs/derivations/activations_losses.md, the notes' 2-2-2 network, forward and
    backward, with every printed number read from the page and compared to half a unit
    of its last printed digit; the weights, inputs and targets come from the page too.
    The gradient runs through the hand rules of dense, sigmoid and the half squared
    error (or through plain autodiff of the same forwards)."""

    @parameterized.parameters("custom", "autodiff")
    def test_every_printed_number(self, backward):
        page = "activations_losses"
        ex = pages.example(page, "network_2_2_2")
        text = pages.prose(page)
        for key, value in ex.items():  # every printed number is also in the prose
            if isinstance(value, str):
                self.assertIn(value, text, key)
        x = pages.array(ex["inputs"]).reshape(1, 2)
        target = pages.array(ex["targets"]).reshape(1, 2)
        # the page writes weights [unit][input]; Dense kernels are (in, out)
        params = {
            "hidden": {"kernel": pages.array(ex["hidden_weights"]).T,
                       "bias": jnp.full((2,), ex["hidden_bias"], jnp.float64)},
            "output": {"kernel": pages.array(ex["output_weights"]).T,
                       "bias": jnp.full((2,), ex["output_bias"], jnp.float64)},
        }

        def forward(p):
            net_h = dense(x, p["hidden"]["kernel"], p["hidden"]["bias"], backward=backward)
            out_h = act.sigmoid(net_h, backward=backward)
            net_o = dense(out_h, p["output"]["kernel"], p["output"]["bias"], backward=backward)
            out_o = act.sigmoid(net_o, backward=backward)
            return net_h, out_h, net_o, out_o

        def loss(p):
            return losses.half_squared_error(forward(p)[3], target, backward=backward)

        net_h, out_h, net_o, out_o = (np.asarray(a)[0] for a in forward(params))
        e, grads = jax.value_and_grad(loss)(params)
        # out_h -> E, for the hidden layer's error
        d_out_h = jax.grad(lambda h: losses.half_squared_error(act.sigmoid(dense(
            h, params["output"]["kernel"], params["output"]["bias"], backward=backward),
            backward=backward), target, backward=backward))(jnp.asarray(out_h).reshape(1, 2))
        delta_o = (out_o - np.asarray(ex["targets"])) * out_o * (1 - out_o)
        lr = ex["learning_rate"]
        computed = {
            "net_h1": net_h[0], "net_h2": net_h[1], "out_h1": out_h[0], "out_h2": out_h[1],
            "net_o1": net_o[0], "net_o2": net_o[1], "out_o1": out_o[0], "out_o2": out_o[1],
            "E_o1": 0.5 * (ex["targets"][0] - out_o[0]) ** 2,
            "E_o2": 0.5 * (ex["targets"][1] - out_o[1]) ** 2,
            "E_total": e,
            "out_o1_derivative": out_o[0] * (1 - out_o[0]),
            "dE_dw5": grads["output"]["kernel"][0, 0],  # h1 -> o1
            "w5_after": params["output"]["kernel"][0, 0] - lr * grads["output"]["kernel"][0, 0],
            "delta_o1": delta_o[0], "delta_o2": delta_o[1],
            "dE_dout_h1": d_out_h[0, 0],
            "out_h1_derivative": out_h[0] * (1 - out_h[0]),
            "dE_dw1": grads["hidden"]["kernel"][0, 0],  # i1 -> h1
            "w1_after": params["hidden"]["kernel"][0, 0] - lr * grads["hidden"]["kernel"][0, 0],
        }
        printed = {k: v for k, v in ex.items() if isinstance(v, str)}
        self.assertEqual(sorted(printed), sorted(computed))
        for key, text_value in printed.items():
            value, half_unit = pages.printed(text_value)
            self.assertAlmostEqual(float(computed[key]), value, delta=half_unit, msg=key)


class CenterLossTest(chex.TestCase):
    def test_gradient_is_the_distance_to_the_center(self):
        x, labels, c = (jnp.asarray(D[k]) for k in ("features", "center_labels", "centers"))
        g = jax.grad(losses.center_loss)(x, labels, c)
        np.testing.assert_allclose(g, D["features"] - D["centers"][D["center_labels"]], atol=1e-12)

    @chex.variants(with_jit=True, without_jit=True)
    def test_update_rule_matches_the_oracle(self):
        update = self.variant(losses.update_centers)
        x, labels, c = (jnp.asarray(D[k]) for k in ("features", "center_labels", "centers"))
        for alpha in (0.0, 0.5, 1.0):
            new = np.asarray(update(c, x, labels, jnp.asarray(alpha)))
            want = ref.update_centers(D["centers"], D["features"], D["center_labels"], alpha)
            np.testing.assert_allclose(new, want, atol=1e-12)
            np.testing.assert_array_equal(new[3], D["centers"][3])  # class 3 is absent

    def test_update_by_hand(self):
        # one class, two points: delta = ((c - x1) + (c - x2)) / 3
        c = jnp.array([[0.0, 0.0]])
        x = jnp.array([[3.0, 0.0], [0.0, 6.0]])
        new = losses.update_centers(c, x, jnp.array([0, 0]), 0.5)
        np.testing.assert_allclose(new, [[0.5 * 3 / 3, 0.5 * 6 / 3]], atol=1e-12)

    def test_repeated_updates_move_centers_to_the_class_means(self):
        x = jnp.asarray(D["features"])
        labels = jnp.asarray(D["center_labels"])
        c = jnp.zeros((4, 3))
        for _ in range(60):
            c = losses.update_centers(c, x, labels, 0.5)
        for j in (0, 1, 2):
            np.testing.assert_allclose(c[j], D["features"][D["center_labels"] == j].mean(axis=0), atol=1e-6)


class ErrorTest(chex.TestCase):
    def test_shapes(self):
        with pytest.raises(ValueError, match=r"half_squared_error: predictions has shape \(4, 1\) but targets has shape \(4,\)"):
            losses.half_squared_error(jnp.ones((4, 1)), jnp.ones(4))
        with pytest.raises(ValueError, match=r"mean_squared_error: predictions has shape"):
            losses.mean_squared_error(jnp.ones((4, 2)), jnp.ones((2, 4)))
        with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: logits has shape \(3,\) but labels has shape \(3, 1\)"):
            losses.binary_cross_entropy_with_logits(jnp.ones(3), jnp.ones((3, 1)))
        with pytest.raises(ValueError, match=r"integer labels have shape \(3,\) but logits have shape \(4, 5\).*different batch sizes"):
            losses.softmax_cross_entropy(jnp.ones((4, 5)), jnp.array([0, 1, 2]))
        with pytest.raises(ValueError, match=r"integer labels have shape \(4, 1\)"):
            losses.softmax_cross_entropy(jnp.ones((4, 5)), jnp.zeros((4, 1), jnp.int32))
        with pytest.raises(ValueError, match=r"one-hot labels have shape \(3, 5\) but logits have shape \(4, 5\)"):
            losses.softmax_cross_entropy(jnp.ones((4, 5)), jnp.ones((3, 5)))
        with pytest.raises(ValueError, match=r"center_loss: labels have shape \(5,\) but features have shape \(6, 3\)"):
            losses.center_loss(jnp.ones((6, 3)), jnp.zeros(5, jnp.int32), jnp.ones((4, 3)))
        with pytest.raises(ValueError, match=r"features have dimension 3 but centers have 2"):
            losses.update_centers(jnp.ones((4, 2)), jnp.ones((6, 3)), jnp.zeros(6, jnp.int32), 0.5)

    def test_label_values_and_dtypes(self):
        with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 5\), got \[7, -1\]"):
            losses.softmax_cross_entropy(jnp.ones((3, 5)), jnp.array([7, 2, -1]))
        with pytest.raises(TypeError, match=r"labels of dtype bool: expected integer class indices or float one-hot"):
            losses.softmax_cross_entropy(jnp.ones((2, 5)), jnp.ones((2, 5), bool))
        with pytest.raises(ValueError, match=r"center_loss: labels must be class indices in \[0, 4\)"):
            losses.center_loss(jnp.ones((2, 3)), jnp.array([0, 4]), jnp.ones((4, 3)))
        with pytest.raises(TypeError, match=r"center_loss: labels of dtype float"):
            losses.center_loss(jnp.ones((2, 3)), jnp.array([0.0, 1.0]), jnp.ones((4, 3)))
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
            losses.binary_cross_entropy_with_logits(jnp.ones(2), jnp.array([0.0, 2.0]))
        with pytest.raises(ValueError, match=r"alpha=1.5: expected a center learning rate in \[0, 1\]"):
            losses.update_centers(jnp.ones((4, 3)), jnp.ones((2, 3)), jnp.array([0, 1]), 1.5)
        with pytest.raises(ValueError, match=r"backward='hand'"):
            losses.l2_penalty({"w": jnp.ones(2)}, backward="hand")
        # integer and boolean binary targets are accepted
        z = jnp.array([0.5, -1.0])
        self.assertAlmostEqual(
            float(losses.binary_cross_entropy_with_logits(z, jnp.array([1, 0]))),
            float(losses.binary_cross_entropy_with_logits(z, jnp.array([True, False]))),
        )

    def test_out_of_range_labels_under_jit_contribute_nothing(self):
        """Documented behaviour: values cannot be checked under jit; the row is all zero."""
        z = jnp.asarray(D["logits"][:2])
        loss = jax.jit(losses.softmax_cross_entropy)(z, jnp.array([1, 9]))
        only_first = -activation_ref.log_softmax(D["logits"][:1])[0, 1] / 2
        self.assertAlmostEqual(float(loss), only_first, places=10)
        g = jax.jit(jax.grad(losses.softmax_cross_entropy))(z, jnp.array([1, 9]))
        np.testing.assert_array_equal(g[1], 0.0)
