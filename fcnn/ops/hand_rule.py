"""The pair every op is built from: a forward with its hand-written backward rule, and
the same forward left to autodiff.

    RELU = hand_rule("relu", forward, fwd, bwd)
    RELU.select("custom")(x)     # jax.custom_vjp: the hand-written backward runs
    RELU.select("autodiff")(x)   # the plain forward, differentiated by JAX

`forward(*args) -> y` is the op; `fwd(*args) -> (y, residuals)` computes the output
and keeps what the backward needs; `bwd(*nondiff, residuals, g) -> cotangents` is the
hand-derived rule (one cotangent per differentiable argument), as `jax.custom_vjp`
defines them. Arguments listed in `nondiff_argnums` are static configuration.

Proof that the hand rule is the one running: every backward records its rule's name
when JAX traces it. `traced_rules()` collects those names, so a test can show that
`backward="custom"` reached the rule (a selector that silently fell back to autodiff
records nothing). A jitted function traces once: trace a fresh function inside the
context.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, NamedTuple

import jax

from fcnn._checks import check_backward

_recorders: list[set[str]] = []


@contextlib.contextmanager
def traced_rules() -> Iterator[set[str]]:
    """Yields the set of hand-rule names whose backward is traced inside the block."""
    seen: set[str] = set()
    _recorders.append(seen)
    try:
        yield seen
    finally:
        _recorders.remove(seen)


class HandRule(NamedTuple):
    """An op as two callables with one signature: the hand rule and plain autodiff."""

    name: str
    custom: Callable
    autodiff: Callable

    def select(self, backward: str) -> Callable:
        """The callable for `backward` ("custom" or "autodiff")."""
        return self.custom if check_backward(backward) == "custom" else self.autodiff


def hand_rule(name: str, forward: Callable, fwd: Callable, bwd: Callable, *,
              nondiff_argnums: tuple[int, ...] = ()) -> HandRule:
    """Builds the `HandRule` of an op from its forward and its hand-written (fwd, bwd)."""

    def recorded_bwd(*args):
        for seen in _recorders:
            seen.add(name)
        return bwd(*args)

    custom = jax.custom_vjp(forward, nondiff_argnums=nondiff_argnums)
    custom.defvjp(fwd, recorded_bwd)
    return HandRule(name, custom, forward)


__all__ = ["HandRule", "hand_rule", "traced_rules"]
