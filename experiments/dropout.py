"""Study 4: dropout against overfitting, its best rates, its recipe, and weight scaling.

    python -m experiments.dropout [--train-size 300] [--rates 0,0.2,0.5]
        [--hidden-rates 0,0.2,0.35,0.5,0.65,0.8] [--input-rates 0,0.1,0.2,0.3,0.5]
        [--mc-samples 1,2,5,10,20,50,100]

An MLP (2 hidden layers) is trained long on a small training subset, so that it
overfits (Srivastava et al., 2014, "Dropout: a simple way to prevent neural networks
from overfitting", JMLR 15):

  * the gap: dropout rates 0, 0.2 and 0.5 on the hidden units, each with and without
    the max-norm constraint (every unit's incoming weight vector kept at norm <= 3
    after each update). The gap between training and test accuracy (both measured in
    evaluation mode) shows the overfitting; the claim is that dropout narrows it.
  * the rates: a sweep of hidden rates (inputs kept) and one of input rates (hidden
    rate 0.5). Claim (section 7.3 and Appendix A.4): 0.5 is near-optimal for hidden
    units and 0.2 for inputs; judged on the final test accuracy, the best rate within
    one grid step of 0.5 (0.2), inconclusive when rates farther away are within the
    spread over seeds of the best.
  * the recipe (Appendix A): dropout 0.5 with max-norm, a learning rate decaying
    exponentially to 1% of its start and momentum 0.95, against dropout alone and no
    dropout (test accuracy).
  * weight scaling (section 7.5): the rate-0.5 network, evaluated deterministically
    (inverted dropout: the same as scaling the weights by the keep probability),
    against the Monte-Carlo average of the softmax outputs of k sampled thinned
    networks (train=True with k different rngs, parameters fixed), k = 1, 2, 5, 10,
    20, 50, 100: the test accuracy, the share of test examples where both predict the
    same class, and the mean KL(weight-scaled || MC average).

Run time: on MNIST (1000 training examples, 30 epochs, 3 seeds, 14 variants of small
MLPs, the seeds vmapped) about 5-10 minutes on 2 CPU cores, most of it the per-epoch
evaluations on the 10,000 test images and the 100-mask averages; the digits default
about 2 minutes; --quick 10-20 seconds.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.ticker import NullFormatter

from fcnn import program, schedules
from fcnn.cli import UsageError
from fcnn.models import mlp
from fcnn.train import optimizers, population

from experiments.core import claims, plots, report, study
from experiments.core.study import option
from experiments.core.training import Variant

DEPTH = 2
HIDDEN_BEST, INPUT_BEST = 0.5, 0.2  # the notes' near-optimal rates
INPUT_SWEEP_HIDDEN = 0.5  # the hidden rate of the input-rate sweep
MC_RATE = 0.5  # the network whose thinned sub-networks are averaged
MC_SEED = 10_000  # mask keys of the Monte-Carlo average: PRNGKey(MC_SEED + seed)
MC_CHUNK = 2000  # test examples per compiled Monte-Carlo call
MC_ACCURACY_TOLERANCE = 0.01  # "converges": the MC accuracy at the largest k within 1 point
MC_MAX_SAMPLES = 1000
RECIPE_DECAY = 0.01  # the recipe's learning rate falls to 1% of its start
COLLAPSED = 1.5  # a training accuracy below 1.5x chance: the variant never learned


def rate_list(text: str):
    """An argparse type: comma-separated dropout rates in [0, 1)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        rates = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers in [0, 1)") from None
    if not rates or any(not 0 <= r < 1 for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: every dropout rate must be in [0, 1)")
    return rates


def momentum_value(text: str) -> float:
    """An argparse type: a momentum in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a momentum in [0, 1)") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a momentum in [0, 1)")
    return value


@dataclass(frozen=True)
class Config(study.Config):
    epochs: int = option(30, per_dataset={"digits": 60})
    batch_size: int = option(32, per_dataset={})
    rates: tuple[float, ...] = option((0.0, 0.2, 0.5), quick=(0.0, 0.5), parse=rate_list,
                                      metavar="R,S,...",
                                      help="dropout rates (probability of dropping a unit)")
    train_size: int = option(1000, per_dataset={"digits": 300, "cifar10": 2000},
                             help="training examples used, to force overfitting")
    max_norm: float = option(3.0, help="the max-norm bound of the constrained variants")
    width: int = option(256, quick=32, help="units per hidden layer")
    hidden_rates: tuple[float, ...] = option(
        (0.0, 0.2, 0.35, 0.5, 0.65, 0.8), quick=(0.0, 0.5), parse=rate_list, metavar="R,S,...",
        help="hidden-unit dropout rates swept, inputs kept (the best-rate claim; 0.5 is "
             "always trained)")
    input_rates: tuple[float, ...] = option(
        (0.0, 0.1, 0.2, 0.3, 0.5), quick=(0.0, 0.2), parse=rate_list, metavar="R,S,...",
        help="input dropout rates swept, hidden rate 0.5")
    recipe_lr: float = option(0.05, per_dataset={"cifar10": 0.01},
                              help="initial learning rate of the recipe variant (dropout + max-norm "
                                   "+ decay + momentum), decaying exponentially to 1/100 of it "
                                   "(CIFAR-10: 0.01; at 0.05 every seed collapsed to chance)")
    recipe_momentum: float = option(0.95, parse=momentum_value,
                                    help="momentum of the recipe variant (the notes: 0.95-0.99)")
    mc_samples: tuple[int, ...] = option((1, 2, 5, 10, 20, 50, 100), quick=(1, 2, 5),
                                         help="numbers k of sampled dropout masks whose softmax "
                                              "outputs are averaged")


def name_of(rate: float, max_norm: bool) -> str:
    return f"rate={rate:g}" + (" +max-norm" if max_norm else "")


def input_name(rate: float) -> str:
    """The input-sweep variant; input rate 0 is the hidden-rate-0.5 network itself."""
    return name_of(INPUT_SWEEP_HIDDEN, False) if rate == 0 else f"input={rate:g} rate={INPUT_SWEEP_HIDDEN:g}"


def recipe_name(momentum: float) -> str:
    return f"rate=0.5 +max-norm +decay +momentum {momentum:g}"


def mc_name(k: int) -> str:
    return f"MC average k={k} (rate={MC_RATE:g})"


# ---------------------------------------------------------------------------------
# Checks


def best_rate_near(table, by_rate: Mapping[float, str], expected: float,
                   metric: str = "test_accuracy") -> claims.Judgement:
    """The rate with the best mean `metric` lies within one grid step of `expected`.

    The rates whose mean is within the seed spread of the best (the best's spread plus
    their own) are tied with it: supported when every tied rate is within one step of
    `expected` in the sorted grid, contradicted when none is, inconclusive otherwise.
    """
    means = {r: claims.mean(claims.get(table, n, metric)) for r, n in by_rate.items() if n in table}
    rates = sorted(r for r, m in means.items() if m is not None)
    if expected not in rates or len(rates) < 2:
        return claims.Judgement(claims.INCONCLUSIVE,
                                f"rate {claims.fmt(expected)} and another not both measured "
                                f"(measured: {', '.join(claims.fmt(r) for r in rates) or 'none'})")
    spreads = {r: claims.spread(claims.get(table, by_rate[r], metric)) for r in rates}
    best = max(rates, key=means.get)
    tied = [r for r in rates if means[best] - means[r] <= spreads[best] + spreads[r]]
    centre = rates.index(expected)
    near = [r for i, r in enumerate(rates) if abs(i - centre) <= 1]
    text = (f"{metric} by rate: " + ", ".join(f"{claims.fmt(r)}: {claims.fmt(means[r])}" for r in rates)
            + f"; best {claims.fmt(best)}; within the seed spread of the best: "
            + ", ".join(claims.fmt(r) for r in tied)
            + f"; within one grid step of {claims.fmt(expected)}: " + ", ".join(claims.fmt(r) for r in near))
    numbers = {"best": best, "tied": tied, "near": near, "means": means}
    if all(r in near for r in tied):
        return claims.Judgement(claims.SUPPORTED, text, numbers)
    if not any(r in near for r in tied):
        return claims.Judgement(claims.CONTRADICTED, text, numbers)
    return claims.Judgement(claims.INCONCLUSIVE, text + " (rates on both sides of the claim "
                                                       "within the spread)", numbers)


def _narrower_gap(f: claims.Findings) -> claims.Judgement:
    baseline = f.facts["baseline"]
    dropped = [n for n in f.facts["dropped"] if n in f.table]
    if not dropped:
        return claims.Judgement(claims.INCONCLUSIVE, f"no rate above the baseline {baseline} measured")
    gap = lambda n: claims.get(f.table, n, "gap")  # noqa: E731
    return claims.majority([claims.smaller(n, gap(n), baseline, gap(baseline)) for n in dropped],
                           dropped)


def _sweep(key: str, expected: float):
    def check(f: claims.Findings) -> claims.Judgement:
        by_rate = f.facts.get(key)
        if not by_rate:
            return claims.Judgement(claims.INCONCLUSIVE, "no rate sweep measured")
        return best_rate_near(f.table, by_rate, expected)
    return check


def _recipe_best(f: claims.Findings) -> claims.Judgement:
    names = f.facts.get("recipe")
    if not names or not all(n in f.table for n in names.values()):
        return claims.Judgement(claims.INCONCLUSIVE, "the recipe, dropout alone or no dropout not measured")
    acc = lambda n: claims.get(f.table, n, "test_accuracy")  # noqa: E731
    recipe = names["recipe"]
    chance = f.facts.get("chance")
    trained = claims.mean(claims.get(f.table, recipe, "train_accuracy"))
    if chance is not None and trained is not None and trained < COLLAPSED * chance:
        # a recipe that never learned says its learning rate was wrong, not that the recipe fails
        return claims.Judgement(claims.INCONCLUSIVE, (
            f"the recipe variant collapsed: training accuracy {claims.fmt(trained)} at chance "
            f"{claims.fmt(chance)}; its learning rate is too high for this setting (--recipe-lr)"))
    return claims.every([claims.higher(recipe, acc(recipe), names[other], acc(names[other]))
                         for other in ("dropout", "plain")], ["vs dropout alone", "vs no dropout"])


def _mc_converges(f: claims.Findings) -> claims.Judgement:
    mc = f.facts.get("mc")
    if not mc or mc["ws"] not in f.table:
        return claims.Judgement(claims.INCONCLUSIVE, "Monte-Carlo averaging not measured")
    by_k = {int(k): n for k, n in mc["samples"].items() if n in f.table}
    ks = sorted(by_k)
    if len(ks) < 2:
        return claims.Judgement(claims.INCONCLUSIVE, "fewer than two numbers of samples measured")
    first, last, ws = by_k[ks[0]], by_k[ks[-1]], mc["ws"]
    acc = lambda n: claims.get(f.table, n, "test_accuracy")  # noqa: E731
    kl = lambda n: claims.get(f.table, n, "kl")  # noqa: E731
    gaps = [None if a is None or b is None else a - b for a, b in zip(acc(last), acc(ws))]
    parts = [claims.smaller(f"k={ks[-1]}", kl(last), f"k={ks[0]}", kl(first)),
             claims.within(f"MC accuracy at k={ks[-1]} minus the weight-scaled accuracy", gaps,
                           -MC_ACCURACY_TOLERANCE, MC_ACCURACY_TOLERANCE)]
    j = claims.every(parts, ["mean KL of the MC average from the weight-scaled prediction", "accuracy"])
    curve = ", ".join(f"{k}: {claims.fmt(claims.mean(acc(by_k[k])))}" for k in ks)
    agree = ", ".join(f"{k}: {claims.fmt(claims.mean(claims.get(f.table, by_k[k], 'agreement')))}"
                      for k in ks)
    return claims.Judgement(
        j.status, f"test accuracy of the MC average by k: {curve}; weight-scaled "
                  f"{claims.fmt(claims.mean(acc(ws)))}; same class as weight scaling by k: {agree}; "
                  + j.evidence, j.numbers)


CLAIMS = (
    claims.Claim("dropout narrows the gap between training and test accuracy (each rate "
                 "against the smallest rate trained, 0 by default)", _narrower_gap),
    claims.Claim("a dropout rate of 0.5 is near-optimal for hidden units (the best test accuracy "
                 "within one grid step of 0.5)", _sweep("hidden_sweep", HIDDEN_BEST)),
    claims.Claim("a dropout rate of 0.2 is near-optimal for input units (the best test accuracy "
                 "within one grid step of 0.2, hidden rate 0.5)", _sweep("input_sweep", INPUT_BEST)),
    claims.Claim("dropout works best with max-norm, a decaying learning rate and high momentum "
                 "(0.95-0.99): the four together reach a higher test accuracy than dropout alone "
                 "and than no dropout", _recipe_best),
    claims.Claim("weight scaling approximates averaging the 2^n thinned networks: the Monte-Carlo "
                 "average of k sampled dropout networks converges to the weight-scaled network's "
                 "prediction as k grows (mean KL falls from the smallest to the largest k, and the "
                 "test accuracy ends within 1 point of the weight-scaled one)", _mc_converges),
)


# ---------------------------------------------------------------------------------
# Weight scaling against Monte-Carlo averaging


def _mc_program(model, samples: Sequence[int]):
    """chunk -> (correct per k, same class as weight scaling per k, summed KL per k,
    weight-scaled correct), one compiled call; the k-sample averages are running
    means over one stream of masks, so k = 100 extends k = 50."""
    ks = jnp.asarray(samples)
    count = max(samples)

    def stats(params, state, images, labels, key):
        def probs(train, rng=None):
            return jax.nn.softmax(model.apply(params, state, images, train=train, rng=rng)[0])

        p_ws = probs(False)

        def add(total, j):
            total = total + probs(True, jax.random.fold_in(key, j))
            return total, total

        _, totals = jax.lax.scan(add, jnp.zeros_like(p_ws), jnp.arange(count))
        p_mc = totals[ks - 1] / ks.astype(p_ws.dtype)[:, None, None]  # (K, N, C)
        mc_class, ws_class = jnp.argmax(p_mc, -1), jnp.argmax(p_ws, -1)
        tiny = jnp.finfo(p_ws.dtype).tiny
        kl = jnp.sum(p_ws[None] * (jnp.log(p_ws + tiny)[None] - jnp.log(p_mc + tiny)), axis=-1)
        return ((mc_class == labels[None]).sum(-1), (mc_class == ws_class[None]).sum(-1), kl.sum(-1),
                (ws_class == labels).sum())

    return jax.jit(stats)


def mc_average(result, images, labels, samples: Sequence[int]) -> dict[int, dict[str, list]]:
    """Per k: per-seed test accuracy of the k-sample average, the share of examples
    where it predicts the weight-scaled network's class, and the mean KL(weight-scaled
    || MC average); under key 0 the weight-scaled accuracy (a check: it is the
    evaluation-mode test accuracy)."""
    samples = sorted(set(int(k) for k in samples))
    program_ = _mc_program(result.model, samples)
    labels = np.asarray(labels)
    n = labels.shape[0]
    out = {k: {"test_accuracy": [], "agreement": [], "kl": []} for k in samples}
    out[0] = {"test_accuracy": []}
    for i, seed in enumerate(result.seeds):
        params, state = population.member(result.params, i), population.member(result.state, i)
        key = jax.random.PRNGKey(MC_SEED + seed)
        sums = np.zeros((3, len(samples)))
        ws_correct = 0
        for c, begin in enumerate(range(0, n, MC_CHUNK)):
            chunk = slice(begin, begin + MC_CHUNK)
            correct, agree, kl, ws = program_(params, state, images[chunk], labels[chunk],
                                              jax.random.fold_in(key, c))
            sums += np.asarray([correct, agree, kl], np.float64)
            ws_correct += int(ws)
        for j, k in enumerate(samples):
            out[k]["test_accuracy"].append(sums[0, j] / n)
            out[k]["agreement"].append(sums[1, j] / n)
            out[k]["kl"].append(sums[2, j] / n)
        out[0]["test_accuracy"].append(ws_correct / n)
    return out


# ---------------------------------------------------------------------------------
# Plots


def _final(result, key="test_accuracy"):
    return result.epoch[key][:, -1]


def draw_sweeps(path, results, hidden: Mapping[float, str], inputs: Mapping[float, str], dataset: str):
    fig, axes = plots.figure(1, 2)
    for ax, by_rate, label, best, title in (
            (axes[0], hidden, "hidden units (inputs kept)", HIDDEN_BEST, "Hidden-unit dropout rate"),
            (axes[1], inputs, f"input units (hidden rate {INPUT_SWEEP_HIDDEN:g})", INPUT_BEST,
             "Input dropout rate")):
        rates = sorted(r for r, n in by_rate.items() if n in results)
        if rates:
            runs = np.stack([_final(results[by_rate[r]]) for r in rates], axis=1)
            plots.band(ax, rates, runs, label=label, index=0)
            ax.plot(rates, runs.mean(axis=0), "o", color=plots.color(0))
        ax.axvline(best, color="black", linestyle=":", linewidth=0.8, label=f"the notes: {best:g}")
        plots.finish(ax, xlabel="dropout rate (probability of dropping)", ylabel="final test accuracy",
                     title=title)
    fig.suptitle(f"Test accuracy against the dropout rate ({dataset}; band: min-max over seeds)")
    return plots.save(fig, path), "final test accuracy against the hidden and the input dropout rate"


def draw_mc(path, mc: Mapping[int, Mapping[str, list]], dataset: str):
    ks = sorted(k for k in mc if k > 0)
    fig, axes = plots.figure(1, 2)
    for ax, metric, ylabel in ((axes[0], "test_accuracy", "test accuracy"),
                               (axes[1], "agreement", "same class as weight scaling")):
        runs = np.array([mc[k][metric] for k in ks], float).T
        plots.band(ax, ks, runs, label="MC average of k thinned networks", index=0)
        ax.plot(ks, runs.mean(axis=0), "o", color=plots.color(0))
        level = float(np.mean(mc[0]["test_accuracy"])) if metric == "test_accuracy" else 1.0
        ax.axhline(level, color=plots.color(1), linestyle="--", linewidth=1.2,
                   label="weight-scaled network" if metric == "test_accuracy" else "identical")
        plots.finish(ax, xlabel="k, sampled dropout masks averaged (log scale)", ylabel=ylabel,
                     title=f"{ylabel} against k", logx=True)
        ax.set_xticks(ks, [str(k) for k in ks], minor=False)
        ax.xaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(f"Weight scaling vs Monte-Carlo model averaging, rate {MC_RATE:g} ({dataset})")
    return plots.save(fig, path), "MC-averaged accuracy against k, with the weight-scaled accuracy"


# ---------------------------------------------------------------------------------
# The run


def run(session: study.Session) -> study.Outcome:
    c = session.config
    norms = (False,) if c.quick else (False, True)
    rates = tuple(sorted(c.rates))  # the smallest is the baseline the others are held against
    hidden_rates = tuple(sorted(set(c.hidden_rates) | {HIDDEN_BEST}))
    num_classes = session.data.get().num_classes
    common = dict(train_size=c.train_size, eval_train=True)

    def net(rate, input_rate=0.0):
        return mlp(num_classes, "relu", depth=DEPTH, width=c.width, dropout=rate, input_dropout=input_rate)

    variants = [Variant(name=name_of(rate, constrained), model=net(rate),
                        optimizer=functools.partial(optimizers.momentum, max_norm=c.max_norm)
                        if constrained else optimizers.momentum,
                        info={"rate": rate, "max_norm": constrained}, **common)
                for constrained in norms for rate in rates]
    # the hidden-rate sweep (rates already trained above are reused)
    variants += [Variant(name=name_of(rate, False), model=net(rate), info={"rate": rate}, **common)
                 for rate in hidden_rates if rate not in rates]
    variants += [Variant(name=input_name(r), model=net(INPUT_SWEEP_HIDDEN, r),
                         info={"rate": INPUT_SWEEP_HIDDEN, "input_rate": r}, **common)
                 for r in sorted(c.input_rates) if input_name(r) not in {v.name for v in variants}]
    variants.append(Variant(
        name=recipe_name(c.recipe_momentum), model=net(HIDDEN_BEST),
        optimizer=functools.partial(optimizers.momentum, momentum=c.recipe_momentum, max_norm=c.max_norm),
        schedule=lambda total: schedules.exponential_decay(c.recipe_lr, max(total, 1), RECIPE_DECAY),
        info={"rate": HIDDEN_BEST, "max_norm": True, "lr_start": c.recipe_lr,
              "lr_end": c.recipe_lr * RECIPE_DECAY, "momentum": c.recipe_momentum}, **common))
    results = session.train(variants)

    ds = session.data.get()
    mc = mc_average(results[name_of(MC_RATE, False)], ds.test.images, ds.test.labels, c.mc_samples)
    metrics = {mc_name(k): mc[k] for k in sorted(mc) if k > 0}
    n_train = min(c.train_size, ds.train.labels.shape[0])
    return study.Outcome(
        metrics=metrics,
        columns=[report.Column("train_accuracy", "train acc", ".4f"), report.TEST_ACCURACY,
                 report.Column("gap", "gap (train - test)", ".4f"),
                 report.Column("test_loss", "test loss", ".3f"),
                 report.Column("agreement", "same class as weight scaling", ".4f"),
                 report.Column("kl", "KL from weight scaling", ".3g")],
        facts={"baseline": name_of(rates[0], False), "chance": 1.0 / ds.num_classes,
               "dropped": [name_of(r, n) for n in norms for r in rates if r > rates[0] or n],
               "hidden_sweep": {r: name_of(r, False) for r in hidden_rates},
               "input_sweep": {r: input_name(r) for r in sorted(c.input_rates)},
               "recipe": {"recipe": recipe_name(c.recipe_momentum), "dropout": name_of(HIDDEN_BEST, False),
                          "plain": name_of(0.0, False) if 0.0 in rates + hidden_rates else None},
               "mc": {"ws": name_of(MC_RATE, False), "samples": {k: mc_name(k) for k in mc if k > 0}}},
        notes=[f"MLP: {DEPTH} hidden layers of {c.width} units, dropout after each (and on the inputs "
               f"in the input sweep, hidden rate {INPUT_SWEEP_HIDDEN:g}); {n_train} training examples; "
               f"SGD momentum 0.9, lr {c.lr:g}; max-norm bound {c.max_norm:g}.",
               f"Recipe: dropout {HIDDEN_BEST:g}, max-norm {c.max_norm:g}, lr {c.recipe_lr:g} decaying "
               f"exponentially to {c.recipe_lr * RECIPE_DECAY:g}, momentum {c.recipe_momentum:g}.",
               f"MC rows: the trained rate-{MC_RATE:g} network, the softmax of k sampled thinned "
               f"networks averaged on the test set (masks PRNGKey({MC_SEED} + seed)); the "
               f"weight-scaled network is its evaluation mode (test acc of {name_of(MC_RATE, False)}, "
               f"recomputed: {claims.fmt(claims.mean(mc[0]['test_accuracy']), 4)})."],
        plots=[plots.epoch_metric(session.path("test_accuracy.png"), results, "test_accuracy",
                                  ylabel="test accuracy", study="dropout", dataset=c.dataset),
               plots.epoch_metric(session.path("train_accuracy.png"), results, "train_accuracy",
                                  ylabel="training accuracy (evaluation mode)", study="dropout",
                                  dataset=c.dataset),
               draw_sweeps(session.path("rates.png"), results, {r: name_of(r, False) for r in hidden_rates},
                           {r: input_name(r) for r in sorted(c.input_rates)}, c.dataset),
               draw_mc(session.path("weight_scaling.png"), mc, c.dataset)])


def check(config, data) -> None:
    del data
    if max(config.mc_samples) > MC_MAX_SAMPLES:
        raise UsageError(f"--mc-samples {max(config.mc_samples)}: at most {MC_MAX_SAMPLES} masks "
                         "(the running means of one chunk are kept for every k)")


STUDY = study.Study(
    name="dropout",
    description="Dropout on an MLP trained on a small subset: the train/test gap (rates 0, 0.2, "
                "0.5, max-norm on/off), the best hidden and input rates, the max-norm + decay + "
                "momentum recipe, and weight scaling against Monte-Carlo averaging.",
    config=Config, claims=CLAIMS, run=run, check=check,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
