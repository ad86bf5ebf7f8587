"""The one experiment runner every study uses.

A study declares `Variant`s (a model and how to train it). The runner trains each
variant with several seeds on the same data order, evaluates it, and writes

    <out>/<study>/<timestamp>/
        config.json    the settings, the variants, the environment
        metrics.jsonl  one JSON object per line: per step, per epoch, per probe, per seed
        summary.json   per variant and metric: mean, spread and per-seed values; the claims
        report.md      a table (mean +/- std over seeds), the claims, the plots
        *.png          the study's plots

Every seed sees the same data order. The seeds are trained as one population, the
per-seed parameters stacked on a leading axis and the train step `jax.vmap`ped over
it (`fcnn.train.population`), or one after another through one compiled step
(`--population sequential`). The default, "auto", batches them unless the model has
a convolution and runs on the CPU: vmapping a convolution over its kernel makes it a
grouped convolution, which XLA:CPU runs 2-2.5x slower than the seeds in turn
(measured on the reference CNN; for MLPs vmap is 1.2-2.6x faster).
A variant may also carry several learning rates: they join the population too (the
rate lives in the optimizer state, see fcnn.train.optimizers), and come back as one
result per rate. Each variant's results are written as soon as it finishes, so an
interrupted study leaves the finished variants readable.

Timing: every step function is compiled ahead of time (`jit(...).lower(...).compile()`),
so compile time is reported apart from the training wall time, which is measured per
step (each step is waited for).

The runner also offers `grid_search` and `random_search` over hyper-parameters on the
validation split: tune on validation, then report on test once.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from fcnn import diagnostics
from fcnn.data import BatchIterator, load_dataset
from fcnn.layers.base import Layer, apply_with_intermediates, layer_name
from fcnn.losses import softmax_cross_entropy
from fcnn.train import population
from fcnn.train.optimizers import make_optimizer
from fcnn.train.step import init_opt_state, make_eval_step, make_train_step

from experiments import plots, verdicts as verdicts_lib

# Examples held out from training for tuning and for the diagnostics batch.
VALIDATION_SIZE = {"digits": 0.1, "mnist": 5000, "fashion-mnist": 5000, "cifar10": 5000}
PROBE_SIZE = 256
EVAL_CHUNK = 1000
# --quick: a tiny training subset and a small test set, so every study takes seconds.
QUICK = {"train_size": 192, "test_size": 128, "probe_size": 64, "epochs": 1, "seeds": 1,
         "batch_size": 32}
DATA_ORDER_SEED = 0
# --quick compiles with fewer LLVM optimisations: its few steps cost less than the
# compile time saved (about 40% on the test models).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
SUBSET_SEED = 1234
# The training error is the mean error of the last SMOOTHING mini-batches (at most one
# epoch's worth), so that a single lucky batch does not count as reaching a target.
SMOOTHING = 20
STABLE_FRACTION = 0.5


# ---------------------------------------------------------------------------------
# Settings and variants


@dataclass(frozen=True)
class Settings:
    """What the command line fixed for a whole study."""

    study: str
    dataset: str = "digits"
    data_dir: str | None = None
    epochs: int = 10
    seeds: int = 3
    batch_size: int = 32
    lr: float = 0.01
    out: str = "runs"
    quick: bool = False
    population: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in dataclasses.asdict(self).items()}


ProbeFactory = Callable[[Layer, Callable], Callable]


@dataclass
class Variant:
    """One configuration of a study, trained with every seed.

    Attributes:
      name: the row of the report ("relu", "bs=32", ...).
      model: the Layer to train (the input shape comes from the dataset).
      lr: one learning rate, or a tuple of rates trained together as one population
        (each rate becomes its own result, named "<name> lr=<rate>"); None: --lr.
      optimizer, optimizer_kwargs: `fcnn.train.make_optimizer(optimizer, lr, **kwargs)`.
      schedule: a function total_steps -> schedule, used as the learning rate.
      loss_fn: (logits, labels) -> scalar.
      epochs, batch_size: None: the study's settings.
      normalize: the input normalization of the dataset ("standardize", "minmax", None).
      train_size: train on the first `train_size` examples of a fixed shuffle.
      probe: a factory (model, loss_fn) -> fn(params, state, images, labels) -> dict of
        scalars, run on a held-out batch at initialisation, every `probe_every` steps
        (default: a quarter epoch) and at the end; `units_probe` is the standard one.
      eval_train: also evaluate on the training examples after every epoch (the gap).
      vmap: False when the seeds cannot be batched (they are then trained in turn).
      train_step: a factory (model, loss_fn, optimizer) -> unjitted step with the
        signature of `fcnn.train.step.make_train_step`'s, for custom objectives.
      info: shown in config.json and available to the study's analysis.
    """

    name: str
    model: Layer
    lr: float | tuple[float, ...] | None = None
    optimizer: str = "momentum"
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    schedule: Callable[[int], Callable] | None = None
    loss_fn: Callable = softmax_cross_entropy
    epochs: int | None = None
    batch_size: int | None = None
    normalize: str | None = "standardize"
    train_size: int | None = None
    probe: ProbeFactory | None = None
    probe_every: int | None = None
    eval_train: bool = False
    vmap: bool = True
    train_step: Callable | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    def learning_rates(self, default: float) -> tuple[float, ...]:
        if self.lr is None:
            return (float(default),)
        if isinstance(self.lr, (tuple, list)):
            if self.schedule is not None and len(self.lr) > 1:
                raise ValueError(f"variant {self.name!r}: a schedule takes one learning rate, got {self.lr}")
            return tuple(float(v) for v in self.lr)
        return (float(self.lr),)

    def result_name(self, lr: float, many: bool) -> str:
        return f"{self.name} lr={lr:g}" if many else self.name

    def describe(self, settings: Settings) -> dict:
        return {
            "name": self.name, "lr": list(self.learning_rates(settings.lr)),
            "optimizer": self.optimizer, "optimizer_kwargs": dict(self.optimizer_kwargs),
            "schedule": bool(self.schedule), "loss": getattr(self.loss_fn, "__name__", str(self.loss_fn)),
            "epochs": self.epochs or settings.epochs, "batch_size": self.batch_size or settings.batch_size,
            "normalize": self.normalize, "train_size": self.train_size, "eval_train": self.eval_train,
            "vmap": self.vmap, "info": _jsonable(dict(self.info)),
        }


@dataclass
class VariantResult:
    """Everything measured for one variant (one learning rate), per seed.

    Arrays have the seeds on axis 0. `step[k]` is (S, T) over the T training steps
    ("loss", "error": mini-batch values, "learning_rate", ...); `step_time` (S, T)
    the wall time since the start of training after each step (compile and
    evaluation excluded); `epoch[k]` is (S, E + 1) at initialisation and after each
    epoch ("test_accuracy", "test_loss", "time", ...); `probes[k]` is (S, P) at
    `probe_steps`. `params`/`state` hold the final per-seed parameters (leading axis S).
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
    scalars: dict[str, list] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def smoothed_error(self) -> np.ndarray:
        """(S, T) training error averaged over the last min(SMOOTHING, epoch) steps."""
        return trailing_mean(self.step["error"], min(SMOOTHING, self.steps_per_epoch))

    def diverged_at(self) -> list[int | None]:
        codes = self.step.get("nonfinite")
        loss = self.step["loss"]
        out = []
        for s in range(len(self.seeds)):
            bad = ~np.isfinite(loss[s])
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
    out = np.empty_like(csum)
    n = values.shape[-1]
    idx = np.arange(n)
    lo = np.maximum(idx - window, -1)
    prev = np.where(lo >= 0, np.take(csum, np.maximum(lo, 0), axis=-1), 0.0)
    out[...] = (csum - prev) / (idx - lo)
    return out


def steps_to(curve: np.ndarray, target: float) -> int | None:
    """1-based index of the first entry <= target (None if never, or if not finite)."""
    hit = np.flatnonzero(np.asarray(curve) <= target)
    return int(hit[0]) + 1 if hit.size else None


def first_at_least(curve: np.ndarray, target: float) -> int | None:
    """Index of the first entry >= target, or None."""
    hit = np.flatnonzero(np.asarray(curve) >= target)
    return int(hit[0]) if hit.size else None


def target_key(target: float) -> str:
    return f"steps_to_{100 * target:g}"


# ---------------------------------------------------------------------------------
# Probes: measurements on a held-out batch during training


def weight_layers(params) -> dict[str, str]:
    """Path -> label ("conv1", "dense2", ...) of every layer holding a "kernel",
    numbered in forward order."""
    found = []

    def walk(node, path):
        if isinstance(node, Mapping):
            if "kernel" in node and not isinstance(node["kernel"], Mapping):
                found.append((path, jnp.ndim(node["kernel"])))
                return
            for key in node:
                walk(node[key], path + (str(key),))

    walk(params, ())

    def order(item):
        return tuple(int(p) if p.isdigit() else p for p in item[0])

    labels, counts = {}, {}
    for path, ndim in sorted(found, key=order):
        kind = "dense" if ndim == 2 else "conv"
        counts[kind] = counts.get(kind, 0) + 1
        labels["/".join(path)] = f"{kind}{counts[kind]}"
    return labels


def units_probe(model: Layer, loss_fn: Callable) -> Callable:
    """The standard probe: per layer, the fractions of dead, active and (sigmoid/tanh)
    saturated units after each activation, each weight layer's gradient norm, and the
    norm of its bias gradient (the back-propagated error, summed over the batch).

    Keys: "dead/<layer>", "active/<layer>", "saturated/<layer>", "grad/<layer>",
    "delta/<layer>", where
    <layer> is the weight layer feeding the activation ("conv1", "dense1", ...). The
    model runs in evaluation mode (train=False) on the held-out batch.
    """

    def probe(params, state, images, labels):
        labels_by_path = weight_layers(params)
        _, _, seen = apply_with_intermediates(model, params, state, images, train=False)
        stats = diagnostics.unit_statistics(seen)
        feeding, out = {}, {}
        current = None
        for item in seen:
            if item.path in labels_by_path:
                current = labels_by_path[item.path]
            elif diagnostics.is_activation(item) and current is not None:
                feeding[item.path] = current
        for path, entry in stats.items():
            layer = feeding.get(path, path)
            for key, value in entry.items():
                out[f"{key}/{layer}"] = value

        def objective(p):
            logits, _ = model.apply(p, state, images, train=False)
            return loss_fn(logits, labels)

        grads = jax.grad(objective)(params)
        for key, norms in (("grad", diagnostics.layer_gradient_norms(grads)),
                           ("delta", diagnostics.bias_gradient_norms(grads))):
            for path, label in labels_by_path.items():
                if path in norms:
                    out[f"{key}/{label}"] = norms[path]
        return out

    return probe


# ---------------------------------------------------------------------------------
# Data


class DataStore:
    """Loads each normalization of the study's dataset once, with the validation split."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._cache: dict = {}

    def get(self, normalize: str | None = "standardize"):
        if normalize not in self._cache:
            ds = load_dataset(self.settings.dataset, self.settings.data_dir, normalize=normalize,
                              validation_size=VALIDATION_SIZE[self.settings.dataset], seed=0)
            if self.settings.quick:
                ds = dataclasses.replace(ds, train=_subset(ds.train, QUICK["train_size"]),
                                         test=_subset(ds.test, QUICK["test_size"]))
            self._cache[normalize] = ds
        return self._cache[normalize]

    def describe(self) -> dict:
        ds = self.get(next(iter(self._cache), "standardize"))
        return {"name": ds.name, "train": int(ds.train.labels.shape[0]),
                "validation": int(ds.validation.labels.shape[0]) if ds.validation else 0,
                "test": int(ds.test.labels.shape[0]), "image_shape": list(ds.image_shape),
                "num_classes": ds.num_classes}


def _subset(split, size: int | None):
    if size is None or size >= split.labels.shape[0]:
        return split
    order = np.random.default_rng(SUBSET_SEED).permutation(split.labels.shape[0])[:size]
    order.sort()
    return type(split)(split.images[order], split.labels[order])


def _eval_chunks(split, chunk: int = EVAL_CHUNK):
    """Fixed-shape (images, labels, weights) chunks on the device; the last is padded."""
    n = split.labels.shape[0]
    size = min(chunk, n)
    chunks = []
    for start in range(0, n, size):
        x = split.images[start:start + size]
        y = split.labels[start:start + size]
        w = np.ones(x.shape[0], np.float32)
        pad = size - x.shape[0]
        if pad:
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros((pad,), y.dtype)])
            w = np.concatenate([w, np.zeros((pad,), np.float32)])
        chunks.append(jax.device_put((x, y, w)))
    return chunks


# ---------------------------------------------------------------------------------
# Training one variant (a population of seeds x learning rates)


class _Programs:
    """The compiled step, evaluation and probe functions of one variant, for a batched
    population (leading member axis) or a single member."""

    def __init__(self, model, loss_fn, optimizer, step_factory, probe_factory, batched: bool,
                 fast_compile: bool = False):
        if step_factory is not None:
            step = step_factory(model, loss_fn, optimizer)
            if batched:
                step = jax.vmap(step, in_axes=(0, 0, 0, None, 0))
        elif batched:
            step = population.make_population_step(model, loss_fn, optimizer, jit=False)
        else:
            step = make_train_step(model, loss_fn, optimizer, jit=False)
        if batched:
            evaluate = population.make_population_eval_step(model, loss_fn, jit=False)
        else:
            evaluate = make_eval_step(model, loss_fn, jit=False)
        probe = probe_factory(model, loss_fn) if probe_factory else None
        if batched and probe is not None:
            probe = jax.vmap(probe, in_axes=(0, 0, None, None))

        def one_step(params, state, opt_state, batch, keys, index):
            # Member k's step rng is fold_in(PRNGKey(seed_k), step), as in fcnn.train.fit.
            fold = lambda key: jax.random.fold_in(key, index)  # noqa: E731
            rngs = jax.vmap(fold)(keys) if batched else fold(keys)
            return step(params, state, opt_state, batch, rngs)

        self._options = FAST_COMPILE if fast_compile else None
        self._step = jax.jit(one_step, donate_argnums=(0, 1, 2))
        self._eval = jax.jit(evaluate)
        self._probe = jax.jit(probe) if probe else None
        self._compiled: dict = {}
        self.compile_time = 0.0

    def _get(self, name, fn, *args):
        if name not in self._compiled:
            start = time.perf_counter()
            lowered = fn.lower(*args)
            self._compiled[name] = (lowered.compile(compiler_options=self._options)
                                    if self._options else lowered.compile())
            self.compile_time += time.perf_counter() - start
        return self._compiled[name]

    def compile_step(self, *args) -> None:
        self._get("step", self._step, *args)

    def step(self, *args):
        return self._get("step", self._step, *args)(*args)

    def evaluate(self, params, state, chunks):
        totals: dict[str, Any] = {}
        for chunk in chunks:
            program = self._get(f"eval{chunk[0].shape}", self._eval, params, state, chunk)
            m = jax.device_get(program(params, state, chunk))
            count = np.asarray(m["count"], np.float64)
            for key in ("loss", "accuracy"):
                totals[key] = totals.get(key, 0.0) + m[key] * count
            totals["count"] = totals.get("count", 0.0) + count
        return {k: np.asarray(v / totals["count"]) for k, v in totals.items() if k != "count"}

    def probe(self, params, state, batch):
        if self._probe is None:
            return {}
        fn = self._get("probe", self._probe, params, state, *batch)
        return {k: np.asarray(v) for k, v in fn(params, state, *batch).items()}


def _init_members(model, optimizer, input_shape, seeds, lrs, batched: bool):
    """Member k: model.init(PRNGKey(seeds[k])) and an optimizer state with rate lrs[k].

    Run op by op, one member after another, and stacked on the host: the
    initializers' small programs are then compiled once per shape and reused by every
    later member and variant with the same layer shapes, which costs far less than
    compiling one init program per variant (or a vmapped one per call).
    """
    def init(seed):
        _, params, state = model.init(jax.random.PRNGKey(seed), input_shape)
        return jax.device_get((params, state, init_opt_state(optimizer, params)))

    members = [init(seed) for seed in seeds]
    if batched:
        params, state, opt_state = jax.tree.map(lambda *a: np.stack(a), *members)
    else:
        (params, state, opt_state), = members
    if lrs is not None:
        values = np.asarray(lrs, np.float64) if batched else np.float64(lrs[0])
        opt_state = population.set_hyperparams(opt_state, {"learning_rate": values})
    return params, state, opt_state


def _make_programs(variant: Variant, settings: Settings, train_size: int, batched: bool, lr0: float):
    """(optimizer, programs) of a variant; the same for every member trained alone."""
    epochs = variant.epochs or settings.epochs
    batch_size = variant.batch_size or settings.batch_size
    total = (train_size // batch_size) * epochs
    learning_rate = variant.schedule(total) if variant.schedule else lr0
    optimizer = make_optimizer(variant.optimizer, learning_rate, **dict(variant.optimizer_kwargs))
    programs = _Programs(variant.model, variant.loss_fn, optimizer, variant.train_step,
                         variant.probe, batched, fast_compile=settings.quick)
    return optimizer, programs


def _train_population(variant: Variant, members: list[tuple[int, float]], *, data, eval_split: str,
                      settings: Settings, bar, batched: bool, probe_batch, eval_sets,
                      compiled=None) -> dict:
    """Trains `members` ((seed, lr) pairs) together; returns stacked per-member records.

    `compiled`: the (optimizer, programs) pair to reuse (members trained one by one).
    """
    epochs = variant.epochs or settings.epochs
    batch_size = variant.batch_size or settings.batch_size
    train = _subset(data.train, variant.train_size)
    iterator = BatchIterator(train.images, train.labels, batch_size, seed=DATA_ORDER_SEED)
    steps_per_epoch = iterator.steps_per_epoch
    total = steps_per_epoch * epochs
    optimizer, programs = compiled or _make_programs(variant, settings, train.labels.shape[0], batched,
                                                     members[0][1])
    compile_before = programs.compile_time
    # As fcnn.train: initialisation from PRNGKey(seed), step rng fold_in(PRNGKey(seed), step).
    keys = np.stack([np.asarray(jax.random.PRNGKey(seed)) for seed, _ in members])
    input_shape = (-1,) + tuple(data.image_shape)
    lrs = None if variant.schedule else [lr for _, lr in members]
    params, state, opt_state = _init_members(variant.model, optimizer, input_shape,
                                             [seed for seed, _ in members], lrs, batched)
    params, state, opt_state = jax.device_put((params, state, opt_state))
    step_keys = jax.device_put(keys if batched else keys[0])
    num_params = sum(int(np.prod(np.shape(a)[1:] if batched else np.shape(a)))
                     for a in jax.tree_util.tree_leaves(params))
    probe_every = variant.probe_every or max(steps_per_epoch // 4, 1)

    n = len(members)

    def shape(value):
        return np.asarray(value).reshape(n)

    step_records: dict[str, list] = {}
    step_time, epoch_records, probe_steps, probe_records = [], {}, [], {}
    eval_time = 0.0

    def record_eval(epoch_elapsed):
        nonlocal eval_time
        start = time.perf_counter()
        for split_name, chunks in eval_sets.items():
            for key, value in programs.evaluate(params, state, chunks).items():
                epoch_records.setdefault(f"{split_name}_{key}", []).append(shape(value))
        epoch_records.setdefault("time", []).append(np.full(n, epoch_elapsed))
        eval_time += time.perf_counter() - start

    def record_probe(step_index):
        if variant.probe is None:
            return
        values = programs.probe(params, state, probe_batch)
        probe_steps.append(step_index)
        for key, value in values.items():
            probe_records.setdefault(key, []).append(shape(value))

    record_eval(0.0)
    record_probe(0)
    elapsed = 0.0
    index = 0
    for _epoch in range(epochs):
        for _ in range(steps_per_epoch):
            batch = next(iterator)
            args = (params, state, opt_state, batch, step_keys, jnp.asarray(index, jnp.int32))
            if index == 0:
                programs.compile_step(*args)
            start = time.perf_counter()
            params, state, opt_state, metrics = programs.step(*args)
            jax.block_until_ready(metrics)
            elapsed += time.perf_counter() - start
            index += 1
            step_time.append(elapsed)
            for key, value in metrics.items():
                step_records.setdefault(key, []).append(value)
            if bar is not None:
                bar.update(n)
            if index % probe_every == 0 and index != total:
                record_probe(index)
        record_eval(elapsed)
    record_probe(index)

    step = {k: np.stack([shape(v) for v in vals], axis=1) for k, vals in step_records.items()}
    if "accuracy" in step:
        step["error"] = 1.0 - step["accuracy"]
    return {
        "step": step,
        "step_time": np.tile(np.asarray(step_time)[None], (n, 1)),
        "epoch": {k: np.stack(v, axis=1) for k, v in epoch_records.items()},
        "probe_steps": np.asarray(probe_steps, np.int64),
        "probes": {k: np.stack(v, axis=1) for k, v in probe_records.items()},
        "compile_time": programs.compile_time - compile_before,
        "eval_time": eval_time,
        "train_time": np.full(n, elapsed),
        "steps_per_epoch": steps_per_epoch,
        "epochs": epochs,
        "batch_size": batch_size,
        "num_params": num_params,
        # On the host: the analyses read them with numpy (slicing device arrays would
        # compile one small program per leaf shape).
        "params": jax.device_get(params if batched else jax.tree.map(lambda a: np.asarray(a)[None], params)),
        "state": jax.device_get(state if batched else jax.tree.map(lambda a: np.asarray(a)[None], state)),
    }


def _stack_records(records: list[dict]) -> dict:
    """Joins the records of members trained one at a time into one population record."""
    first = records[0]
    out = dict(first)
    for key in ("step", "epoch", "probes"):
        out[key] = {k: np.concatenate([r[key][k] for r in records]) for k in first[key]}
    for key in ("step_time", "train_time"):
        out[key] = np.concatenate([r[key] for r in records])
    out["compile_time"] = sum(r["compile_time"] for r in records)
    out["eval_time"] = sum(r["eval_time"] for r in records)
    out["params"] = jax.tree.map(lambda *a: np.concatenate(a), *[r["params"] for r in records])
    out["state"] = jax.tree.map(lambda *a: np.concatenate(a), *[r["state"] for r in records])
    return out


POPULATION_TEXT = {
    "auto": "batched with jax.vmap, except convolutional models on the CPU (one after another)",
    "vmap": "batched with jax.vmap",
    "sequential": "one after another",
}


def has_convolution(model: Layer) -> bool:
    """Whether a Conv layer appears anywhere in `model` (walking the combinators)."""
    if layer_name(model).startswith("Conv("):
        return True
    return any(has_convolution(child) for child in getattr(model.init, "__fcnn_children__", ()))


def use_vmap(variant: Variant, settings: Settings) -> bool:
    """Whether the seeds of `variant` are trained batched (see the module docstring)."""
    if not variant.vmap or settings.population == "sequential":
        return False
    if settings.population == "vmap":
        return True
    return not (jax.default_backend() == "cpu" and has_convolution(variant.model))


def take(tree, index):
    """Member `index` (or a slice of members) of a stacked per-seed pytree."""
    return jax.tree.map(lambda a: a[index], tree)


def train_variant(variant: Variant, settings: Settings, data_store: DataStore, *, bar=None,
                  eval_split: str = "test", seeds: Sequence[int] | None = None) -> list[VariantResult]:
    """Trains a variant with every seed (and learning rate); one result per rate."""
    seeds = list(range(settings.seeds)) if seeds is None else list(seeds)
    lrs = variant.learning_rates(settings.lr)
    data = data_store.get(variant.normalize)
    split = getattr(data, eval_split)
    if split is None:
        raise ValueError(f"eval_split={eval_split!r}: the dataset has no such split")
    eval_sets = {eval_split: _eval_chunks(split)}
    if variant.eval_train:
        eval_sets["train"] = _eval_chunks(_subset(data.train, variant.train_size))
    probe_source = data.validation if data.validation is not None else data.test
    size = QUICK["probe_size"] if settings.quick else PROBE_SIZE
    probe_batch = jax.device_put((probe_source.images[:size], probe_source.labels[:size]))
    members = [(seed, lr) for lr in lrs for seed in seeds]
    kwargs = dict(data=data, eval_split=eval_split, settings=settings, bar=bar,
                  probe_batch=probe_batch, eval_sets=eval_sets)
    if use_vmap(variant, settings):
        record = _train_population(variant, members, batched=True, **kwargs)
    else:
        n_train = _subset(data.train, variant.train_size).labels.shape[0]
        compiled = _make_programs(variant, settings, n_train, False, members[0][1])
        record = _stack_records([_train_population(variant, [m], batched=False, compiled=compiled, **kwargs)
                                 for m in members])
    results = []
    for i, lr in enumerate(lrs):
        rows = slice(i * len(seeds), (i + 1) * len(seeds))
        pick = lambda d: {k: v[rows] for k, v in d.items()}  # noqa: E731
        results.append(VariantResult(
            name=variant.result_name(lr, len(lrs) > 1), base=variant.name, lr=lr, seeds=seeds,
            info=dict(variant.info, lr=lr), steps_per_epoch=record["steps_per_epoch"],
            epochs=record["epochs"], batch_size=record["batch_size"], step=pick(record["step"]),
            step_time=record["step_time"][rows], epoch=pick(record["epoch"]),
            probe_steps=record["probe_steps"], probes=pick(record["probes"]),
            compile_time=record["compile_time"] / len(lrs), train_time=record["train_time"][rows],
            num_params=record["num_params"],
            params=take(record["params"], rows), state=take(record["state"], rows),
        ))
    for result in results:
        result.scalars.update(standard_scalars(result, eval_split))
    return results


def standard_scalars(result: VariantResult, eval_split: str = "test") -> dict[str, list]:
    """Per-seed summary numbers every study gets (None where undefined)."""
    out: dict[str, list] = {}
    acc = result.epoch.get(f"{eval_split}_accuracy")
    loss = result.epoch.get(f"{eval_split}_loss")
    diverged = result.diverged_at()
    if acc is not None:
        out[f"{eval_split}_accuracy"] = [_num(v) for v in acc[:, -1]]
        out[f"best_{eval_split}_accuracy"] = [_num(np.nanmax(v)) if np.any(np.isfinite(v)) else None for v in acc]
        out[f"{eval_split}_loss"] = [_num(v) for v in loss[:, -1]]
    if "train_accuracy" in result.epoch:
        out["train_accuracy"] = [_num(v) for v in result.epoch["train_accuracy"][:, -1]]
        out["gap"] = [None if a is None or b is None else a - b
                      for a, b in zip(out["train_accuracy"], out.get(f"{eval_split}_accuracy", []))]
    window = min(SMOOTHING, result.steps_per_epoch)
    losses = result.step["loss"]
    out["final_train_loss"] = [_num(np.mean(row[-window:])) for row in losses]
    out["final_train_error"] = [_num(row[-1]) for row in result.smoothed_error()]
    first = [_num(np.mean(row[:window])) for row in losses]
    # stable: finite all along, and it learned: the final loss at most STABLE_FRACTION
    # of the initial one (a run that merely does not blow up is not counted)
    out["stable"] = [
        float(d is None and f is not None and i is not None and f <= STABLE_FRACTION * i)
        for d, f, i in zip(diverged, out["final_train_loss"], first)
    ]
    out["diverged"] = [float(d is not None) for d in diverged]
    out["train_time"] = [float(t) for t in result.train_time]
    out["time_per_epoch"] = [float(t) / result.epochs for t in result.train_time]
    out["time_per_step"] = [float(t) / result.total_steps for t in result.train_time]
    out["compile_time"] = [float(result.compile_time)] * len(result.seeds)
    out["params"] = [float(result.num_params)] * len(result.seeds)
    return out


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------
# Summaries


def stat(values: Sequence) -> dict:
    """Mean, spread (sample std), min, max over seeds; `n` counts the defined values."""
    xs = verdicts_lib.finite(values)
    return {
        "mean": (sum(xs) / len(xs)) if xs else None,
        "std": verdicts_lib.spread(xs) if xs else None,
        "min": min(xs) if xs else None,
        "max": max(xs) if xs else None,
        "n": len(xs),
        "seeds": len(list(values)),
        "values": [_num(v) if v is not None else None for v in values],
    }


def format_stat(s: dict, fmt: str = ".3g") -> str:
    """"mean +/- std" (with "(k/n)" when only k of n seeds have a value)."""
    if s["mean"] is None:
        return "n/a" if s["seeds"] == 0 else "not reached"
    text = format(s["mean"], fmt)
    if s["n"] > 1 and s["min"] != s["max"]:
        text += " ± " + format(s["std"], fmt)
    if s["n"] < s["seeds"]:
        text += f" ({s['n']}/{s['seeds']})"
    return text


@dataclass(frozen=True)
class Column:
    """A report-table column: a scalar metric, its header and number format."""

    metric: str
    header: str
    fmt: str = ".3g"


# The columns several studies share.
TEST_ACCURACY = Column("test_accuracy", "test acc", ".4f")
FINAL_TRAIN_LOSS = Column("final_train_loss", "final train loss", ".3g")
LEARNING_RATE = Column("lr", "lr", ".3g")
DIVERGED = Column("diverged", "diverged", ".2f")
DEAD_MAX = Column("dead_max", "dead (max layer)", ".3f")


def steps_to_column(target: float) -> Column:
    """The column of the steps to a smoothed training error of `target`."""
    return Column(target_key(target), f"steps to {100 * target:g}%", ".0f")


def _jsonable(obj):
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


# ---------------------------------------------------------------------------------
# A run: the output folder, the progress bar, the results


def timestamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def new_run_dir(out: str, study: str) -> str:
    """<out>/<study>/<timestamp>[-k]: always a folder that did not exist before."""
    root = os.path.join(out, study)
    os.makedirs(root, exist_ok=True)
    stamp = timestamp()
    for k in itertools.count():
        path = os.path.join(root, stamp if k == 0 else f"{stamp}-{k}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError("unreachable")  # pragma: no cover


class Run:
    """One execution of a study: trains variants, writes files as results come in."""

    def __init__(self, settings: Settings, description: str = ""):
        self.settings = settings
        self.description = description
        self.data = DataStore(settings)
        self.dir: str | None = None
        self.results: dict[str, VariantResult] = {}
        self.searches: dict[str, dict] = {}
        self.table: dict[str, dict[str, list]] = {}
        self.verdicts: list[verdicts_lib.Verdict] = []
        self.plots: list[tuple[str, str]] = []
        self.columns: list[Column] = []
        self.notes: list[str] = []
        self.targets: tuple[float, ...] = ()
        self.config: dict = {}
        self.status = "running"
        self.start = time.perf_counter()
        self.bar = None

    # -- setup ------------------------------------------------------------------

    def load(self) -> None:
        """Loads the dataset (errors here mean bad arguments or missing files)."""
        self.data.get("standardize")

    def check_batch_size(self, batch_size: int) -> None:
        n = int(self.data.get("standardize").train.labels.shape[0])
        if batch_size > n:
            raise ValueError(
                f"--batch-size {batch_size} is larger than the {n} training examples"
                f"{' of --quick' if self.settings.quick else ''}; use at most {n}")

    def open(self) -> None:
        """Creates the run folder and writes config.json (after the data loaded)."""
        self.load()
        self.dir = new_run_dir(self.settings.out, self.settings.study)
        self.config = {
            "study": self.settings.study, "description": self.description,
            "settings": self.settings.as_dict(), "dataset": self.data.describe(),
            "variants": [], "started": datetime.datetime.now().isoformat(),
            "population": self.settings.population,
            "environment": {
                "python": platform.python_version(), "jax": jax.__version__,
                "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
                "cpu_count": os.cpu_count(), "platform": platform.platform(),
            },
        }
        self._write_json("config.json", self.config)
        open(self.path("metrics.jsonl"), "w").close()
        self.bar = tqdm(total=0, desc=self.settings.study, unit="step", dynamic_ncols=True,
                        mininterval=0.5, file=sys.stderr, leave=False)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def plan(self, variants: Sequence[Variant], *, seeds: int | None = None) -> None:
        """Adds the variants' training steps (times members) to the progress bar total."""
        seeds = self.settings.seeds if seeds is None else seeds
        for v in variants:
            data = self.data.get(v.normalize)
            n = data.train.labels.shape[0] if v.train_size is None else min(v.train_size, data.train.labels.shape[0])
            steps = (n // (v.batch_size or self.settings.batch_size)) * (v.epochs or self.settings.epochs)
            self.bar.total += steps * seeds * len(v.learning_rates(self.settings.lr))
            self.config["variants"].append(dict(v.describe(self.settings), seeds=seeds,
                                                vmap=use_vmap(v, self.settings)))
        self.bar.refresh()
        self._write_json("config.json", self.config)

    # -- training ---------------------------------------------------------------

    def train(self, variants: Sequence[Variant], *, targets: Sequence[float] | None = None,
              phase: str = "main") -> dict[str, VariantResult]:
        """Trains each variant (all seeds), writing its results as soon as it is done."""
        targets = self.targets if targets is None else tuple(targets)
        out = {}
        for variant in variants:
            for result in train_variant(variant, self.settings, self.data, bar=self.bar):
                smooth = result.smoothed_error()
                for t in targets:
                    result.scalars[target_key(t)] = [steps_to(row, t) for row in smooth]
                self.results[result.name] = result
                self.table[result.name] = dict(result.scalars)
                self._append_metrics(result, phase)
                out[result.name] = result
            self.write_summary()
        return out

    def add_metric(self, variant: str, metric: str, values: Sequence) -> None:
        """Adds a per-seed study metric to the table (shown in summary and report)."""
        self.table.setdefault(variant, {})[metric] = [None if v is None else _num(v) for v in values]

    # -- search -----------------------------------------------------------------

    def grid_search(self, name: str, make_variant: Callable[[dict], Variant],
                    grid: Mapping[str, Sequence], *, seeds: int = 1, score: str = "validation_accuracy"):
        """Tries every combination of `grid` on the validation split; returns the best.

        `make_variant(params)` builds the variant for one combination. A grid over the
        learning rate alone is trained as one population (all rates at once).
        """
        keys = list(grid)
        combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
        return self._search(name, make_variant, combos, seeds=seeds, score=score, kind="grid")

    def random_search(self, name: str, make_variant: Callable[[dict], Variant],
                      space: Mapping[str, "Sampler"], trials: int, *, seed: int = 0, seeds: int = 1,
                      score: str = "validation_accuracy"):
        """Draws `trials` combinations from `space` (name -> Sampler) and keeps the best."""
        rng = np.random.default_rng(seed)
        combos = [{k: s.draw(rng) for k, s in space.items()} for _ in range(trials)]
        return self._search(name, make_variant, combos, seeds=seeds, score=score, kind="random")

    def _search(self, name, make_variant, combos, *, seeds, score, kind):
        results: list[tuple[dict, float | None]] = []
        seed_list = list(range(seeds))
        if combos and all(set(c) == {"lr"} for c in combos):
            variant = make_variant({})
            variant = dataclasses.replace(variant, lr=tuple(c["lr"] for c in combos))
            trained = train_variant(variant, self.settings, self.data, bar=self.bar,
                                    eval_split="validation", seeds=seed_list)
            for combo, result in zip(combos, trained):
                results.append((combo, verdicts_lib.mean(result.scalars.get(score, []))))
                self._append_metrics(result, f"search:{name}")
        else:
            for combo in combos:
                (result,) = train_variant(make_variant(combo), self.settings, self.data, bar=self.bar,
                                          eval_split="validation", seeds=seed_list)
                results.append((combo, verdicts_lib.mean(result.scalars.get(score, []))))
                self._append_metrics(result, f"search:{name}")
        scored = [(c, s) for c, s in results if s is not None]
        best = max(scored, key=lambda cs: cs[1])[0] if scored else None
        self.searches[name] = {"kind": kind, "score": score, "best": best,
                               "trials": [{"params": c, "score": s} for c, s in results]}
        self.write_summary()
        return best, results

    # -- output -----------------------------------------------------------------

    def _write_json(self, name: str, obj) -> None:
        tmp = self.path(name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(_jsonable(obj), f, indent=1, allow_nan=False)
        os.replace(tmp, self.path(name))

    def _append_metrics(self, result: VariantResult, phase: str) -> None:
        base = {"phase": phase, "variant": result.name}
        lines = []
        for s, seed in enumerate(result.seeds):
            head = dict(base, seed=seed, lr=result.lr)
            for t in range(result.total_steps):
                row = dict(head, kind="step", step=t + 1, epoch=t // result.steps_per_epoch + 1,
                           time=float(result.step_time[s, t]))
                for key, arr in result.step.items():
                    row[key] = float(arr[s, t])
                lines.append(row)
            for e in range(result.epoch["time"].shape[1]):
                row = dict(head, kind="epoch", epoch=e, step=e * result.steps_per_epoch)
                for key, arr in result.epoch.items():
                    row[key] = float(arr[s, e])
                lines.append(row)
            for p, step in enumerate(result.probe_steps):
                row = dict(head, kind="probe", step=int(step))
                for key, arr in result.probes.items():
                    row[key] = float(arr[s, p])
                lines.append(row)
            row = dict(head, kind="summary")
            for key, values in result.scalars.items():
                row[key] = values[s]
            lines.append(row)
        with open(self.path("metrics.jsonl"), "a") as f:
            for row in lines:
                f.write(json.dumps(_jsonable(row), allow_nan=False) + "\n")

    def summary(self) -> dict:
        return {
            "study": self.settings.study,
            "status": self.status,
            "dataset": self.data.describe(),
            "settings": self.settings.as_dict(),
            "wall_time": time.perf_counter() - self.start,
            "variants": {name: {metric: stat(values) for metric, values in row.items()}
                         for name, row in self.table.items()},
            "searches": self.searches,
            "claims": [v.as_dict() for v in self.verdicts],
            "plots": [p for p, _ in self.plots],
        }

    def write_summary(self) -> None:
        self._write_json("summary.json", self.summary())
        self.write_report()

    def write_report(self) -> None:
        s = self.settings
        ds = self.data.describe()
        lines = [f"# {s.study}", ""]
        if self.description:
            lines += [self.description, ""]
        lines += [
            f"Dataset **{ds['name']}** (train {ds['train']}, validation {ds['validation']}, test "
            f"{ds['test']}; images {'x'.join(map(str, ds['image_shape']))}); {s.seeds} seed(s); "
            f"{s.epochs} epoch(s), batch {s.batch_size}, lr {s.lr:g} unless the variant says "
            f"otherwise; seeds trained {POPULATION_TEXT[s.population]}"
            f"{'; --quick' if s.quick else ''}. Status: {self.status}; wall time "
            f"{time.perf_counter() - self.start:.1f} s.", "",
        ]
        lines += self.notes and [*(f"- {n}" for n in self.notes), ""] or []
        columns = self.columns or [Column("test_accuracy", "test accuracy")]
        lines += [f"## Results (mean ± std over seeds)", ""]
        lines.append("| variant | " + " | ".join(c.header for c in columns) + " |")
        lines.append("|---|" + "---|" * len(columns))
        for name, row in self.table.items():
            cells = [format_stat(stat(row[c.metric]), c.fmt) if c.metric in row else "n/a" for c in columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        for name, search in self.searches.items():
            lines += [f"### Search `{name}` ({search['kind']}, score: {search['score']})", "",
                      "| params | score |", "|---|---|"]
            for t in search["trials"]:
                score = "n/a" if t["score"] is None else f"{t['score']:.4g}"
                lines.append(f"| {_fmt_params(t['params'])} | {score} |")
            lines += ["", f"best: {_fmt_params(search['best']) if search['best'] else 'none'}", ""]
        if self.verdicts:
            lines += ["## Claims", ""]
            for v in self.verdicts:
                lines.append(f"- **{v.status}**: {v.claim}. Measured: {v.evidence}")
            lines.append("")
        if self.plots:
            lines += ["## Plots", ""]
            for path, caption in self.plots:
                lines += [f"![{caption}]({os.path.basename(path)})", ""]
        with open(self.path("report.md.tmp"), "w") as f:
            f.write("\n".join(lines))
        os.replace(self.path("report.md.tmp"), self.path("report.md"))

    def add_plot(self, path: str, caption: str) -> None:
        self.plots.append((path, caption))

    def finish(self) -> None:
        self.status = "complete"
        self._append_study_metrics()
        self.write_summary()
        self._close_bar()

    def _append_study_metrics(self) -> None:
        """One "study" row per variant and seed with the metrics the study added."""
        with open(self.path("metrics.jsonl"), "a") as f:
            for name, row in self.table.items():
                result = self.results.get(name)
                standard = set(result.scalars) if result else set()
                extra = {k: v for k, v in row.items() if k not in standard}
                if not extra:
                    continue
                seeds = result.seeds if result else list(range(len(next(iter(extra.values())))))
                for s, seed in enumerate(seeds):
                    line = {"phase": "main", "variant": name, "seed": seed, "kind": "study"}
                    line.update({k: values[s] for k, values in extra.items()})
                    f.write(json.dumps(_jsonable(line), allow_nan=False) + "\n")

    def interrupt(self) -> None:
        self.status = "interrupted"
        if self.dir is not None:
            self.write_summary()
        self._close_bar()

    def _close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def print_claims(self, file=None) -> None:
        file = file or sys.stdout
        n = len(self.table)
        print(f"{self.settings.study} on {self.settings.dataset}: {n} variant(s) x {self.settings.seeds} "
              f"seed(s) in {time.perf_counter() - self.start:.1f} s; results in {self.dir}", file=file)
        if not self.verdicts:
            print("(no claims tested)", file=file)
        for v in self.verdicts:
            print(v.line(), file=file)
        counts = verdicts_lib.statuses(self.verdicts)
        print("claims: " + ", ".join(f"{k} {v}" for k, v in counts.items()), file=file)


def _fmt_params(params: Mapping) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class Sampler:
    """A distribution for `random_search`: LogUniform(low, high), Uniform(low, high) or
    Choice(values)."""

    def draw(self, rng):  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class LogUniform(Sampler):
    low: float
    high: float

    def __post_init__(self):
        if not (0 < self.low < self.high):
            raise ValueError(f"LogUniform({self.low}, {self.high}): expected 0 < low < high")

    def draw(self, rng):
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclass(frozen=True)
class Uniform(Sampler):
    low: float
    high: float

    def __post_init__(self):
        if not self.low < self.high:
            raise ValueError(f"Uniform({self.low}, {self.high}): expected low < high")

    def draw(self, rng):
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class Choice(Sampler):
    values: tuple

    def __post_init__(self):
        if not self.values:
            raise ValueError("Choice(): expected at least one value")

    def draw(self, rng):
        return self.values[int(rng.integers(len(self.values)))]


# ---------------------------------------------------------------------------------
# Common plots


def plot_training_error(run: Run, results: Mapping[str, VariantResult], *, name: str = "train_error.png",
                        targets: Sequence[float] = (), title: str | None = None) -> str:
    """Smoothed mini-batch training error against steps, one curve per variant."""
    floor = 1e-3
    series = [{"label": n, "x": np.arange(1, r.total_steps + 1), "runs": np.maximum(r.smoothed_error(), floor),
               "index": i} for i, (n, r) in enumerate(results.items())]
    path = plots.curves(run.path(name), series, xlabel="training step (log scale)",
                        ylabel=f"training error, mean of last {SMOOTHING} batches (0 drawn at {floor:g})",
                        title=title or f"{run.settings.study}: training error ({run.settings.dataset})",
                        logy=True, logx=True, hlines=targets, hline_label="error targets")
    run.add_plot(path, "training error vs step")
    return path


def plot_epoch_metric(run: Run, results: Mapping[str, VariantResult], key: str, *, name: str,
                      ylabel: str, logy: bool = False, title: str | None = None) -> str:
    """A per-epoch metric (epoch 0 = initialisation) against epochs."""
    series = [{"label": n, "x": np.arange(r.epoch[key].shape[1]), "runs": r.epoch[key], "index": i}
              for i, (n, r) in enumerate(results.items()) if key in r.epoch]
    path = plots.curves(run.path(name), series, xlabel="epoch", ylabel=ylabel,
                        title=title or f"{run.settings.study}: {ylabel} ({run.settings.dataset})",
                        logy=logy)
    run.add_plot(path, f"{ylabel} vs epoch")
    return path


# ---------------------------------------------------------------------------------
# Reading probes


def _layer_order(label: str):
    kind = label.rstrip("0123456789")
    number = label[len(kind):]
    return ({"conv": 0, "dense": 1}.get(kind, 2), int(number) if number else 0, label)


def probe_layers(result: VariantResult, prefix: str) -> list[str]:
    """Layer labels with a "<prefix>/<layer>" probe, in forward order."""
    labels = [k.split("/", 1)[1] for k in result.probes if k.startswith(prefix + "/")]
    return sorted(labels, key=_layer_order)


def probe_at(result: VariantResult, key: str, index: int = -1) -> list:
    """Per-seed values of a probe at one probe point (0: initialisation, -1: the end)."""
    if key not in result.probes:
        return [None] * len(result.seeds)
    return [_num(v) for v in result.probes[key][:, index]]


def probe_mean(result: VariantResult, key: str) -> list:
    """Per-seed mean of a probe over all probe points (initialisation to the end)."""
    if key not in result.probes:
        return [None] * len(result.seeds)
    with np.errstate(all="ignore"):
        return [_num(np.nanmean(row)) if np.any(np.isfinite(row)) else None for row in result.probes[key]]


def time_to(result: VariantResult, steps: Sequence) -> list:
    """Per-seed wall time (s) after the given number of steps (None stays None)."""
    return [None if s is None else float(result.step_time[i, s - 1]) for i, s in enumerate(steps)]


def layer_bars(run: Run, results: Mapping[str, VariantResult], panels: Sequence[tuple[str, int | None, str]],
               *, name: str, title: str, logy: bool = False, caption: str = "") -> str:
    """Grouped bars per layer, one panel per (probe prefix, probe index or None for the
    mean over training, y label)."""
    fig, axes = plots.figure(1, len(panels))
    for ax, (prefix, index, ylabel) in zip(axes, panels):
        layers = []
        for r in results.values():
            for layer in probe_layers(r, prefix):
                if layer not in layers:
                    layers.append(layer)
        layers.sort(key=_layer_order)
        series = {}
        for vname, r in results.items():
            if not probe_layers(r, prefix):
                continue
            pick = (lambda key: probe_mean(r, key)) if index is None else (lambda key: probe_at(r, key, index))
            series[vname] = [pick(f"{prefix}/{layer}") for layer in layers]
        when = "mean over training" if index is None else ("at initialisation" if index == 0 else "after training")
        plots.grouped_bars(ax, layers, series, ylabel=ylabel, title=f"{ylabel} ({when})", logy=logy,
                           legend=ax is axes[0], colors={n: i for i, n in enumerate(results)})
    fig.suptitle(title)
    path = plots.save(fig, run.path(name))
    run.add_plot(path, caption or title)
    return path
