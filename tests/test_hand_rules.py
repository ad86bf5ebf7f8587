"""Every hand-written backward rule in fcnn runs when `backward="custom"` asks for it,
and never when `backward="autodiff"` does; and nothing that proves the rules can be
forgotten (every rule, every layer with the switch, every derivation page's numbers).

The rules are discovered, not listed: every module-level `HandRule` of `fcnn.ops.*`
(sub-packages included) and `fcnn.losses` is one case of the parametrized test, so a new
op cannot be forgotten: its rule is discovered, and the test fails until `ENTRIES` says
how to call it. Each case calls small examples through the public functions (every
entry point that reaches the rule: `leaky_relu` and `rrelu` reach PReLU's rule, `selu`
reaches ELU's, ...) and differentiates them inside `traced_rules()`
(fcnn/ops/hand_rule.py), which records the name of every hand rule whose backward is
traced. A selector that silently routes "custom" to plain autodiff records nothing,
and fails here. The layers are checked the same way, since they pass the switch on.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import pkgutil
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fcnn
from fcnn import losses
from fcnn.ops import activations as act
from fcnn.ops import conv as conv_ops
from fcnn.ops import dense as dense_ops
from fcnn.ops import dropout as dropout_ops
from fcnn.ops import conv_transpose as conv_transpose_ops
from fcnn.ops import lowering, lrn as lrn_ops, normalization, pooling
from fcnn.ops import padding as padding_ops
from fcnn.ops import resize as resize_ops
from fcnn.ops.hand_rule import HandRule, traced_rules
from tests.reference import derivation_pages as pages

SCANNED_PACKAGES = ("fcnn.ops",)
SCANNED_MODULES = ("fcnn.losses",)
# The rules that exist as this test is written; the discovery must find at least these.
KNOWN_AT_LEAST = 34


def scanned_modules():
    """fcnn.losses, fcnn.ops and every module below fcnn.ops (`__main__` excluded:
    importing it would run a program)."""
    modules = [importlib.import_module(name) for name in SCANNED_MODULES + SCANNED_PACKAGES]
    for package in SCANNED_PACKAGES:
        path = importlib.import_module(package).__path__
        for info in pkgutil.walk_packages(path, package + "."):
            if info.name.rsplit(".", 1)[-1] != "__main__":
                modules.append(importlib.import_module(info.name))
    return modules


def discover_rules() -> dict[str, list[tuple[HandRule, str]]]:
    """Rule name -> every (HandRule, "module.attribute") holding a rule of that name."""
    found: dict[str, list[tuple[HandRule, str]]] = {}
    for module in scanned_modules():
        for attr, value in vars(module).items():
            if isinstance(value, HandRule):
                found.setdefault(value.name, []).append((value, f"{module.__name__}.{attr}"))
    return found


RULES = discover_rules()


# ----------------------------------------------------------------------------------
# How to reach each rule through the public API


class Entry(NamedTuple):
    """One public call reaching a rule: `make(backward) -> (f, args)`; the gradient of
    the sum of f's outputs is taken with respect to every argument in `args`."""

    label: str
    make: Callable


def _x(shape=(3, 4), seed=0, offset=0.0):
    x = np.random.default_rng(seed).uniform(-2, 2, shape) + offset
    return jnp.asarray(np.where(np.abs(x) < 0.1, 0.5, x))


KEY = jax.random.PRNGKey(0)
ALL_LOWERED = lowering.Lowering("conv_forward_taps", "conv_input_grad_col2im",
                                "conv_kernel_grad_im2col")


def _unary(fn, **kwargs):
    return lambda b: (lambda x: fn(x, **kwargs, backward=b), (_x(),))


def _conv_args(channels=2):
    return (_x((1, 5, 5, channels), 1), _x((3, 3, channels, 2), 2), _x((2,), 3))


def _loss(fn, *args):
    return lambda b: (lambda *a: fn(*a, backward=b), args)


P, T = _x((4, 3), 4), _x((4, 3), 5)
LABELS = jnp.asarray([0, 2, 1, 2])
ENTRIES: dict[str, list[Entry]] = {
    "sigmoid": [Entry("sigmoid", _unary(act.sigmoid))],
    "tanh": [Entry("tanh", _unary(act.tanh))],
    "relu": [Entry("relu", _unary(act.relu))],
    "prelu": [
        Entry("prelu", lambda b: (lambda x, a: act.prelu(x, a, backward=b),
                                  (_x(), jnp.asarray([0.1, 0.2, 0.3, 0.4])))),
        Entry("leaky_relu", _unary(act.leaky_relu, negative_slope=0.1)),
        Entry("leaky_relu_traced_slope",
              lambda b: (lambda x, a: act.leaky_relu(x, a, backward=b), (_x(), jnp.asarray(0.2)))),
        Entry("rrelu_train", _unary(act.rrelu, train=True, rng=KEY)),
        Entry("rrelu_eval", _unary(act.rrelu, train=False)),
    ],
    "softplus": [Entry("softplus", _unary(act.softplus))],
    "elu": [Entry("elu", _unary(act.elu, alpha=0.5)), Entry("selu", _unary(act.selu))],
    "gelu": [Entry("gelu", _unary(act.gelu)),
             Entry("gelu_tanh", _unary(act.gelu, approximate=True))],
    "silu": [Entry("silu", _unary(act.silu)), Entry("swish", _unary(act.swish))],
    "softmax": [Entry("softmax", _unary(act.softmax)),
                Entry("softmax_axis0", _unary(act.softmax, axis=0))],
    "log_softmax": [Entry("log_softmax", _unary(act.log_softmax))],
    "maxout": [Entry("maxout", _unary(act.maxout, pieces=2))],
    "conv": [
        Entry("conv", lambda b: (lambda *a: conv_ops.conv(*a, backward=b), _conv_args())),
        Entry("conv_auto_many_channels", lambda b: (  # 8 channels: XLA everywhere
            lambda *a: conv_ops.conv(*a, backward=b, lowering="auto"), _conv_args(8))),
    ],
    "conv/lowered": [
        Entry("conv_lowered", lambda b: (
            lambda *a: conv_ops.conv(*a, backward=b, lowering=ALL_LOWERED), _conv_args())),
        Entry("conv_lowered_xla_passes", lambda b: (
            lambda *a: conv_ops.conv(*a, backward=b, lowering=lowering.Lowering(
                "conv_forward_im2col", "xla", "xla")), _conv_args())),
    ],
    "dense": [Entry("dense", lambda b: (lambda *a: dense_ops.dense(*a, backward=b),
                                        (_x((2, 3)), _x((3, 4), 1), _x((4,), 2))))],
    "dropout": [
        Entry("dropout", lambda b: (
            lambda x: dropout_ops.dropout(x, 0.5, KEY, train=True, backward=b), (_x(),))),
        Entry("dropout_traced_rate", lambda b: (
            lambda x, r: dropout_ops.dropout(x, r, KEY, train=True, backward=b),
            (_x(), jnp.asarray(0.3)))),
        Entry("dropout_scale_at_test_eval", lambda b: (
            lambda x: dropout_ops.dropout(x, 0.5, train=False, mode="scale_at_test",
                                          backward=b), (_x(),))),
        Entry("spatial_dropout", lambda b: (
            lambda x: dropout_ops.spatial_dropout(x, 0.5, KEY, train=True, backward=b),
            (_x((2, 3, 3, 2)),))),
    ],
    "pool": [
        Entry("max_pool", lambda b: (lambda x: pooling.max_pool(x, 2, backward=b),
                                     (_x((1, 4, 4, 2)),))),
        Entry("avg_pool", lambda b: (lambda x: pooling.avg_pool(x, 3, 1, "SAME", backward=b),
                                     (_x((1, 4, 4, 2)),))),
        Entry("pool_general", lambda b: (
            lambda x: pooling.pool(x, "max", 2, backward=b, path="general"), (_x((1, 4, 4, 2)),))),
    ],
    "global_max_pool": [Entry("global_max_pool", lambda b: (
        lambda x: pooling.global_max_pool(x, backward=b), (_x((2, 3, 3, 2)),)))],
    "adaptive_avg_pool": [Entry("adaptive_avg_pool", lambda b: (
        lambda x: pooling.adaptive_avg_pool(x, (2, 3), backward=b), (_x((2, 5, 4, 2)),)))],
    "drop_path": [Entry("drop_path", lambda b: (
        lambda x: dropout_ops.drop_path(x, 0.5, KEY, train=True, backward=b), (_x((4, 3, 2)),)))],
    "pad": [Entry(f"pad_{mode}", lambda b, mode=mode: (
        lambda x: padding_ops.pad(x, 1, mode, backward=b), (_x((1, 4, 4, 2)),)))
        for mode in ("zeros", "reflect", "replicate", "circular")],
    "upsample": [Entry(f"upsample_{method}", lambda b, method=method: (
        lambda x: resize_ops.upsample(x, 2, method, backward=b), (_x((1, 3, 3, 2)),)))
        for method in ("nearest", "bilinear")],
    "conv_transpose": [Entry("conv_transpose", lambda b: (
        lambda *a: conv_transpose_ops.conv_transpose(*a, strides=2, backward=b),
        _conv_args()))],
    "global_avg_pool": [Entry("global_avg_pool", lambda b: (
        lambda x: pooling.global_avg_pool(x, backward=b), (_x((2, 3, 3, 2)),)))],
    "normalize": [Entry("normalize", lambda b: (
        lambda x, s, c: normalization.normalize(x, s, c, axes=(0,), backward=b),
        (_x((4, 3)), _x((3,), 1), _x((3,), 2))))],
    "normalize_with_stats": [Entry("normalize_with_stats", lambda b: (
        lambda x, m, v: normalization.normalize_with_stats(x, m, v, backward=b),
        (_x((4, 3)), _x((3,), 1), jnp.asarray([0.5, 1.0, 2.0]))))],
    "weight_normalize": [Entry("weight_normalize", lambda b: (
        lambda v, g: normalization.weight_normalize(v, g, backward=b),
        (_x((3, 4)), _x((4,), 1))))],
    "lrn": [Entry("lrn", _unary(lrn_ops.lrn, depth_radius=1, alpha=0.1))],
    "half_squared_error": [Entry("half_squared_error", _loss(losses.half_squared_error, P, T))],
    "mean_squared_error": [Entry("mean_squared_error", _loss(losses.mean_squared_error, P, T))],
    "binary_cross_entropy": [Entry("binary_cross_entropy_with_logits", _loss(
        losses.binary_cross_entropy_with_logits, P, jnp.asarray(np.random.default_rng(6).uniform(size=(4, 3)))))],
    "softmax_cross_entropy": [
        Entry("softmax_cross_entropy_int", lambda b: (
            lambda z: losses.softmax_cross_entropy(z, LABELS, backward=b), (P,))),
        Entry("softmax_cross_entropy_onehot", _loss(
            losses.softmax_cross_entropy, P, jax.nn.one_hot(LABELS, 3, dtype=P.dtype))),
    ],
    "center_loss": [Entry("center_loss", lambda b: (
        lambda x, c: losses.center_loss(x, LABELS, c, backward=b), (P, _x((3, 3), 7))))],
    "l1_penalty": [Entry("l1_penalty", lambda b: (
        lambda w, v: losses.l1_penalty({"w": w, "v": [v]}, backward=b), (P, T)))],
    "l2_penalty": [Entry("l2_penalty", lambda b: (
        lambda w, v: losses.l2_penalty({"w": w, "v": [v]}, backward=b), (P, T)))],
}


def _total(out):
    return sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(out))


def rules_traced(f, args) -> set[str]:
    """Names of the hand rules whose backward is traced while differentiating f.

    A fresh function is traced by `make_jaxpr` every time (no compilation cache can
    hide a trace), and the gradient covers every argument."""
    argnums = tuple(range(len(args)))
    with traced_rules() as seen:
        jax.make_jaxpr(jax.grad(lambda *a: _total(f(*a)), argnums=argnums))(*args)
    return set(seen)


# ----------------------------------------------------------------------------------
# The tests


def test_discovery_finds_every_rule_once():
    assert len(RULES) >= KNOWN_AT_LEAST, sorted(RULES)
    for name, holders in RULES.items():
        objects = {id(rule) for rule, _ in holders}
        assert len(objects) == 1, f"two different HandRule objects are named {name!r}: {holders}"
    # the scan reaches the sub-modules, not only the package namespaces
    where = {w.rsplit(".", 1)[0] for holders in RULES.values() for _, w in holders}
    assert {"fcnn.ops.activations", "fcnn.ops.conv", "fcnn.ops.pooling", "fcnn.ops.dense",
            "fcnn.ops.dropout", "fcnn.ops.normalization", "fcnn.ops.lrn", "fcnn.losses"} <= where


# Module-level jax.custom_vjp objects outside a HandRule escape `traced_rules` and the
# autodiff switch. The only ones allowed are oneDNN's custom calls: an optional
# lowering of the convolution passes, whose vjps are those passes themselves (the
# conv rule, which is a HandRule, decides what they compute).
RAW_CUSTOM_VJP_ALLOWED = ("fcnn.ops.onednn.",)


def test_no_op_bypasses_hand_rule_with_a_raw_custom_vjp():
    raw = [
        f"{module.__name__}.{attr}"
        for module in scanned_modules()
        for attr, value in vars(module).items()
        if isinstance(value, jax.custom_vjp) and not module.__name__.startswith(RAW_CUSTOM_VJP_ALLOWED)
    ]
    assert not raw, f"build these ops with fcnn.ops.hand_rule.hand_rule: {raw}"


def test_every_discovered_rule_has_an_example_and_no_example_is_stale():
    missing = sorted(set(RULES) - set(ENTRIES))
    stale = sorted(set(ENTRIES) - set(RULES))
    assert not missing, f"hand rules without an example in ENTRIES: {missing}"
    assert not stale, f"ENTRIES names rules that no longer exist: {stale}"


@pytest.mark.parametrize("name", sorted(RULES))
def test_custom_runs_the_hand_rule_and_autodiff_does_not(name):
    assert name in ENTRIES, f"add an example of the hand rule {name!r} to ENTRIES"
    for entry in ENTRIES[name]:
        custom = rules_traced(*entry.make("custom"))
        assert custom == {name}, (
            f"{entry.label}(backward='custom') traced the backward of {sorted(custom)}, "
            f"expected exactly [{name!r}]: the selector does not reach the hand rule")
        autodiff = rules_traced(*entry.make("autodiff"))
        assert autodiff == set(), (
            f"{entry.label}(backward='autodiff') traced the hand rules {sorted(autodiff)}")


def test_a_bypassed_selector_is_detected(monkeypatch):
    """The check itself can fail: a selector that always picks autodiff records nothing."""
    monkeypatch.setattr(HandRule, "select", lambda self, backward: self.autodiff)
    assert rules_traced(*ENTRIES["relu"][0].make("custom")) == set()


def test_traced_rules_nest_and_record_only_inside():
    f, args = ENTRIES["tanh"][0].make("custom")
    with traced_rules() as outer:
        inner_names = rules_traced(f, args)
    assert inner_names == {"tanh"} and outer == {"tanh"}
    with traced_rules() as after:
        pass
    assert after == set()


# The layers pass `backward` on to the ops: each layer built with backward="custom"
# reaches exactly the listed rules, and with "autodiff" none. Keys are the constructor's
# name in fcnn.layers (a variant after a colon); "conv*" stands for the convolution's
# rules, "conv" or "conv/lowered", whichever the layer's measured lowering picks.
CONV_ANY = "conv*"
RULE_OF = {"leaky_relu": "prelu", "selu": "elu", "swish": "silu"}  # another op's rule
X2, X4 = _x((2, 4), 9), _x((2, 4, 4, 2), 8)
LAYERS = {
    **{spec.layer: (lambda b, spec=spec: getattr(fcnn, spec.layer)(backward=b), X2,
                    {RULE_OF.get(name, name)})
       for name, spec in act.ACTIVATIONS.items() if spec.kind == "elementwise"},
    **{f"Activation:{name}": (lambda b, name=name: fcnn.Activation(name, backward=b), X2,
                              {RULE_OF.get(name, name)})
       for name in act.activation_names()
       if act.activation_spec(name).kind in ("elementwise", "axis")},
    "Swish": (lambda b: fcnn.Swish(backward=b), X2, {"silu"}),
    "Softmax": (lambda b: fcnn.Softmax(backward=b), X2, {"softmax"}),
    "LogSoftmax": (lambda b: fcnn.LogSoftmax(backward=b), X2, {"log_softmax"}),
    "LeakyRelu:darknet": (lambda b: fcnn.LeakyRelu(0.1, backward=b), X2, {"prelu"}),
    "PRelu": (lambda b: fcnn.PRelu(backward=b), X2, {"prelu"}),
    "RRelu": (lambda b: fcnn.RRelu(backward=b), X2, {"prelu"}),
    "MaxoutUnits": (lambda b: fcnn.MaxoutUnits(2, backward=b), X2, {"maxout"}),
    "Maxout": (lambda b: fcnn.Maxout(3, pieces=2, backward=b), X2, {"dense", "maxout"}),
    "Conv": (lambda b: fcnn.Conv(3, 3, backward=b), X4, {CONV_ANY}),
    "Conv:8_channels": (lambda b: fcnn.Conv(3, 3, backward=b), _x((2, 4, 4, 8), 8), {CONV_ANY}),
    "DepthwiseConv": (lambda b: fcnn.DepthwiseConv(3, backward=b), X4, {CONV_ANY}),
    "SeparableConv": (lambda b: fcnn.SeparableConv(3, 3, backward=b), X4, {CONV_ANY}),
    "ConvTranspose": (lambda b: fcnn.ConvTranspose(3, 3, strides=2, backward=b), X4,
                      {"conv_transpose"}),
    "Dense": (lambda b: fcnn.Dense(3, backward=b), X2, {"dense"}),
    "Dropout": (lambda b: fcnn.Dropout(0.5, backward=b), X4, {"dropout"}),
    "SpatialDropout": (lambda b: fcnn.SpatialDropout(0.5, backward=b), X4, {"dropout"}),
    "DropPath": (lambda b: fcnn.DropPath(0.5, backward=b), X4, {"drop_path"}),
    "MaxPool": (lambda b: fcnn.MaxPool(2, backward=b), X4, {"pool"}),
    "AvgPool": (lambda b: fcnn.AvgPool(2, backward=b), X4, {"pool"}),
    "GlobalAvgPool": (lambda b: fcnn.GlobalAvgPool(backward=b), X4, {"global_avg_pool"}),
    "GlobalMaxPool": (lambda b: fcnn.GlobalMaxPool(backward=b), X4, {"global_max_pool"}),
    "AdaptiveAvgPool": (lambda b: fcnn.AdaptiveAvgPool((2, 3), backward=b), X4,
                        {"adaptive_avg_pool"}),
    "Upsample": (lambda b: fcnn.Upsample(2, backward=b), X4, {"upsample"}),
    "Pad": (lambda b: fcnn.Pad(1, "reflect", backward=b), X4, {"pad"}),
    "ZeroPadding": (lambda b: fcnn.ZeroPadding(1, backward=b), X4, {"pad"}),
    "BatchNorm": (lambda b: fcnn.BatchNorm(backward=b), X4, {"normalize"}),
    "LayerNorm": (lambda b: fcnn.LayerNorm(backward=b), X4, {"normalize"}),
    "GroupNorm": (lambda b: fcnn.GroupNorm(2, backward=b), X4, {"normalize"}),
    "InstanceNorm": (lambda b: fcnn.InstanceNorm(backward=b), X4, {"normalize"}),
    "LRN": (lambda b: fcnn.LRN(backward=b), X4, {"lrn"}),
    "WeightNorm": (lambda b: fcnn.WeightNorm(fcnn.Dense(3, backward=b), backward=b), X2,
                   {"weight_normalize", "dense"}),
    "conv_bn_leaky": (lambda b: fcnn.conv_bn_leaky(3, 3, backward=b), _x((2, 4, 4, 8), 8),
                      {CONV_ANY, "normalize", "prelu"}),
}
# At evaluation: batch norm uses its running statistics, dropout is the identity.
EVAL_CHANGES = {"normalize": "normalize_with_stats", "dropout": None, "drop_path": None}
BATCH_STATISTICS = ("BatchNorm", "conv_bn_leaky")  # the per-example norms do not change


def layer_constructors_with_a_backward_switch() -> list[str]:
    import fcnn.layers as layers

    names = []
    for name in layers.__all__:
        try:
            parameters = inspect.signature(getattr(layers, name)).parameters
        except (TypeError, ValueError):
            continue
        if "backward" in parameters:
            names.append(name)
    return names


def test_every_layer_with_a_backward_switch_is_checked():
    missing = sorted(set(layer_constructors_with_a_backward_switch())
                     - {key.split(":")[0] for key in LAYERS})
    assert not missing, f"add these layers to LAYERS in {__name__}: {missing}"


def _matches(seen: set[str], expected: set[str]) -> bool:
    if CONV_ANY not in expected:
        return seen == expected
    rest = expected - {CONV_ANY}
    conv_rules = {"conv", "conv/lowered"}
    return rest <= seen and bool(seen - rest) and (seen - rest) <= conv_rules


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layer_name", sorted(LAYERS))
def test_layers_pass_the_switch_to_their_ops(layer_name, train):
    make, x, expected = LAYERS[layer_name]
    if not train:
        changes = dict(EVAL_CHANGES)
        if layer_name not in BATCH_STATISTICS:
            del changes["normalize"]
        expected = {changes.get(n, n) for n in expected} - {None}
    seen = {}
    for backward in ("custom", "autodiff"):
        layer = make(backward)
        _, params, state = layer.init(jax.random.PRNGKey(0), x.shape)

        def f(params, x, layer=layer, state=state):
            return layer.apply(params, state, x, train=train, rng=KEY)[0]

        seen[backward] = rules_traced(f, (params, x))
    assert _matches(seen["custom"], expected), (layer_name, seen["custom"], expected)
    assert seen["autodiff"] == set(), (layer_name, seen["autodiff"])


# ----------------------------------------------------------------------------------
# The worked numbers of every derivation page are read by a test (see
# tests/reference/derivation_pages.py). A page without any is listed here, with why.
PAGES_WITHOUT_WORKED_NUMBERS = {
    "normalization": "derives the formulas symbolically; it has no worked numbers",
}


def _page_names():
    return sorted(p.stem for p in pages.PAGES.glob("*.md"))


@pytest.mark.parametrize("page", _page_names())
def test_every_worked_example_of_every_derivation_page_is_read_by_a_test(page):
    has_blocks = "```toml" in pages.page_text(page)
    if page in PAGES_WITHOUT_WORKED_NUMBERS:
        assert not has_blocks, f"{page}.md now has worked numbers: drop it from the list"
        return
    assert has_blocks, (
        f"docs/derivations/{page}.md has no ```toml block of worked numbers: add one after "
        "each worked example (tests/reference/derivation_pages.py) and test it, or list "
        "the page in PAGES_WITHOUT_WORKED_NUMBERS with the reason")
    sources = "\n".join(p.read_text(encoding="utf-8")
                        for p in pathlib.Path(__file__).parent.glob("test_*.py"))
    unread = [name for name in pages.worked_examples(page) if f'"{name}"' not in sources]
    assert not unread, f"{page}.md: no test reads the worked examples {unread}"
