"""Study 5: batch normalization: learning rates, regularizers, LRN, placement, weight norm.

    python -m experiments.batchnorm [--lrs 0.01,0.03,0.1,0.3,1]
        [--parts sweep,regularization,lrn,placement,weight_norm]

The reference CNN layout (conv 3x3 16 - pool - conv 3x3 32 - pool - dense 128 -
dense classes), trained with SGD + momentum 0.9. Five parts (`--parts`):

  * sweep: `fcnn.models.refnet` with and without BatchNorm after each convolution and
    the hidden dense layer, at several learning rates. Measured: steps to a smoothed
    training error of 10%, and whether a run is stable (finite all along, and its
    final training loss at most half its initial one). Claims (Ioffe & Szegedy,
    2015): BN trains faster and tolerates larger learning rates.
  * regularization: BN alone, BN + dropout (0.5, after the hidden dense layer) + L2,
    dropout + L2 without BN, and no normalization, trained on a training subset with
    the training accuracy measured too (evaluation mode). Claims (Ioffe & Szegedy,
    section 4.2.1): with BN, dropout and L2 can be dropped (BN alone is as accurate on
    the test set, within a margin of 0.5 points); BN regularizes mildly (a smaller
    train/test gap than without it).
  * lrn: BN, AlexNet's local response normalization (conv - ReLU - LRN - pool,
    `fcnn.LRN` with AlexNet's constants) and both. Claim: with BN, LRN is unnecessary.
  * placement: conv-BN-ReLU against conv-ReLU-BN. Claim (Ioffe & Szegedy, section
    3.2): BN goes before the nonlinearity; judged on the steps to the training-error
    targets and the test accuracy (by majority).
  * weight_norm: `fcnn.WeightNorm` around every hidden conv and dense layer, with
    Salimans & Kingma's data-dependent initialization (on one training batch, g and
    the bias set so that each pre-activation has zero mean and unit variance,
    `fcnn.layers.weight_norm.data_dependent_init`), against BN; each also with the
    hidden kernels' initialization scaled by 0.1 and 10. Claims: weight normalization
    is faster per step (wall time) and in wall time to the target, it is less noisy
    (the standard deviation of the training loss over the last steps, which also holds
    the mini-batch sampling noise both share), and BN is less sensitive to the
    initialization scale (range of the test accuracy and of the steps to the target
    over the scales).

Run time on MNIST (3 seeds, 2 CPU cores): the sweep about 25 minutes (10 variants of
3 epochs of 55,000 examples), the other parts about 15 minutes (12 variants of 5
epochs of a 10,000-example subset): about 40 minutes in all (`--parts` runs fewer).
The digits default takes about 5 minutes, --quick under a minute.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

import fcnn
from fcnn import cli, initializers, program
from fcnn.cli import UsageError
from fcnn.data import subsample
from fcnn.layers.weight_norm import data_dependent_init
from fcnn.models import refnet
from fcnn.train import optimizers

from experiments.core import claims, plots, probes, report, study
from experiments.core.study import option
from experiments.core.training import STABLE_FRACTION, SUBSET_SEED, Variant

# Training errors the speed claims are timed to; CIFAR-10's refnet stays above 20% in 5 epochs.
TARGET, TARGET_BY_DATASET = 0.10, {"cifar10": 0.35}
WIDTHS, HIDDEN = (16, 32), 128
PARTS = ("sweep", "regularization", "lrn", "placement", "weight_norm")
ABLATION_TARGETS, ABLATION_TARGETS_BY_DATASET = (0.10, 0.03), {"cifar10": (0.5, 0.3)}
MARGIN = claims.AS_ACCURATE_MARGIN
NOISE_STEPS = 50  # the last steps whose training-loss spread is the noise
DDI_BATCH = 256  # training examples of the data-dependent initialization

# The variants of the comparisons: name -> (parts that need it, how it is built).
NO_NORM, BN, BN_REG, REG = "no norm", "BN", "BN + dropout + L2", "dropout + L2"
LRN, BN_LRN, AFTER, WN = "LRN", "BN + LRN", "ReLU then BN", "WN"
ABLATIONS = {
    NO_NORM: (("regularization",), {}),
    BN: (("regularization", "lrn", "placement", "weight_norm"), {"norm": "bn"}),
    BN_REG: (("regularization",), {"norm": "bn", "dropout": True, "l2": True}),
    REG: (("regularization",), {"dropout": True, "l2": True}),
    LRN: (("lrn",), {"lrn": True}),
    BN_LRN: (("lrn",), {"norm": "bn", "lrn": True}),
    AFTER: (("placement",), {"norm": "bn_after"}),
    WN: (("weight_norm",), {"norm": "wn"}),
}


@dataclass(frozen=True)
class Config(study.Config):
    lr: float = 0.1
    target: float = option(TARGET, per_dataset=TARGET_BY_DATASET, parse=cli.fraction,
                           help="training error the sweep's speed claim is timed to")
    ablation_targets: tuple[float, ...] = option(
        ABLATION_TARGETS, per_dataset=ABLATION_TARGETS_BY_DATASET,
        help="two training errors the comparisons are timed to (the first: WN vs BN wall time "
             "and init-scale sensitivity; both: the placement claim)")
    lrs: tuple[float, ...] = option((0.01, 0.03, 0.1, 0.3, 1.0), quick=(0.01, 1.0),
                                    help="learning rates swept")
    parts: tuple[str, ...] = option(PARTS, choices=PARTS,
                                    help="the parts to run (see the module docstring): the "
                                         "learning-rate sweep and the comparisons")
    ablation_lr: float = option(0.03, help="learning rate of the comparisons (every part but the sweep)")
    ablation_epochs: int = option(5, quick=1, per_dataset={"digits": 20},
                                  help="epochs of the comparisons")
    ablation_train_size: int | None = option(
        10000, per_dataset={"digits": None},
        help="training examples of the comparisons (a fixed subset; default: all of digits)")
    dropout: float = option(0.5, help="dropout rate of the '+ dropout + L2' variants, after the "
                                      "hidden dense layer")
    l2: float = option(5e-4, help="L2 penalty of the '+ dropout + L2' variants")
    init_scales: tuple[float, ...] = option((0.1, 10.0), quick=(10.0,),
                                            help="factors of the hidden kernels' initialization, "
                                                 "besides 1, for the init-scale sensitivity of "
                                                 "WN and BN")


def scaled_name(family: str, scale: float) -> str:
    return family if scale == 1 else f"{family} init x{scale:g}"


# ---------------------------------------------------------------------------------
# Checks





def _ablation_targets(f: claims.Findings) -> tuple[float, ...]:
    return tuple(f.facts.get("ablation_targets", ABLATION_TARGETS))


def _first(targets_by_dataset: dict) -> dict:
    return {name: targets[0] for name, targets in targets_by_dataset.items()}


def time_key(target: float) -> str:
    return f"time_to_{100 * target:g}"


def _by_lr(f: claims.Findings, base: str) -> dict:
    return f.facts["by"][base]


def _faster(f: claims.Findings) -> claims.Judgement:
    target = f.facts.get("target", TARGET)
    key, budget = report.target_key(target), f.facts["budget"]
    plain, bn = _by_lr(f, "plain"), _by_lr(f, "batchnorm")
    best = [(lr, claims.censored_mean(claims.get(f.table, plain[lr], key), budget)[0],
             claims.censored_mean(claims.get(f.table, bn[lr], key), budget)[0])
            for lr in sorted(set(plain) & set(bn))]
    p_best = min((p for _, p, _ in best if p is not None), default=None)
    b_best = min((b for _, _, b in best if b is not None), default=None)
    per_lr = ", ".join(f"lr {claims.fmt(lr)}: {claims.fmt(p)} vs {claims.fmt(b)}" for lr, p, b in best)
    if p_best is None and b_best is None:
        return claims.Judgement(claims.INCONCLUSIVE, f"neither reached {report.percent(target)}: " + per_lr)
    faster_bn = b_best is not None and (p_best is None or b_best < p_best)
    return claims.Judgement(
        claims.SUPPORTED if faster_bn else claims.CONTRADICTED,
        f"steps to {report.percent(target)}: best without BN {claims.fmt(p_best)}, with BN {claims.fmt(b_best)} "
        f"(per lr, plain vs "
        f"BN: {per_lr})", {"plain": p_best, "bn": b_best})


def _largest_stable(f: claims.Findings, base: str):
    ok = [lr for lr, name in _by_lr(f, base).items()
          if (claims.mean(claims.get(f.table, name, "stable")) or 0) >= 1]
    return max(ok) if ok else None


def _tolerates(f: claims.Findings) -> claims.Judgement:
    lp, lb = _largest_stable(f, "plain"), _largest_stable(f, "batchnorm")
    text = f"largest stable learning rate without BN {claims.fmt(lp)}, with BN {claims.fmt(lb)}"
    if lb is None:
        status = claims.INCONCLUSIVE if lp is None else claims.CONTRADICTED
    elif lp is None:
        status = claims.SUPPORTED
    else:
        status = claims.SUPPORTED if lb > lp else claims.INCONCLUSIVE if lb == lp else claims.CONTRADICTED
        if lb == lp:
            text += " (equal: the sweep did not reach a rate that separates them)"
    return claims.Judgement(status, text, {"plain": lp, "bn": lb})


def _get(f: claims.Findings, name: str, metric: str) -> list:
    return claims.get(f.table, name, metric)


def _missing(f: claims.Findings, *names: str) -> claims.Judgement | None:
    absent = [n for n in names if n not in f.table]
    if absent:
        return claims.Judgement(claims.INCONCLUSIVE, f"not measured: {', '.join(absent)} (see --parts)")
    return None


def _bn_not_worse_than(f: claims.Findings, *others: str) -> claims.Judgement:
    """BatchNorm alone's test accuracy is not worse than each of `others`'."""
    missing = _missing(f, BN, *others)
    if missing:
        return missing
    acc = functools.partial(_get, f, metric="test_accuracy")
    return claims.every([claims.not_worse(BN, acc(BN), o, acc(o)) for o in others],
                        [f"vs {o}" for o in others])


def _replaces_regularizers(f: claims.Findings) -> claims.Judgement:
    return _bn_not_worse_than(f, BN_REG, REG)


def _regularizes(f: claims.Findings) -> claims.Judgement:
    missing = _missing(f, BN, NO_NORM)
    if missing:
        return missing
    j = claims.smaller(BN, _get(f, BN, "gap"), NO_NORM, _get(f, NO_NORM, "gap"))
    others = ", ".join(f"{n} {claims.fmt(claims.mean(_get(f, n, 'gap')))}" for n in (REG, BN_REG) if n in f.table)
    return claims.Judgement(j.status, "train - test accuracy: " + j.evidence
                            + (f"; with the explicit regularizers: {others}" if others else ""), j.numbers)


def _lrn_unnecessary(f: claims.Findings) -> claims.Judgement:
    return _bn_not_worse_than(f, BN_LRN, LRN)


def _before_relu(f: claims.Findings) -> claims.Judgement:
    missing = _missing(f, BN, AFTER)
    if missing:
        return missing
    budget = f.facts.get("ablation_budget", 0)
    targets = _ablation_targets(f)
    parts = [claims.faster(f.table, [BN], [AFTER], report.target_key(t), budget) for t in targets]
    parts.append(claims.higher(BN, _get(f, BN, "test_accuracy"), AFTER,
                               _get(f, AFTER, "test_accuracy")))
    return claims.majority(parts, [f"steps to {report.percent(t)}" for t in targets] + ["test accuracy"])


def _wn_faster_per_step(f: claims.Findings) -> claims.Judgement:
    return _missing(f, WN, BN) or claims.smaller(
        f"{WN} s/step", _get(f, WN, "time_per_step"), f"{BN} s/step", _get(f, BN, "time_per_step"))


def _wn_sooner(f: claims.Findings) -> claims.Judgement:
    key = time_key(_ablation_targets(f)[0])
    missing = _missing(f, WN, BN)
    if missing:
        return missing
    return claims.faster(f.table, [WN], [BN], key, f.facts.get("time_budget", 0), unit="s")


def _wn_less_noisy(f: claims.Findings) -> claims.Judgement:
    return _missing(f, WN, BN) or claims.smaller(WN, _get(f, WN, "loss_noise"), BN, _get(f, BN, "loss_noise"))


def _bn_less_sensitive(f: claims.Findings) -> claims.Judgement:
    missing = _missing(f, WN, BN)
    if missing:
        return missing
    if not _get(f, BN, "init_acc_range") or not _get(f, WN, "init_acc_range"):
        return claims.Judgement(claims.INCONCLUSIVE, "no scaled initialization measured (see --init-scales)")
    parts = [claims.smaller(BN, _get(f, BN, metric), WN, _get(f, WN, metric))
             for metric in ("init_acc_range", "init_steps_ratio")]
    return claims.majority(parts, ["range of the test accuracy over the scales",
                                   f"largest / smallest steps to {report.percent(_ablation_targets(f)[0])} "
                                   "over the scales"])


CLAIMS = (
    claims.Claim(f"BatchNorm trains faster (fewer steps to {report.per_dataset_text(TARGET, TARGET_BY_DATASET)} "
                 "training error, each at "
                 "its best rate)", _faster),
    claims.Claim("BatchNorm tolerates larger learning rates (largest stable rate)", _tolerates),
    claims.Claim("with BatchNorm, dropout and L2 can be dropped: BN alone is as accurate on the test "
                 "set as BN + dropout + L2 and as dropout + L2 without BN (at most 0.5 points lower)",
                 _replaces_regularizers),
    claims.Claim("BatchNorm regularizes mildly: the gap between training and test accuracy is smaller "
                 "with BN than without", _regularizes),
    claims.Claim("BatchNorm makes local response normalization unnecessary: BN alone is as accurate "
                 "as BN + LRN and as LRN without BN (at most 0.5 points lower)", _lrn_unnecessary),
    claims.Claim("BatchNorm goes before the nonlinearity: conv-BN-ReLU trains faster and generalizes "
                 "better than conv-ReLU-BN (steps to "
                 f"{report.per_dataset_text(ABLATION_TARGETS, ABLATION_TARGETS_BY_DATASET)} training error, "
                 "test accuracy; by majority)", _before_relu),
    claims.Claim("weight normalization is faster per step than batch normalization (wall time per "
                 "training step)", _wn_faster_per_step),
    claims.Claim(f"weight normalization reaches "
                 f"{report.per_dataset_text(ABLATION_TARGETS[0], _first(ABLATION_TARGETS_BY_DATASET))} "
                 "training error in less "
                 "wall time than batch normalization", _wn_sooner),
    claims.Claim(f"weight normalization is less noisy than batch normalization (standard deviation "
                 f"of the training loss over the last {NOISE_STEPS} steps)", _wn_less_noisy),
    claims.Claim("batch normalization is less sensitive to the initialization scale than weight "
                 "normalization with its data-dependent initialization (hidden kernels' init x0.1, "
                 "x1, x10: range of the test accuracy and of the steps to "
                 f"{report.per_dataset_text(ABLATION_TARGETS[0], _first(ABLATION_TARGETS_BY_DATASET))}; "
                 "by majority)",
                 _bn_less_sensitive),
)


# ---------------------------------------------------------------------------------
# The networks of the comparisons


def _scaled(init, factor: float):
    """The initializer `init` times `factor`."""
    if factor == 1:
        return init

    def scaled_init(rng, shape, dtype=jnp.float32):
        return factor * init(rng, shape, dtype)

    return scaled_init


def with_data_init(model: fcnn.Layer, images) -> fcnn.Layer:
    """`model` whose init also runs the data-dependent initialization of its WeightNorm
    layers on `images` (one batch of training inputs)."""
    def init(rng, input_shape):
        out_shape, params, state = model.init(rng, input_shape)
        return out_shape, data_dependent_init(model, params, state, images), state

    return model._replace(init=init, name=f"{model.name} [data-dependent init]")


def ablation_net(num_classes: int, *, norm: str | None = None, lrn: bool = False, dropout: float = 0.0,
                 scale: float = 1.0, images=None) -> fcnn.Layer:
    """[conv 3x3 - norm/act - (LRN) - maxpool 2] per width, flatten, dense - norm/act -
    (dropout), dense classes.

    norm: None (conv - ReLU), "bn" (conv - BN - ReLU), "bn_after" (conv - ReLU - BN) or
    "wn" (WeightNorm(conv) - ReLU, with the data-dependent init on `images`). `scale`
    multiplies the hidden kernels' LeCun-normal initialization (not the output layer's).
    """
    init = _scaled(initializers.lecun_normal, scale)

    def block(layer):
        if norm == "wn":
            return [fcnn.WeightNorm(layer), fcnn.Relu()]
        if norm == "bn":
            return [layer, fcnn.BatchNorm(), fcnn.Relu()]
        if norm == "bn_after":
            return [layer, fcnn.Relu(), fcnn.BatchNorm()]
        return [layer, fcnn.Relu()]

    layers = []
    for width in WIDTHS:
        layers += block(fcnn.Conv(width, 3, padding="SAME", kernel_init=init))
        if lrn:
            layers.append(fcnn.LRN())  # AlexNet: after the ReLU, before the pooling
        layers.append(fcnn.MaxPool(2))
    layers += [fcnn.Flatten(), *block(fcnn.Dense(HIDDEN, kernel_init=init))]
    if dropout:
        layers.append(fcnn.Dropout(dropout))
    layers.append(fcnn.Dense(num_classes))
    model = fcnn.serial(*layers)
    return with_data_init(model, images) if norm == "wn" else model


def ablation_specs(c) -> dict[str, dict]:
    """name -> build options of the comparisons the chosen parts need."""
    specs = {name: dict(kw) for name, (parts, kw) in ABLATIONS.items() if set(parts) & set(c.parts)}
    if "weight_norm" in c.parts:
        for family, norm in ((BN, "bn"), (WN, "wn")):
            for scale in sorted(set(c.init_scales) - {1.0}):
                specs[scaled_name(family, scale)] = {"norm": norm, "scale": scale}
    return specs


def scale_sensitivity(table, by_scale: Mapping[float, str], budget: float, target: float) -> dict[str, list]:
    """Per seed: the range (max - min) of the test accuracy over the scales, and the
    ratio of the largest to the smallest steps to `target` (unreached: budget)."""
    key = report.target_key(target)
    names = [by_scale[s] for s in sorted(by_scale)]
    accs = [claims.get(table, n, "test_accuracy") for n in names]
    steps = [[budget if v is None else v for v in claims.get(table, n, key)] for n in names]
    acc_range = [None if any(v is None for v in seed) else max(seed) - min(seed) for seed in zip(*accs)]
    # a seed that reached the target at no scale has no ratio; unreached scales count
    # as the budget (the ratio is then a lower bound)
    ratio = [None if all(v is None for v in raw) or min(seed) <= 0 else max(seed) / min(seed)
             for seed, raw in zip(zip(*steps), zip(*(claims.get(table, n, key) for n in names)))]
    return {"init_acc_range": acc_range, "init_steps_ratio": ratio}


# ---------------------------------------------------------------------------------
# Plots


def draw(session, results, table, by, lrs, budget) -> list:
    target = session.config.target
    key = report.target_key(target)
    fig, axes = plots.figure(1, 2)
    for i, (base, by_lr) in enumerate(by.items()):
        xs = sorted(by_lr)
        steps = np.array([[budget * 1.05 if v is None else v for v in table[by_lr[lr]][key]] for lr in xs],
                         float).T
        plots.band(axes[0], xs, steps, label=base, index=i)
        loss = np.array([[np.nan if v is None else v for v in table[by_lr[lr]]["final_train_loss"]]
                         for lr in xs], float).T
        plots.band(axes[1], xs, loss, label=base, index=i, logy=True)
    axes[0].axhline(budget, color="black", linestyle=":", linewidth=0.8, label="budget (not reached above)")
    plots.finish(axes[0], xlabel="learning rate", ylabel=f"steps to {report.percent(target)} training error",
                 title="Steps to the target", logx=True, logy=True)
    plots.finish(axes[1], xlabel="learning rate", ylabel="final training loss",
                 title="Final training loss (diverged runs left out)", logx=True, logy=True)
    dataset = session.config.dataset
    fig.suptitle(f"BatchNorm vs plain across learning rates ({dataset})")
    mid = min(lrs, key=lambda lr: abs(np.log(lr / 0.1)))
    return [(plots.save(fig, session.path("batchnorm_lr.png")),
             "steps to target and final loss vs learning rate"),
            plots.training_error(session.path("train_error.png"),
                                 {f"{b} lr={mid:g}": results[by[b][mid]] for b in by},
                                 study="batchnorm", dataset=dataset, targets=(target,),
                                 title=f"Training error at lr={mid:g} ({dataset})")]


def draw_ablation(session, results, table, scales) -> list:
    dataset = session.config.dataset
    names = [n for n in results]
    fig, axes = plots.figure(1, 2, width=max(7.0, 0.9 * len(names)))
    for ax, metric, ylabel in ((axes[0], "test_accuracy", "test accuracy"),
                               (axes[1], "gap", "train - test accuracy")):
        plots.grouped_bars(ax, names, {ylabel: [table[n].get(metric, []) for n in names]},
                           ylabel=ylabel, title=f"{ylabel} (bar: mean, line: min-max over seeds)",
                           xlabel="variant", legend=False)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
            label.set_horizontalalignment("right")
    fig.suptitle(f"BatchNorm against the other normalizations and regularizers ({dataset})")
    out = [(plots.save(fig, session.path("comparisons.png")), "test accuracy and gap of the comparisons")]
    out.append(plots.training_error(session.path("comparisons_train_error.png"), results, study="batchnorm",
                                    dataset=dataset, targets=session.config.ablation_targets,
                                    title=f"Training error of the comparisons ({dataset})"))
    if scales and all(len(by) > 1 for by in scales.values()):
        fig, axes = plots.figure(1, 2)
        key = report.target_key(session.config.ablation_targets[0])
        for i, (family, by_scale) in enumerate(scales.items()):
            xs = sorted(by_scale)
            for ax, metric in ((axes[0], "test_accuracy"), (axes[1], key)):
                runs = np.array([[np.nan if v is None else v for v in table[by_scale[s]].get(metric, [])]
                                 for s in xs], float).T
                plots.band(ax, xs, runs, label=family, index=i)
        plots.finish(axes[0], xlabel="scale of the hidden kernels' initialization", ylabel="test accuracy",
                     title="Test accuracy against the init scale", logx=True)
        plots.finish(axes[1], xlabel="scale of the hidden kernels' initialization",
                     ylabel=f"steps to {report.percent(session.config.ablation_targets[0])} (gaps: not reached)",
                     title="Steps to the target against the init scale", logx=True)
        fig.suptitle(f"Weight normalization (data-dependent init) vs BatchNorm ({dataset})")
        out.append((plots.save(fig, session.path("init_scale.png")),
                    "test accuracy and steps to the target against the initialization scale"))
    return out


# ---------------------------------------------------------------------------------
# The run


def run_sweep(session: study.Session) -> tuple[dict, dict, dict, int]:
    c = session.config
    lrs = tuple(sorted(c.lrs))
    num_classes = session.data.get().num_classes
    results = session.train([Variant(name=name, model=refnet(num_classes, "relu", widths=WIDTHS,
                                                             hidden=HIDDEN, batchnorm=bn),
                                     lr=lrs, info={"batchnorm": bn})
                             for name, bn in (("plain", False), ("batchnorm", True))],
                            targets=(c.target,))
    by: dict[str, dict[float, str]] = {"plain": {}, "batchnorm": {}}
    for name, r in results.items():
        by[r.base][r.lr] = name
    budget = max(r.total_steps for r in results.values())
    metrics = {name: {"lr": [r.lr] * len(r.seeds)} for name, r in results.items()}
    return results, by, metrics, budget


def run_ablation(session: study.Session) -> tuple[dict, dict, dict]:
    c = session.config
    ds = session.data.get()
    images = jnp.asarray(subsample(ds.train, c.ablation_train_size, seed=SUBSET_SEED).images[:DDI_BATCH])
    variants = []
    for name, spec in ablation_specs(c).items():
        optimizer = functools.partial(optimizers.momentum, l2=c.l2) if spec.get("l2") else optimizers.momentum
        model = ablation_net(ds.num_classes, norm=spec.get("norm"), lrn=spec.get("lrn", False),
                             dropout=c.dropout if spec.get("dropout") else 0.0,
                             scale=spec.get("scale", 1.0), images=images)
        variants.append(Variant(name=name, model=model, lr=c.ablation_lr, optimizer=optimizer,
                                epochs=c.ablation_epochs, train_size=c.ablation_train_size,
                                eval_train=True, info=dict(spec, l2=c.l2 if spec.get("l2") else 0.0)))
    results = session.train(variants, targets=c.ablation_targets) if variants else {}
    metrics = {}
    for name, r in results.items():
        window = min(NOISE_STEPS, r.total_steps)
        m = metrics[name] = {"lr": [r.lr] * len(r.seeds),
                             "loss_noise": [float(np.std(row[-window:])) for row in r.step["loss"]]}
        for t in c.ablation_targets:
            m[time_key(t)] = probes.time_to(r, session.table[name][report.target_key(t)])
    scales = {}
    if "weight_norm" in c.parts:
        all_scales = sorted(set(c.init_scales) | {1.0})
        scales = {family: {s: scaled_name(family, s) for s in all_scales} for family in (BN, WN)}
        if len(all_scales) > 1:
            budget = max(r.total_steps for r in results.values())
            for family, by_scale in scales.items():
                metrics[family].update(scale_sensitivity(session.table, by_scale, budget,
                                                                   c.ablation_targets[0]))
    return results, metrics, scales


def run(session: study.Session) -> study.Outcome:
    c = session.config
    outcome_plots, metrics = [], {}
    facts = {"by": {"plain": {}, "batchnorm": {}}, "budget": 0, "target": c.target,
             "ablation_targets": c.ablation_targets}
    if "sweep" in c.parts:
        results, by, sweep_metrics, budget = run_sweep(session)
        metrics.update(sweep_metrics)
        facts.update(by=by, budget=budget)
        outcome_plots += draw(session, results, session.table, by, tuple(sorted(c.lrs)), budget)
    ablation, ablation_metrics, scales = run_ablation(session)
    metrics.update(ablation_metrics)
    if ablation:
        facts.update(ablation_budget=max(r.total_steps for r in ablation.values()),
                     time_budget=max(float(np.max(r.train_time)) for r in ablation.values()),
                     scales=scales)
        for name, values in ablation_metrics.items():  # merged now, so the plots see them
            session.table[name].update(values)
        outcome_plots += draw_ablation(session, ablation, session.table, scales)
    n_sub = min(c.ablation_train_size or 10 ** 9, session.data.get().train.labels.shape[0])
    n_ddi = min(DDI_BATCH, n_sub)
    return study.Outcome(
        metrics=metrics,
        columns=[report.LEARNING_RATE, report.steps_to_column(c.target),
                 report.steps_to_column(c.ablation_targets[1]),
                 report.Column("stable", "stable", ".2f"), report.FINAL_TRAIN_LOSS,
                 report.TEST_ACCURACY, report.Column("gap", "gap (train - test)", ".4f"),
                 report.Column("time_per_step", "s/step", ".3g"),
                 report.Column("loss_noise", f"loss std (last {NOISE_STEPS} steps)", ".3g"),
                 report.Column("init_acc_range", "test acc range over init scales", ".3g"),
                 report.Column("init_steps_ratio", "steps ratio over init scales", ".3g")],
        facts=facts,
        notes=[f"sweep: refnet widths {WIDTHS}, hidden {HIDDEN}, SGD momentum 0.9; stable = finite and "
               f"final training loss <= {STABLE_FRACTION:g} x the initial one.",
               f"comparisons: the same layout, lr {c.ablation_lr:g}, {c.ablation_epochs} epoch(s) of "
               f"{n_sub} training examples; dropout {c.dropout:g} after the hidden dense layer, L2 "
               f"{c.l2:g} on the kernels; LRN = fcnn.LRN() (AlexNet: n 5, k 2, alpha 1e-4, beta 0.75) "
               f"after each conv ReLU; WN = WeightNorm around the hidden conv and dense layers with "
               f"the data-dependent init on {n_ddi} training examples; init scales multiply the "
               f"hidden kernels' LeCun-normal draws. s/step is wall time (shared CPU: noisy)."],
        plots=outcome_plots)


def check(config, data) -> None:
    del data
    if not 0 < config.dropout < 1:
        raise UsageError(f"--dropout {config.dropout:g}: expected a rate in (0, 1)")
    if len(config.ablation_targets) != 2 or not all(0 < t < 1 for t in config.ablation_targets):
        raise UsageError(f"--ablation-targets {','.join(map(str, config.ablation_targets))}: expected two "
                         "training errors in (0, 1)")


STUDY = study.Study(
    name="batchnorm",
    description="The reference CNN with and without BatchNorm across learning rates (steps to "
                "target, largest stable rate); BatchNorm against dropout + L2, LRN, its placement "
                "after the ReLU and weight normalization.",
    config=Config, claims=CLAIMS, run=run, check=check,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
