"""Optimizers by name, built from optax transformations plus our regularizers.

    make_optimizer("adam", 1e-3, l2=1e-4, max_norm=3.0)

is the chain

    add_l1 -> add_l2 -> scale_by_adam -> decoupled_weight_decay -> scale_by_learning_rate
    -> max_norm

(links with strength 0 or None are left out). The numeric hyper-parameters
(learning rate, momentum, penalty strengths, ...) are injected with
`optax.inject_hyperparams`: they live in `opt_state.hyperparams` as arrays, so a
population of models can carry one learning rate per member and be `jax.vmap`ped
(see fcnn.train.population), and a schedule's current value is visible there.

Optimizers (the update direction d before the learning rate; step = -lr * d):

    sgd       d = g
    momentum  d = v,  v <- mu * v + g                       (heavy ball)
    nesterov  d = g + mu * v, v <- mu * v + g               (Sutskever et al., 2013)
    rmsprop   d = g / (sqrt(s) + eps), s <- rho * s + (1 - rho) * g^2   (Tieleman & Hinton)
    adam      d = m_hat / (sqrt(v_hat) + eps)               (Kingma & Ba, 2015)
    adamw     adam + decoupled weight decay                 (Loshchilov & Hutter, 2019)
    rprop     per-weight steps grown by eta_plus / shrunk by eta_minus on sign changes;
              the learning rate is the initial step size    (Riedmiller & Braun, 1993)
"""

from __future__ import annotations

import inspect
import math
import numbers

import optax

from fcnn.schedules import check_learning_rate
from fcnn.train import regularizers

OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw", "rprop")


def _number(value, name: str, *, low: float = 0.0, high: float | None = None, open_low=False):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}: expected a finite number")
    value = float(value)
    bad_low = value <= low if open_low else value < low
    if bad_low or (high is not None and value >= high):
        interval = f"{'(' if open_low else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{name}={value!r}: expected a number in {interval}")
    return value


def _core(name: str, hp: dict) -> optax.GradientTransformation:
    if name == "sgd":
        return optax.identity()
    if name == "momentum":
        return optax.trace(decay=hp["momentum"], nesterov=False)
    if name == "nesterov":
        return optax.trace(decay=hp["momentum"], nesterov=True)
    if name == "rmsprop":
        return optax.scale_by_rms(decay=hp["decay"], eps=hp["eps"])
    return optax.scale_by_adam(b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])  # adam, adamw


def make_optimizer(
    name: str,
    learning_rate,
    *,
    momentum: float = 0.9,
    decay: float = 0.9,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float | None = None,
    l1: float = 0.0,
    l2: float = 0.0,
    max_norm: float | None = None,
    mask="kernels",
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
) -> optax.GradientTransformation:
    """An optax optimizer by name (one of `OPTIMIZERS`) with optional regularizers.

    Args:
      learning_rate: a number > 0 or a schedule (fcnn.schedules); for "rprop", the
        initial per-weight step size.
      momentum: mu for "momentum" and "nesterov".
      decay: rho, the squared-gradient average of "rmsprop".
      b1, b2, eps: Adam's moment decays and denominator offset (eps also for rmsprop).
      weight_decay: decoupled weight decay (default 1e-4 for "adamw", 0 otherwise).
      l1, l2: penalty strengths added to the gradient: l1 * sign(w) and l2 * w
        (the gradients of l1 * ||w||_1 and (l2 / 2) * ||w||^2).
      max_norm: the bound c of the max-norm constraint, or None.
      mask: which leaves the regularizers touch: "kernels" (rank >= 2, default), "all",
        a pytree of bools or a function params -> bools.
      eta_minus, eta_plus: Rprop's step shrink and growth factors.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r}: expected one of {OPTIMIZERS}")
    if not callable(learning_rate):
        learning_rate = check_learning_rate(learning_rate)
    if weight_decay is None:
        weight_decay = 1e-4 if name == "adamw" else 0.0
    hp = {
        "learning_rate": learning_rate,
        "weight_decay": _number(weight_decay, "weight_decay"),
        "l1": _number(l1, "l1"),
        "l2": _number(l2, "l2"),
    }
    if name in ("momentum", "nesterov"):
        hp["momentum"] = _number(momentum, "momentum", high=1.0)
    if name == "rmsprop":
        hp["decay"] = _number(decay, "decay", high=1.0)
        hp["eps"] = _number(eps, "eps")
    if name in ("adam", "adamw"):
        hp["b1"] = _number(b1, "b1", high=1.0)
        hp["b2"] = _number(b2, "b2", high=1.0)
        hp["eps"] = _number(eps, "eps")
    if name == "rprop":
        hp["eta_minus"] = _number(eta_minus, "eta_minus", high=1.0, open_low=True)
        hp["eta_plus"] = _number(eta_plus, "eta_plus", low=1.0, open_low=True)
    if name == "rprop" and hp["weight_decay"] > 0:
        raise ValueError(
            f"weight_decay={weight_decay!r} with 'rprop': Rprop takes sign steps, so a decay "
            "added after it has no learning rate to scale it; use l2= instead"
        )
    if max_norm is not None:
        hp["max_norm"] = _number(max_norm, "max_norm", open_low=True)
    mask = regularizers.resolve_mask(mask)
    # Which links exist is decided here, from Python numbers; only their values are
    # injected (arrays in opt_state), so a vmapped population can vary them.
    use_l1, use_l2, use_wd = hp["l1"] > 0, hp["l2"] > 0, hp["weight_decay"] > 0

    def factory(**values):
        links = []
        if use_l1:
            links.append(regularizers.add_l1(values["l1"], mask))
        if use_l2:
            links.append(regularizers.add_l2(values["l2"], mask))
        if name == "rprop":
            links.append(optax.rprop(
                values["learning_rate"], eta_minus=values["eta_minus"], eta_plus=values["eta_plus"]
            ))
        else:
            links.append(_core(name, values))
        if use_wd:
            links.append(regularizers.decoupled_weight_decay(values["weight_decay"], mask))
        if name != "rprop":
            links.append(optax.scale_by_learning_rate(values["learning_rate"]))
        if "max_norm" in values:
            links.append(regularizers.max_norm(values["max_norm"], mask))
        return optax.chain(*links)

    return optax.inject_hyperparams(_with_signature(factory, hp))(**hp)


def _with_signature(factory, hp: dict):
    """inject_hyperparams inspects the factory's signature: give it named parameters."""
    params = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in hp]

    def named(**values):
        return factory(**values)

    named.__signature__ = inspect.Signature(params)
    return named
