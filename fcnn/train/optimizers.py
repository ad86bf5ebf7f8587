"""Optimizers: optax transformations chained with our regularizers.

Each optimizer is a function of the learning rate (and its own hyper-parameters)
returning an optax `GradientTransformation`, so anywhere an optimizer is expected a
callable `lr -> GradientTransformation` can be passed:

    optimizers.momentum(0.01)                          # SGD + heavy-ball momentum 0.9
    functools.partial(optimizers.adam, l2=1e-4)        # a factory lr -> Adam + L2
    make_optimizer("adam", 1e-3, max_norm=3.0)         # by name (command lines)

Every optimizer is the chain

    add_l1 -> add_l2 -> <direction> -> decoupled_weight_decay -> scale_by_learning_rate
    -> max_norm

(links with strength 0 or None are left out). The numeric hyper-parameters
(learning rate, momentum, penalty strengths, ...) are injected with
`optax.inject_hyperparams`: they live in `opt_state.hyperparams` as arrays, so a
population of models can carry one learning rate per member and be `jax.vmap`ped
(see fcnn.train.population), and a schedule's current value is visible there.

Directions d (the update before the learning rate; step = -lr * d):

    sgd       d = g
    momentum  d = v,  v <- mu * v + g                       (heavy ball)
    nesterov  d = g + mu * v, v <- mu * v + g               (Sutskever et al., 2013)
    rmsprop   d = g / (sqrt(s) + eps), s <- rho * s + (1 - rho) * g^2   (Tieleman & Hinton)
    adam      d = m_hat / (sqrt(v_hat) + eps)               (Kingma & Ba, 2015)
    adamw     adam + decoupled weight decay                 (Loshchilov & Hutter, 2019)
    rprop     per-weight steps grown by eta_plus / shrunk by eta_minus on sign changes;
              the learning rate is the initial step size    (Riedmiller & Braun, 1993)

Regularizers (keyword arguments of every optimizer): `l1`, `l2` (penalty strengths
added to the gradient: l1 * sign(w) and l2 * w), `weight_decay` (decoupled),
`max_norm` (the bound c of the max-norm constraint) and `mask` (which leaves they
touch: "kernels", the default, "all", a pytree of bools or a function params -> bools).
"""

from __future__ import annotations

import functools
import inspect

import jax.numpy as jnp
import optax

from fcnn._checks import check_number
from fcnn.schedules import check_learning_rate
from fcnn.train import regularizers


def _chain(direction, learning_rate, hp: dict, *, weight_decay=0.0, l1=0.0, l2=0.0,
           max_norm=None, mask="kernels", scale_by_lr: bool = True) -> optax.GradientTransformation:
    """The regularized chain around `direction(**values)`, hyper-parameters injected.

    `hp` holds the direction's own hyper-parameters, already checked.
    """
    if not callable(learning_rate):
        learning_rate = check_learning_rate(learning_rate)
    hp = dict(hp, learning_rate=learning_rate,
              weight_decay=check_number(weight_decay, "weight_decay", low=0.0),
              l1=check_number(l1, "l1", low=0.0), l2=check_number(l2, "l2", low=0.0))
    if max_norm is not None:
        hp["max_norm"] = check_number(max_norm, "max_norm", low=0.0, low_open=True)
    if not scale_by_lr and hp["weight_decay"] > 0:
        raise ValueError(
            f"weight_decay={weight_decay!r} with 'rprop': Rprop takes sign steps, so a decay "
            "added after it has no learning rate to scale it; use l2= instead"
        )
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
        links.append(direction(values))
        if use_wd:
            links.append(regularizers.decoupled_weight_decay(values["weight_decay"], mask))
        if scale_by_lr:
            links.append(optax.scale_by_learning_rate(values["learning_rate"]))
        if "max_norm" in values:
            links.append(regularizers.max_norm(values["max_norm"], mask))
        return optax.chain(*links)

    # inject_hyperparams inspects the factory's signature: give it named parameters.
    factory.__signature__ = inspect.Signature(
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY) for k in hp])
    return optax.inject_hyperparams(factory)(**hp)


def _fraction(value, name: str) -> float:
    return check_number(value, name, low=0.0, high=1.0, high_open=True)


def sgd(learning_rate, **regularization) -> optax.GradientTransformation:
    """Plain gradient descent: step = -lr * g."""
    return _chain(lambda v: optax.identity(), learning_rate, {}, **regularization)


def _trace(learning_rate, mu, nesterov: bool, regularization) -> optax.GradientTransformation:
    hp = {"momentum": _fraction(mu, "momentum")}
    return _chain(lambda v: optax.trace(decay=v["momentum"], nesterov=nesterov),
                  learning_rate, hp, **regularization)


def momentum(learning_rate, momentum: float = 0.9, **regularization) -> optax.GradientTransformation:
    """SGD with heavy-ball momentum `momentum` (the velocity's decay)."""
    return _trace(learning_rate, momentum, False, regularization)


def nesterov(learning_rate, momentum: float = 0.9, **regularization) -> optax.GradientTransformation:
    """SGD with Nesterov momentum (Sutskever et al., 2013)."""
    return _trace(learning_rate, momentum, True, regularization)


def rmsprop(learning_rate, decay: float = 0.9, eps: float = 1e-8,
            **regularization) -> optax.GradientTransformation:
    """RMSProp: the gradient divided by a running root mean square (Tieleman & Hinton)."""
    hp = {"decay": _fraction(decay, "decay"), "eps": check_number(eps, "eps", low=0.0)}
    return _chain(lambda v: optax.scale_by_rms(decay=v["decay"], eps=v["eps"]),
                  learning_rate, hp, **regularization)


def adam(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         **regularization) -> optax.GradientTransformation:
    """Adam (Kingma & Ba, 2015); with `weight_decay` > 0 it is AdamW."""
    hp = {"b1": _fraction(b1, "b1"), "b2": _fraction(b2, "b2"),
          "eps": check_number(eps, "eps", low=0.0)}
    return _chain(lambda v: optax.scale_by_adam(b1=v["b1"], b2=v["b2"], eps=v["eps"]),
                  learning_rate, hp, **regularization)


def adamw(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-4, **regularization) -> optax.GradientTransformation:
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), default 1e-4."""
    return adam(learning_rate, b1, b2, eps, weight_decay=weight_decay, **regularization)


def rprop(learning_rate, eta_minus: float = 0.5, eta_plus: float = 1.2,
          **regularization) -> optax.GradientTransformation:
    """Rprop (Riedmiller & Braun, 1993): sign steps whose size, starting at the learning
    rate, grows by `eta_plus` while the gradient keeps its sign and shrinks by
    `eta_minus` when it flips (within optax's bounds, 1e-6 to 50).

    optax.rprop's state starts its step sizes at the learning rate it was built with,
    so an injected rate (one per population member, or a schedule) would not reach
    them. Here the state holds step sizes relative to the rate (starting at 1, with
    the bounds divided by the rate) and the rate multiplies them at each update: the
    same steps as optax.rprop at a constant rate, and the injected rate is honoured.
    """
    hp = {"eta_minus": check_number(eta_minus, "eta_minus", low=0.0, high=1.0, low_open=True,
                                    high_open=True),
          "eta_plus": check_number(eta_plus, "eta_plus", low=1.0, low_open=True)}

    def direction(v):
        rate = jnp.maximum(v["learning_rate"], RPROP_TINY_RATE)  # a schedule may reach 0
        return optax.chain(
            optax.scale_by_rprop(1.0, eta_minus=v["eta_minus"], eta_plus=v["eta_plus"],
                                 min_step_size=RPROP_MIN_STEP / rate,
                                 max_step_size=RPROP_MAX_STEP / rate),
            optax.scale(-v["learning_rate"]))

    return _chain(direction, learning_rate, hp, scale_by_lr=False, **regularization)


RPROP_MIN_STEP, RPROP_MAX_STEP = 1e-6, 50.0  # optax.rprop's defaults
RPROP_TINY_RATE = 1e-30


OPTIMIZERS = {"sgd": sgd, "momentum": momentum, "nesterov": nesterov, "rmsprop": rmsprop,
              "adam": adam, "adamw": adamw, "rprop": rprop}


def make_optimizer(name: str, learning_rate, **kwargs) -> optax.GradientTransformation:
    """The optimizer `name` (one of `OPTIMIZERS`), e.g. make_optimizer("adam", 1e-3, l2=1e-4);
    the keyword arguments are those of the function of that name in this module."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r}: expected one of {tuple(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate, **kwargs)


def by_name(name: str, **kwargs):
    """The factory lr -> optimizer for a name (command-line sugar): e.g.
    by_name("momentum", momentum=0.8)(0.01)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r}: expected one of {tuple(OPTIMIZERS)}")
    return functools.partial(OPTIMIZERS[name], **kwargs)


__all__ = ["OPTIMIZERS", "adam", "adamw", "by_name", "make_optimizer", "momentum", "nesterov",
           "rmsprop", "rprop", "sgd"]
