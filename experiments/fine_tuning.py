"""Study: transfer learning, the notes' three regimes of fine-tuning against training from scratch.

    python -m experiments.fine_tuning [--few 50] [--regimes features,last,all,scratch]

The reference CNN is pre-trained on one half of the classes (digits 0-4 of MNIST or
of the digits; classes 0-4 of CIFAR-10: airplane, automobile, bird, cat, deer),
then trained on the other half (classes 5-9, relabelled 0-4) with a new classifier
(the last dense layer initialised afresh) in one of the regimes of the notes:

    features  the pre-trained network as a fixed feature extractor: only the new
              classifier trains (`fcnn.train.trainable_mask(params, "last")`)
    last      the last layers retrained: the hidden dense layer and the classifier,
              the convolutions frozen
    all       every layer retrained, starting from the pre-trained weights
    scratch   every layer trained from a random initialisation (no pre-training)

each with few target examples (--few per class, 50 by default; 10 on the digits) and
with all of them. Every regime trains for about --target-steps steps at batch
--target-batch-size (whole epochs), with the same optimizer and learning rate;
measured: the test accuracy on the target classes at the end. Seed s of every
regime starts from the network pre-trained with seed s, and its new classifier is
the one a fresh initialisation with seed s gives (the scratch run's own).

The claims (the notes' advice on which regime to use): with few target examples the
fixed feature extractor or retraining the last layers is best (more trainable
weights overfit); with many, retraining everything is best; and pre-training beats
training from scratch when target examples are few.

Expected time with the defaults: digits about 1.5 minutes; MNIST about 6 minutes on 2
CPU cores (pre-training 3 epochs on ~27,500 images, 8 target runs x 3 seeds);
CIFAR-10 about 10-15 minutes. The MNIST and CIFAR-10 times are estimates (not run
here).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import jax
import numpy as np

from fcnn import program
from fcnn.cli import UsageError
from fcnn.data import Split
from fcnn.models import refnet
from fcnn.train import trainable_mask

from experiments.core import claims, plots, probes, report, study
from experiments.core.study import option
from experiments.core.training import SUBSET_SEED, Variant

WIDTHS, HIDDEN = (16, 32), 128
SOURCE, TARGET = tuple(range(5)), tuple(range(5, 10))
REGIMES = ("features", "last", "all", "scratch")
REGIME_TEXT = {"features": "fixed feature extractor (new classifier only)",
               "last": "last layers retrained (hidden dense + classifier)",
               "all": "all layers retrained from the pre-trained weights",
               "scratch": "all layers from a random initialisation"}
SIZES = ("few", "all")
PRETRAINED = "pre-trained (classes 0-4)"
# How many of the last weight layers the "last" regime retrains.
LAST_LAYERS = 2


@dataclass(frozen=True)
class Config(study.Config):
    regimes: tuple[str, ...] = option(REGIMES, choices=REGIMES, help="transfer regimes compared")
    few: int = option(50, quick=5, per_dataset={"digits": 10},
                      help="target training examples per class in the few-example setting")
    target_steps: int = option(300, quick=6, help="about this many steps for every target run (whole epochs)")
    target_batch_size: int = option(32, quick=16, help="mini-batch size of the target runs")
    finetune_lr: float | None = option(None, help="learning rate of the target runs (default: --lr)")


def check(config: Config, data) -> None:
    ds = data.get()
    if ds.num_classes != 10:
        raise UsageError(f"--dataset {config.dataset}: fine_tuning splits 10 classes into 0-4 and 5-9; "
                         f"this dataset has {ds.num_classes}")
    per_class = min(int(np.sum(ds.train.labels == k)) for k in TARGET)
    if config.few > per_class:
        raise UsageError(f"--few {config.few}: at most {per_class} (the fewest training examples of a "
                         "target class here)")
    if config.target_batch_size > config.few * len(TARGET):
        raise UsageError(f"--target-batch-size {config.target_batch_size}: at most {config.few * len(TARGET)} "
                         "(--few x 5 target classes)")


# ---------------------------------------------------------------------------------
# Data: the source and target halves


def classes_split(split, classes, per_class: int | None = None):
    """The examples of `classes`, relabelled 0..len(classes)-1; with `per_class`, the
    first `per_class` of each class in a fixed shuffle (kept in their original order)."""
    if split is None:
        return None
    keep = np.zeros(split.labels.shape[0], bool)
    order = np.random.default_rng(SUBSET_SEED).permutation(split.labels.shape[0])
    for k in classes:
        members = order[split.labels[order] == k]
        keep[members if per_class is None else members[:per_class]] = True
    relabel = np.full(max(int(split.labels.max()) + 1, max(classes) + 1), -1, np.int32)
    relabel[list(classes)] = np.arange(len(classes), dtype=np.int32)
    return Split(split.images[keep], relabel[split.labels[keep]])


def half(ds, classes, per_class: int | None = None):
    """The dataset restricted to `classes` (relabelled); the training split optionally
    cut to `per_class` examples per class."""
    return dataclasses.replace(
        ds, train=classes_split(ds.train, classes, per_class), validation=classes_split(ds.validation, classes),
        test=classes_split(ds.test, classes), num_classes=len(classes),
        class_names=tuple(ds.class_names[k] for k in classes))


# ---------------------------------------------------------------------------------
# Regimes: initialisation and trainable mask


def weight_paths(params) -> list[tuple[str, ...]]:
    """Key paths of the layers holding a kernel, in forward order."""
    return [tuple(path.split("/")) for path in probes.weight_layers(params)]


def layers_mask(params, paths):
    """True for every parameter under one of `paths` (key-path prefixes)."""
    def flag(path, _):
        keys = tuple(getattr(k, "key", None) for k in path)
        return any(keys[:len(p)] == p for p in paths)

    return jax.tree_util.tree_map_with_path(flag, params)


def mask_of(regime: str, params):
    if regime == "features":
        return trainable_mask(params, "last")
    if regime == "last":
        return layers_mask(params, weight_paths(params)[-LAST_LAYERS:])
    return None  # all, scratch: every parameter trains


def _replace(tree, path, value):
    if len(path) == 1:
        return dict(tree, **{path[0]: value})
    return dict(tree, **{path[0]: _replace(tree[path[0]], path[1:], value)})


def _at(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def pretrained_init(model, result, input_shape):
    """seed -> (params, state): the network pre-trained with that seed, its classifier
    replaced by the one model.init(PRNGKey(seed)) draws."""

    def init(seed):
        s = result.seeds.index(seed)
        params, state = jax.tree.map(lambda a: np.asarray(a[s]), (result.params, result.state))
        _, fresh, _ = model.init(jax.random.PRNGKey(seed), input_shape)
        last = weight_paths(params)[-1]
        return _replace(params, last, _at(fresh, last)), state

    return init


def run_name(regime: str, size: str) -> str:
    return f"{regime} ({size})"


# ---------------------------------------------------------------------------------
# Claims


def _accuracies(f: claims.Findings, regimes, size):
    return {r: claims.get(f.table, run_name(r, size), "test_accuracy") for r in regimes
            if run_name(r, size) in f.table}


def _best(values: dict):
    means = {r: claims.mean(v) for r, v in values.items()}
    means = {r: m for r, m in means.items() if m is not None}
    return max(means, key=means.get) if means else None


def _group_beats(f: claims.Findings, size: str, winners, losers) -> claims.Judgement:
    """The best of `winners` has a higher test accuracy than the best of `losers`."""
    win, lose = _accuracies(f, winners, size), _accuracies(f, losers, size)
    a, b = _best(win), _best(lose)
    if a is None or b is None:
        return claims.Judgement(claims.INCONCLUSIVE, f"{'/'.join(winners)} and {'/'.join(losers)} with {size} "
                                                     "target examples not both measured")
    j = claims.smaller(run_name(b, size), lose[b], run_name(a, size), win[a])
    return claims.Judgement(j.status, f"best of {', '.join(win)} vs best of {', '.join(lose)}, test accuracy: "
                                      + j.evidence, dict(j.numbers, best=a, best_other=b))


def _few_frozen_best(f: claims.Findings) -> claims.Judgement:
    return _group_beats(f, "few", ("features", "last"), ("all", "scratch"))


def _many_all_best(f: claims.Findings) -> claims.Judgement:
    return _group_beats(f, "all", ("all",), ("features", "last", "scratch"))


def _pretraining_helps(f: claims.Findings) -> claims.Judgement:
    tuned, scratch = run_name("all", "few"), run_name("scratch", "few")
    if tuned not in f.table or scratch not in f.table:
        return claims.Judgement(claims.INCONCLUSIVE, f"{tuned} and {scratch} not both measured")
    acc = lambda n: claims.get(f.table, n, "test_accuracy")  # noqa: E731
    return claims.smaller(scratch, acc(scratch), tuned, acc(tuned))


CLAIMS = (
    claims.Claim("with few target examples, the fixed feature extractor or retraining the last layers is best",
                 _few_frozen_best),
    claims.Claim("with many target examples, retraining everything (from the pre-trained weights) is best",
                 _many_all_best),
    claims.Claim("pre-training beats training from scratch with few target examples (every layer trained, "
                 "from the pre-trained weights vs from a random initialisation)", _pretraining_helps),
)


# ---------------------------------------------------------------------------------
# The study


def run(session: study.Session) -> study.Outcome:
    c = session.config
    session.data.derive("source", lambda data: half(data.get(), SOURCE))
    for size, per_class in (("few", c.few), ("all", None)):
        session.data.derive(f"target {size}",
                            lambda data, n=per_class: half(data.get(), TARGET, n))
    input_shape = (-1,) + tuple(session.data.get().image_shape)
    model = lambda: refnet(len(SOURCE), "relu", widths=WIDTHS, hidden=HIDDEN)  # noqa: E731
    source_n = int(session.data.get("source").train.labels.shape[0])
    pre = session.train([Variant(name=PRETRAINED, model=model(), normalize="source",
                                 info={"classes": list(SOURCE), "examples": source_n})],
                        phase="pre-training")[PRETRAINED]
    init = pretrained_init(model(), pre, input_shape)
    example = init(pre.seeds[0])[0]
    lr = c.lr if c.finetune_lr is None else c.finetune_lr
    variants = []
    for size in SIZES:
        key = f"target {size}"
        n = session.data.get(key).train.labels.shape[0]
        batch = min(c.target_batch_size, n)
        epochs = max(1, math.ceil(c.target_steps / (n // batch)))
        for regime in c.regimes:
            variants.append(Variant(
                name=run_name(regime, size), model=model(), normalize=key, lr=lr, batch_size=batch, epochs=epochs,
                init=None if regime == "scratch" else init, trainable=mask_of(regime, example),
                eval_train=True, info={"regime": regime, "target_examples": int(n), "classes": list(TARGET)}))
    results = session.train(variants, phase="target")
    metrics = {PRETRAINED: {"target_examples": [float(pre.info.get("examples", 0))] * len(pre.seeds),
                            "trainable_params": [float(pre.num_params)] * len(pre.seeds)}}
    for name, r in results.items():
        mask = mask_of(r.info["regime"], example)
        trained = example if mask is None else [p for p, m in zip(jax.tree_util.tree_leaves(example),
                                                                  jax.tree_util.tree_leaves(mask)) if m]
        metrics[name] = {"trainable_params": [float(sum(np.size(p) for p in jax.tree_util.tree_leaves(trained)))]
                         * len(r.seeds),
                         "target_examples": [float(r.info["target_examples"])] * len(r.seeds)}
    fig, axes = plots.figure(1, 2)
    for ax, size in zip(axes, SIZES):
        for i, regime in enumerate(c.regimes):
            r = results[run_name(regime, size)]
            plots.band(ax, np.arange(r.epoch["test_accuracy"].shape[1]) * r.steps_per_epoch,
                       r.epoch["test_accuracy"], label=regime, index=i)
        n = session.data.get(f"target {size}").train.labels.shape[0]
        plots.finish(ax, xlabel="training step", ylabel="test accuracy (classes 5-9)",
                     title=f"{n} target examples ({size})")
    fig.suptitle(f"fine_tuning: transfer from classes 0-4 to 5-9 ({c.dataset})")
    return study.Outcome(
        metrics=metrics,
        columns=[report.TEST_ACCURACY, report.Column("train_accuracy", "train acc", ".4f"),
                 report.Column("target_examples", "training examples", ".0f"),
                 report.Column("trainable_params", "trainable params", ".0f"), report.FINAL_TRAIN_LOSS],
        notes=[f"refnet widths {WIDTHS}, hidden {HIDDEN}, 5 outputs; SGD momentum 0.9; pre-training on classes "
               f"0-4 for {c.epochs} epoch(s) at lr {c.lr:g}, batch {c.batch_size}; target runs on classes 5-9 "
               f"(relabelled 0-4) for about {c.target_steps} steps at lr {lr:g}, batch {c.target_batch_size}; "
               f"few = {c.few} per class. Inputs standardized with the statistics of all 10 classes' "
               "training split.",
               *(f"{regime}: {REGIME_TEXT[regime]}" for regime in c.regimes)],
        plots=[(plots.save(fig, session.path("target_accuracy.png")), "target test accuracy vs step per regime"),
               plots.epoch_metric(session.path("pretraining.png"), {PRETRAINED: pre}, "test_accuracy",
                                  ylabel="test accuracy (classes 0-4)", study="fine_tuning", dataset=c.dataset)])


STUDY = study.Study(
    name="fine_tuning",
    description="Transfer from classes 0-4 to 5-9: fixed feature extractor, last layers retrained, all "
                "retrained, against training from scratch, with few and with many target examples.",
    config=Config, claims=CLAIMS, run=run, check=check,
)


def main(argv=None) -> int:
    return study.main(STUDY, argv)


if __name__ == "__main__":
    program.run(main, STUDY.name)
