"""Training a study's variants on the engine: several seeds (and learning rates) each.

A `Variant` is one configuration of a study (a model and how to train it). Every
seed sees the same data order (`fcnn.data.BatchIterator` with one seed) and gets the
initialisation PRNGKey(seed) and the step keys fold_in(PRNGKey(seed), t), exactly as
`fcnn.train.fit` with that seed: all of it is `fcnn.train.engine.train_steps`. The
seeds of a variant are trained as one population (params stacked on a leading axis,
the step `jax.vmap`ped over it, `fcnn.train.population`) or one after another
through one compiled step (`--population sequential`). "auto" batches them unless the
model has a convolution and runs on the CPU: vmapping a convolution over its kernel
makes it a grouped convolution, which XLA:CPU runs 2-2.5x slower than the seeds in
turn (measured on the reference CNN; for MLPs vmap is 1.2-2.6x faster). A variant
may also carry several learning rates: they join the population (the rate lives in
the optimizer state) and come back as one result per rate.

Timing: the step is compiled ahead of time on its first call, so compile time is
reported apart from the training wall time, which is measured per step (each step is
waited for); evaluation and probes are excluded from it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from fcnn.data import BatchIterator, load_dataset, subsample
from fcnn.layers.base import CONVOLUTION, Layer, walk_layers
from fcnn.losses import softmax_cross_entropy
from fcnn.train import optimizers, population
from fcnn.train.engine import train_steps
from fcnn.train.evaluation import eval_batches, evaluate_batches
from fcnn.train.step import init_opt_state, make_eval_step, make_train_step

from experiments.core.report import jsonable, number, target_key

# Examples held out from training for tuning and for the diagnostics batch.
VALIDATION_SIZE = {"digits": 0.1, "mnist": 5000, "fashion-mnist": 5000, "cifar10": 5000}
PROBE_SIZE = 256
EVAL_CHUNK = 1000
# --quick: a tiny training subset and a small test set, so every study takes seconds.
QUICK_SIZES = {"train_size": 192, "test_size": 128, "probe_size": 64}
DATA_ORDER_SEED = 0
# --quick compiles with fewer LLVM optimisations: its few steps cost less than the
# compile time saved (about 40% on the test models).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
SUBSET_SEED = 1234
# The training error is the mean error of the last SMOOTHING mini-batches (at most one
# epoch's worth), so that a single lucky batch does not count as reaching a target.
SMOOTHING = 20
STABLE_FRACTION = 0.5


@dataclass
class Variant:
    """One configuration of a study, trained with every seed.

    Attributes:
      name: the row of the report ("relu", "bs=32", ...).
      model: the Layer to train (the input shape comes from the dataset).
      lr: one learning rate, or a tuple of rates trained together as one population
        (each rate becomes its own result, named "<name> lr=<rate>"); None: --lr.
      optimizer: a function lr -> optax optimizer, e.g. `fcnn.train.optimizers.sgd` or
        `functools.partial(optimizers.momentum, max_norm=3.0)`; its hyper-parameters
        must be injected (every optimizer of `fcnn.train.optimizers` is).
      schedule: a function total_steps -> schedule, used as the learning rate.
      loss_fn: (logits, labels) -> scalar.
      objective: a factory (model, loss_fn) -> objective for `make_train_step`, for
        losses beyond loss_fn(logits, labels) (e.g. the center loss).
      epochs, batch_size: None: the study's settings.
      normalize: the input normalization of the dataset ("standardize", "minmax", None).
      train_size: train on the first `train_size` examples of a fixed shuffle.
      probe: a factory (model, loss_fn) -> probe (see experiments.core.probes), run at
        initialisation, every `probe_every` steps (default: a quarter epoch) and at
        the end.
      eval_train: also evaluate on the training examples after every epoch (the gap).
      vmap: False when the seeds cannot be batched (they are then trained in turn).
      info: shown in config.json and available to the study's analysis.
      init: seed -> (params, state), used instead of `model.init(PRNGKey(seed), ...)`
        (e.g. pre-trained weights with a new classifier); None: model.init.
      trainable: a mask of Python bools with the structure of params
        (`fcnn.train.trainable_mask`): only the True leaves train, the optimizer
        state covers only them (`make_train_step`'s `trainable`); None: all train.
      augment: (rng, image) -> image, applied to every training image inside the
        compiled step (`make_train_step`'s `augment`, e.g. `fcnn.augment.chain(...)`).
    """

    name: str
    model: Layer
    lr: float | tuple[float, ...] | None = None
    optimizer: Callable = optimizers.momentum
    schedule: Callable[[int], Callable] | None = None
    loss_fn: Callable = softmax_cross_entropy
    objective: Callable | None = None
    epochs: int | None = None
    batch_size: int | None = None
    normalize: str | None = "standardize"
    train_size: int | None = None
    probe: Callable | None = None
    probe_every: int | None = None
    eval_train: bool = False
    vmap: bool = True
    info: Mapping[str, Any] = field(default_factory=dict)
    init: Callable[[int], tuple[Any, Any]] | None = None
    trainable: Any = None
    augment: Callable | None = None

    def learning_rates(self, default: float) -> tuple[float, ...]:
        if self.lr is None:
            return (float(default),)
        if isinstance(self.lr, (tuple, list)):
            if self.schedule is not None and len(self.lr) > 1:
                raise ValueError(f"variant {self.name!r}: a schedule takes one learning rate, got {self.lr}")
            return tuple(float(v) for v in self.lr)
        return (float(self.lr),)

    def describe(self, config) -> dict:
        optimizer = getattr(self.optimizer, "func", self.optimizer)
        return jsonable({
            "name": self.name, "lr": list(self.learning_rates(config.lr)),
            "optimizer": getattr(optimizer, "__name__", str(optimizer)),
            "optimizer_kwargs": dict(getattr(self.optimizer, "keywords", {}) or {}),
            "schedule": bool(self.schedule), "loss": getattr(self.loss_fn, "__name__", str(self.loss_fn)),
            "epochs": self.epochs or config.epochs, "batch_size": self.batch_size or config.batch_size,
            "normalize": self.normalize, "train_size": self.train_size, "eval_train": self.eval_train,
            "vmap": use_vmap(self, config), "info": dict(self.info),
        })


@dataclass
class VariantResult:
    """Everything measured for one variant (one learning rate), per seed.

    Arrays have the seeds on axis 0. `step[k]` is (S, T) over the T training steps
    ("loss", "error": mini-batch values, "learning_rate", ...); `step_time` (S, T)
    the wall time since the start of training after each step (compile and
    evaluation excluded); `epoch[k]` is (S, E + 1) at initialisation and after each
    epoch ("test_accuracy", "test_loss", "time", ...); `probes[k]` is (S, P) at
    `probe_steps`. `params`/`state` hold the final per-seed parameters (leading axis S)
    of `model`.
    """

    name: str
    base: str
    lr: float
    seeds: list[int]
    info: dict
    steps_per_epoch: int
    epochs: int
    batch_size: int
    step: dict[str, np.ndarray]
    step_time: np.ndarray
    epoch: dict[str, np.ndarray]
    probe_steps: np.ndarray
    probes: dict[str, np.ndarray]
    compile_time: float
    train_time: np.ndarray
    num_params: int
    params: Any = None
    state: Any = None
    model: Layer | None = None
    scalars: dict[str, list] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def smoothed_error(self) -> np.ndarray:
        """(S, T) training error averaged over the last min(SMOOTHING, epoch) steps."""
        return trailing_mean(self.step["error"], min(SMOOTHING, self.steps_per_epoch))

    def diverged_at(self) -> list[int | None]:
        """Per seed, the first step (1-based) whose loss or check was not finite."""
        codes = self.step.get("nonfinite")
        out = []
        for s in range(len(self.seeds)):
            bad = ~np.isfinite(self.step["loss"][s])
            if codes is not None:
                bad = bad | (codes[s] != 0)
            idx = np.flatnonzero(bad)
            out.append(int(idx[0]) + 1 if idx.size else None)
        return out


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` entries (fewer at the start) along the last axis."""
    values = np.asarray(values, dtype=np.float64)
    window = max(int(window), 1)
    csum = np.cumsum(values, axis=-1)
    idx = np.arange(values.shape[-1])
    lo = np.maximum(idx - window, -1)
    prev = np.where(lo >= 0, np.take(csum, np.maximum(lo, 0), axis=-1), 0.0)
    return (csum - prev) / (idx - lo)


def steps_to(curve: np.ndarray, target: float) -> int | None:
    """1-based index of the first entry <= target (None if never, or if not finite)."""
    hit = np.flatnonzero(np.asarray(curve) <= target)
    return int(hit[0]) + 1 if hit.size else None


def first_at_least(curve: np.ndarray, target: float) -> int | None:
    """Index of the first entry >= target, or None."""
    hit = np.flatnonzero(np.asarray(curve) >= target)
    return int(hit[0]) if hit.size else None


# ---------------------------------------------------------------------------------
# Data


class DataStore:
    """Loads each normalization of the study's dataset once, with the validation split."""

    def __init__(self, config):
        self.config = config
        self._cache: dict = {}
        self._derived: dict[str, Callable] = {}

    def derive(self, key: str, make: Callable[["DataStore"], Any]) -> None:
        """Serves `make(self)` (a Dataset, built on first use from the loaded ones) under
        `key`, the name a `Variant.normalize` gives: a study's own inputs (whitened
        pixels, a subset of the classes)."""
        self._derived[key] = make

    def get(self, normalize: str | None = "standardize"):
        if normalize in self._derived:
            if normalize not in self._cache:
                self._cache[normalize] = self._derived[normalize](self)
            return self._cache[normalize]
        if normalize not in self._cache:
            c = self.config
            ds = load_dataset(c.dataset, c.data_dir, normalize=normalize,
                              validation_size=VALIDATION_SIZE[c.dataset], seed=0)
            if c.quick:
                ds = dataclasses.replace(
                    ds, train=subsample(ds.train, QUICK_SIZES["train_size"], seed=SUBSET_SEED),
                    test=subsample(ds.test, QUICK_SIZES["test_size"], seed=SUBSET_SEED))
            self._cache[normalize] = ds
        return self._cache[normalize]

    def describe(self) -> dict:
        loaded = [k for k in self._cache if k not in self._derived]
        ds = self.get(loaded[0] if loaded else "standardize")
        return {"name": ds.name, "train": int(ds.train.labels.shape[0]),
                "validation": int(ds.validation.labels.shape[0]) if ds.validation else 0,
                "test": int(ds.test.labels.shape[0]), "image_shape": list(ds.image_shape),
                "num_classes": ds.num_classes}


# ---------------------------------------------------------------------------------
# Training one variant (a population of seeds x learning rates)


def has_convolution(model: Layer) -> bool:
    """Whether a convolution appears anywhere in `model` (walking its children)."""
    return any(layer.role == CONVOLUTION for layer in walk_layers(model))


def use_vmap(variant: Variant, config) -> bool:
    """Whether the seeds of `variant` are trained batched (see the module docstring)."""
    if not variant.vmap or config.population == "sequential":
        return False
    if config.population == "vmap":
        return True
    return not (jax.default_backend() == "cpu" and has_convolution(variant.model))


class _AheadOfTime:
    """A jitted function compiled on its first call, its compile time recorded."""

    def __init__(self, fn, options, donate=()):
        self._jitted = jax.jit(fn, donate_argnums=donate)
        self._options, self._compiled, self.compile_time = options, None, 0.0

    def __call__(self, *args):
        if self._compiled is None:
            start = time.perf_counter()
            lowered = self._jitted.lower(*args)
            self._compiled = lowered.compile(compiler_options=self._options) if self._options \
                else lowered.compile()
            self.compile_time = time.perf_counter() - start
        return self._compiled(*args)


class _Programs:
    """The compiled step, evaluation and probe of one variant, for a population
    (leading member axis) or a single member; the same for every member."""

    def __init__(self, variant: Variant, config, total_steps: int, lr0: float, batched: bool):
        rate = variant.schedule(total_steps) if variant.schedule else lr0
        self.optimizer = variant.optimizer(rate)
        model, loss_fn = variant.model, variant.loss_fn
        objective = variant.objective(model, loss_fn) if variant.objective else None
        step = make_train_step(model, loss_fn, self.optimizer, objective=objective,
                               trainable=variant.trainable, augment=variant.augment, jit=False)
        evaluate = make_eval_step(model, loss_fn, jit=False)
        probe = variant.probe(model, loss_fn) if variant.probe else None
        if batched:
            step = jax.vmap(step, in_axes=(0, 0, 0, None, 0))
            evaluate = jax.vmap(evaluate, in_axes=(0, 0, None))
            probe = probe and jax.vmap(probe, in_axes=(0, 0, None, None))
        options = FAST_COMPILE if config.quick else None
        self.step = _AheadOfTime(step, options, donate=(0, 1, 2))
        self.evaluate = jax.jit(evaluate)
        self.probe = jax.jit(probe) if probe else None


def _train_members(variant: Variant, config, programs: _Programs, members, train, eval_sets,
                   probe_batch, bar, batched: bool, input_shape) -> dict:
    """Trains `members` ((seed, lr) pairs) together; returns stacked per-member records."""
    epochs = variant.epochs or config.epochs
    iterator = BatchIterator(train.images, train.labels, variant.batch_size or config.batch_size,
                             seed=DATA_ORDER_SEED)
    spe = iterator.steps_per_epoch
    seeds = [seed for seed, _ in members]
    values = None if variant.schedule else {"learning_rate": [lr for _, lr in members]}
    if variant.init is None:
        params, state, opt_state = population.init_population(
            variant.model, programs.optimizer, input_shape, seeds, hyperparams=values,
            trainable=variant.trainable)
    else:
        params, state, opt_state = _init_given(variant, programs.optimizer, seeds, values)
    rng = population.seed_keys(seeds)
    if not batched:
        (params, state, opt_state), rng = population.member((params, state, opt_state), 0), rng[0]
    params, state, opt_state = jax.device_put((params, state, opt_state))
    n = len(members)
    record = _Record(n)
    probe_every = variant.probe_every or max(spe // 4, 1)
    record.evaluate(programs, params, state, eval_sets, 0.0)
    record.probe(programs, params, state, probe_batch, 0)
    compile_before = programs.step.compile_time
    elapsed, index = 0.0, 0
    for _ in range(epochs):
        last = time.perf_counter()
        for out in train_steps(programs.step, params, state, opt_state, iterator, rng,
                               first_step=index, count=spe):
            params, state, opt_state = out.params, out.state, out.opt_state
            jax.block_until_ready(out.metrics)
            now = time.perf_counter()
            compiled = programs.step.compile_time - compile_before
            elapsed += now - last - compiled
            compile_before += compiled
            index += 1
            record.step(out.metrics, elapsed)
            if bar is not None:
                bar.update(n)
            if index % probe_every == 0 and index != spe * epochs:
                record.probe(programs, params, state, probe_batch, index)
            last = time.perf_counter()
        record.evaluate(programs, params, state, eval_sets, elapsed)
    record.probe(programs, params, state, probe_batch, index)
    host = jax.device_get((params, state))
    if not batched:
        host = jax.tree.map(lambda a: np.asarray(a)[None], host)
    return record.finish(spe, epochs, host, programs.step.compile_time)


def _init_given(variant: Variant, optimizer, seeds, values):
    """(params, state, opt_state) stacked over members from `variant.init(seed)`, as
    `population.init_population` stacks `model.init`."""
    members = []
    for seed in seeds:
        params, state = variant.init(seed)
        members.append(jax.device_get((params, state, init_opt_state(optimizer, params, variant.trainable))))
    params, state, opt_state = jax.device_put(jax.tree.map(lambda *xs: np.stack(xs), *members))
    if values:
        opt_state = population.set_hyperparams(opt_state, {k: np.asarray(v, np.float64)
                                                           for k, v in values.items()})
    return params, state, opt_state


class _Record:
    """Per-step, per-epoch and probe records of `n` members, stacked at the end."""

    def __init__(self, n: int):
        self.n, self.steps, self.times, self.epochs = n, {}, [], {}
        self.probe_steps, self.probes, self.eval_time = [], {}, 0.0

    def _row(self, value):
        return np.asarray(value).reshape(self.n)

    def step(self, metrics, elapsed):
        self.times.append(elapsed)
        for key, value in metrics.items():
            self.steps.setdefault(key, []).append(value)

    def evaluate(self, programs, params, state, eval_sets, elapsed):
        start = time.perf_counter()
        for split, batches in eval_sets.items():
            for key, value in evaluate_batches(programs.evaluate, params, state, batches).items():
                self.epochs.setdefault(f"{split}_{key}", []).append(self._row(value))
        self.epochs.setdefault("time", []).append(np.full(self.n, elapsed))
        self.eval_time += time.perf_counter() - start

    def probe(self, programs, params, state, batch, index):
        if programs.probe is None:
            return
        self.probe_steps.append(index)
        for key, value in programs.probe(params, state, *batch).items():
            self.probes.setdefault(key, []).append(self._row(value))

    def finish(self, spe, epochs, host, compile_time) -> dict:
        step = {k: np.stack([self._row(v) for v in vals], axis=1) for k, vals in self.steps.items()}
        if "accuracy" in step:
            step["error"] = 1.0 - step["accuracy"]
        params, state = host
        return {
            "step": step, "step_time": np.tile(np.asarray(self.times)[None], (self.n, 1)),
            "epoch": {k: np.stack(v, axis=1) for k, v in self.epochs.items()},
            "probe_steps": np.asarray(self.probe_steps, np.int64),
            "probes": {k: np.stack(v, axis=1) for k, v in self.probes.items()},
            "compile_time": compile_time, "eval_time": self.eval_time,
            "train_time": np.full(self.n, self.times[-1] if self.times else 0.0),
            "steps_per_epoch": spe, "epochs": epochs,
            "num_params": sum(int(np.prod(np.shape(a)[1:])) for a in jax.tree_util.tree_leaves(params)),
            "params": params, "state": state,
        }


def _concatenate(records: list[dict]) -> dict:
    """Joins the records of members trained one at a time into one population record."""
    out = dict(records[0])
    for key in ("step", "epoch", "probes"):
        out[key] = {k: np.concatenate([r[key][k] for r in records]) for k in records[0][key]}
    for key in ("step_time", "train_time"):
        out[key] = np.concatenate([r[key] for r in records])
    for key in ("params", "state"):
        out[key] = jax.tree.map(lambda *a: np.concatenate(a), *[r[key] for r in records])
    out["eval_time"] = sum(r["eval_time"] for r in records)
    return out


def train_variant(variant: Variant, config, data: DataStore, *, bar=None, eval_split: str = "test",
                  seeds: Sequence[int] | None = None) -> list[VariantResult]:
    """Trains a variant with every seed (and learning rate); one result per rate."""
    seeds = list(range(config.seeds)) if seeds is None else list(seeds)
    lrs = variant.learning_rates(config.lr)
    ds = data.get(variant.normalize)
    split = getattr(ds, eval_split)
    if split is None:
        raise ValueError(f"eval_split={eval_split!r}: the dataset has no such split")
    train = subsample(ds.train, variant.train_size, seed=SUBSET_SEED)
    eval_sets = {eval_split: eval_batches(split.images, split.labels, EVAL_CHUNK)}
    if variant.eval_train:
        eval_sets["train"] = eval_batches(train.images, train.labels, EVAL_CHUNK)
    probe_source = ds.validation if ds.validation is not None else ds.test
    size = QUICK_SIZES["probe_size"] if config.quick else PROBE_SIZE
    probe_batch = jax.device_put((probe_source.images[:size], probe_source.labels[:size]))
    members = [(seed, lr) for lr in lrs for seed in seeds]
    batched = use_vmap(variant, config)
    batch_size = variant.batch_size or config.batch_size
    total = (train.labels.shape[0] // batch_size) * (variant.epochs or config.epochs)
    programs = _Programs(variant, config, total, members[0][1], batched)
    groups = [members] if batched else [[m] for m in members]
    record = _concatenate([
        _train_members(variant, config, programs, group, train, eval_sets, probe_batch, bar,
                       batched, (-1,) + tuple(ds.image_shape))
        for group in groups])
    results = []
    for i, lr in enumerate(lrs):
        rows = slice(i * len(seeds), (i + 1) * len(seeds))
        pick = lambda d: {k: v[rows] for k, v in d.items()}  # noqa: E731
        result = VariantResult(
            name=f"{variant.name} lr={lr:g}" if len(lrs) > 1 else variant.name, base=variant.name,
            lr=lr, seeds=seeds, info=dict(variant.info, lr=lr),
            steps_per_epoch=record["steps_per_epoch"], epochs=record["epochs"],
            batch_size=batch_size, step=pick(record["step"]), step_time=record["step_time"][rows],
            epoch=pick(record["epoch"]), probe_steps=record["probe_steps"],
            probes=pick(record["probes"]), compile_time=record["compile_time"] / len(lrs),
            train_time=record["train_time"][rows], num_params=record["num_params"],
            params=population.member(record["params"], rows),
            state=population.member(record["state"], rows), model=variant.model)
        result.scalars.update(standard_scalars(result, eval_split))
        results.append(result)
    return results


def standard_scalars(result: VariantResult, eval_split: str = "test",
                     targets: Sequence[float] = ()) -> dict[str, list]:
    """Per-seed summary numbers every study gets (None where undefined), and the steps
    to each smoothed training-error target."""
    out: dict[str, list] = {}
    acc = result.epoch.get(f"{eval_split}_accuracy")
    if acc is not None:
        out[f"{eval_split}_accuracy"] = [number(v) for v in acc[:, -1]]
        out[f"best_{eval_split}_accuracy"] = [number(np.nanmax(v)) if np.any(np.isfinite(v)) else None
                                              for v in acc]
        out[f"{eval_split}_loss"] = [number(v) for v in result.epoch[f"{eval_split}_loss"][:, -1]]
    if "train_accuracy" in result.epoch:
        out["train_accuracy"] = [number(v) for v in result.epoch["train_accuracy"][:, -1]]
        out["gap"] = [None if a is None or b is None else a - b
                      for a, b in zip(out["train_accuracy"], out.get(f"{eval_split}_accuracy", []))]
    window = min(SMOOTHING, result.steps_per_epoch)
    losses = result.step["loss"]
    out["final_train_loss"] = [number(np.mean(row[-window:])) for row in losses]
    smooth = result.smoothed_error()
    out["final_train_error"] = [number(row[-1]) for row in smooth]
    first = [number(np.mean(row[:window])) for row in losses]
    diverged = result.diverged_at()
    # stable: finite all along, and it learned: the final loss at most STABLE_FRACTION
    # of the initial one (a run that merely does not blow up is not counted)
    out["stable"] = [float(d is None and f is not None and i is not None and f <= STABLE_FRACTION * i)
                     for d, f, i in zip(diverged, out["final_train_loss"], first)]
    out["diverged"] = [float(d is not None) for d in diverged]
    out["train_time"] = [float(t) for t in result.train_time]
    out["time_per_epoch"] = [float(t) / result.epochs for t in result.train_time]
    out["time_per_step"] = [float(t) / result.total_steps for t in result.train_time]
    out["compile_time"] = [float(result.compile_time)] * len(result.seeds)
    out["params"] = [float(result.num_params)] * len(result.seeds)
    for t in targets:
        out[target_key(t)] = [steps_to(row, t) for row in smooth]
    return out
