"""`fit`: the training engine plus progress bar, evaluation, logs and checkpoints.

    result = fit(model, loss_fn, optimizer, params, state, (images, labels),
                 epochs=10, batch_size=64, eval_data=(test_images, test_labels),
                 out_dir="runs/digits")

Each epoch runs the train step through `fcnn.train.engine.train_steps` over a
`fcnn.data.BatchIterator` (fixed batch shape, so the step compiles once), shows a
tqdm bar with the running loss and accuracy, evaluates on `eval_data`, appends one
JSON line to `out_dir/metrics.jsonl` and writes a checkpoint to `out_dir/checkpoints/`
(also every `checkpoint_every` steps, if given). Step metrics stay on the device and
are pulled to the host every `log_every` steps and before every checkpoint, which is
also when they are checked: if the loss, a gradient or a parameter becomes NaN or
infinite, training stops with a message naming the step and the first non-finite
quantity, and no checkpoint is written after it, so the last good one is kept.

Resuming (`resume=True`) restores params, state, optimizer state, rng, step and the
data iterator position from the latest checkpoint, also one written mid-epoch: the
rest of the run is bit-identical to a run that was never stopped, because the engine
gives step t the rng fold_in(rng, t), the data order of epoch e is a function of
(seed, e), and a mid-epoch checkpoint carries the epoch's running metric sums.
A process killed at any moment (even while writing a checkpoint) leaves the
previous checkpoint as the latest valid one; leftovers of the interrupted write are
removed when the next run starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from tqdm.auto import tqdm

from fcnn._checks import positive_int
from fcnn.data import BatchIterator
from fcnn.train import checkpoint as ckpt
from fcnn.train.engine import train_steps
from fcnn.train.evaluation import eval_batches, evaluate, evaluate_batches  # noqa: F401
from fcnn.train.step import (
    describe_nonfinite,
    init_opt_state,
    make_eval_step,
    make_train_step,
)

ON_NONFINITE = ("stop", "raise")


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or infinite loss, gradient or parameter."""


@dataclass
class FitResult:
    """What `fit` returns.

    `stopped` is None after a complete run, else the message saying why training
    stopped early; `checkpoint` is the .json path of the last checkpoint written (the
    last good one when `stopped`).
    """

    params: Any
    state: Any
    opt_state: Any
    step: int
    epoch: int
    history: list = field(default_factory=list)
    stopped: str | None = None
    checkpoint: str | None = None


def split_arrays(data, name: str):
    """(images, labels) from a pair or a split with `.images` and `.labels`; None stays None."""
    if data is None:
        return None
    if hasattr(data, "images") and hasattr(data, "labels"):
        return data.images, data.labels
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data[0], data[1]
    raise TypeError(
        f"{name}={type(data).__name__}: expected (images, labels) or a split with "
        ".images and .labels (e.g. load_dataset(...).train)"
    )


# ---------------------------------------------------------------------------------
# The run folder: metrics.jsonl and checkpoints/


@dataclass
class _RunDir:
    """`out_dir` with its metrics log and checkpoint folder."""

    path: str

    @property
    def metrics(self) -> str:
        return os.path.join(self.path, "metrics.jsonl")

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.path, "checkpoints")

    @classmethod
    def open(cls, out_dir) -> "_RunDir":
        """Creates the folder; removes leftovers of a write cut by a crash."""
        run = cls(os.fspath(out_dir))
        os.makedirs(run.path, exist_ok=True)
        ckpt.remove_partial(run.checkpoints)
        for name in os.listdir(run.path):
            if name.startswith(".metrics.jsonl.") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(run.path, name))
                except FileNotFoundError:
                    pass
        return run

    def start_fresh(self, overwrite: bool) -> None:
        earlier = ckpt.list_checkpoints(self.checkpoints)
        if earlier and not overwrite:
            raise ValueError(
                f"out_dir={self.path!r} holds checkpoints of an earlier run (latest "
                f"{earlier[-1]!r}): pass resume=True to continue it, overwrite=True to "
                "replace it, or another out_dir"
            )
        for old in earlier:
            ckpt._remove(old)
        if os.path.exists(self.metrics):
            os.unlink(self.metrics)  # a fresh run starts a fresh log

    def history_until(self, last_epoch: int) -> list[dict]:
        """The logged epoch records up to `last_epoch`, rewritten as the whole log."""
        kept = []
        if os.path.exists(self.metrics):
            with open(self.metrics) as f:
                for line in f:
                    try:
                        record = json.loads(line) if line.strip() else None
                    except json.JSONDecodeError:
                        continue  # a line cut by a crash
                    if record and record.get("epoch", 0) <= last_epoch and "stopped" not in record:
                        kept.append(record)
        text = "".join(json.dumps(r) + "\n" for r in kept).encode()
        ckpt._atomic_write(self.metrics, lambda f: f.write(text))
        return kept

    def append(self, record: dict) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------------
# Where a run starts, and the running sums of an epoch


@dataclass
class _Position:
    """The training position: what a checkpoint restores."""

    params: Any
    state: Any
    opt_state: Any
    rng: Any
    step: int = 0
    data: tuple = (0, 0)  # (epoch, batch) of the data iterator
    history: list = field(default_factory=list)
    sums: "_EpochSums | None" = None
    checkpoint: str | None = None


@dataclass
class _EpochSums:
    """Running sums of an epoch's step metrics (a mid-epoch checkpoint keeps them)."""

    loss: float = 0.0
    accuracy: float = 0.0
    seen: int = 0
    learning_rate: float | None = None

    def add(self, metrics: dict) -> None:
        self.loss += float(metrics["loss"])
        self.accuracy += float(metrics["accuracy"])
        self.seen += 1
        if "learning_rate" in metrics:
            self.learning_rate = float(metrics["learning_rate"])

    def record(self, epoch: int, step: int) -> dict:
        record = {"epoch": epoch, "step": step, "train_loss": self.loss / max(self.seen, 1),
                  "train_accuracy": self.accuracy / max(self.seen, 1)}
        if self.learning_rate is not None:
            record["learning_rate"] = self.learning_rate
        return record


def _restore(run: _RunDir | None, resume, start: _Position, run_info: dict) -> _Position:
    """The position to train from: `start`, or the checkpoint `resume` names."""
    found = None
    if resume:
        found = ckpt.latest_checkpoint(run.checkpoints) if resume is True else resume
    if found is None:
        return start
    restored = ckpt.load_checkpoint(found, params=start.params, state=start.state,
                                    opt_state=start.opt_state)
    saved = {k: restored["extra"].get(k) for k in run_info}
    if saved != run_info:
        raise ValueError(
            f"cannot resume from {restored['path']!r}: it was written with {saved}, "
            f"this run has {run_info}; the data order would differ"
        )
    position = restored["position"]
    partial = restored["extra"].get("partial_epoch") if position[1] else None
    return _Position(
        restored["params"], restored["state"], restored["opt_state"], restored["rng"],
        restored["step"], position,
        history=run.history_until(position[0]) if run is not None else [],
        sums=_EpochSums(**partial) if partial else None, checkpoint=restored["path"])


def _first_nonfinite(host: list[dict]) -> tuple[int, int] | None:
    """(index in `host`, code) of the first step whose metrics are not all finite."""
    for j, metrics in enumerate(host):
        code = int(metrics.get("nonfinite", 0))
        if code == 0 and not math.isfinite(float(metrics["loss"])):
            code = 1
        if code:
            return j, code
    return None


# ---------------------------------------------------------------------------------
# fit


@dataclass
class _Fit:
    """Everything fixed for one call of `fit` (arguments resolved, steps built)."""

    train_step: Any
    eval_step: Any
    iterator: BatchIterator
    eval_set: list | None
    epochs: int
    trainable: Any
    run: _RunDir | None
    run_info: dict
    keep: int | None
    checkpoint_every: int | None
    log_every: int
    progress: bool

    def save(self, pos: _Position, extra: dict) -> str:
        return ckpt.save_checkpoint(
            self.run.checkpoints, pos.step, params=pos.params, state=pos.state,
            opt_state=pos.opt_state, rng=pos.rng, position=self.iterator.position,
            keep=self.keep, extra=dict(self.run_info, **extra))

    def stop_message(self, pos: _Position, step: int, epoch: int, batch: int, code: int) -> str:
        what = describe_nonfinite(code, pos.params, self.trainable)
        last = (f"The last good checkpoint is {pos.checkpoint}." if pos.checkpoint
                else "No checkpoint was written before it.")
        return f"training stopped at step {step} (epoch {epoch + 1}, batch {batch}): {what}. {last}"

    def train_epoch(self, pos: _Position, epoch: int) -> str | None:
        """Trains the rest of epoch `epoch` from `pos` (updated in place); returns the
        stop message if a step was not finite, else None."""
        spe = self.iterator.steps_per_epoch
        first = self.iterator.position[1]
        sums = pos.sums or _EpochSums()
        pos.sums = None
        bar = tqdm(total=spe, initial=first, desc=f"epoch {epoch + 1}/{self.epochs}",
                   disable=not self.progress, leave=False, file=sys.stderr, dynamic_ncols=True)
        pending: list = []
        steps = train_steps(self.train_step, pos.params, pos.state, pos.opt_state, self.iterator,
                            pos.rng, first_step=pos.step, count=spe - first)
        try:
            for i, out in enumerate(steps):
                pos.params, pos.state, pos.opt_state = out.params, out.state, out.opt_state
                pending.append(out.metrics)
                pos.step += 1
                last_of_epoch = first + i + 1 == spe
                # the end of the epoch writes its own checkpoint, after the epoch's record
                save_now = (self.checkpoint_every is not None and not last_of_epoch
                            and pos.step % self.checkpoint_every == 0)
                if len(pending) < self.log_every and not last_of_epoch and not save_now:
                    continue
                host, pending = jax.device_get(pending), []
                bad = _first_nonfinite(host)
                for metrics in host[:None if bad is None else bad[0]]:
                    sums.add(metrics)
                bar.update(len(host))
                if sums.seen:
                    bar.set_postfix(loss=f"{sums.loss / sums.seen:.4f}",
                                    acc=f"{sums.accuracy / sums.seen:.3f}")
                if bad is not None:
                    later = len(host) - 1 - bad[0]  # steps run after the bad one
                    return self.stop_message(pos, pos.step - later, epoch, first + i + 1 - later,
                                             bad[1])
                if save_now:  # every step so far was checked just above
                    pos.checkpoint = self.save(pos, dict(
                        epoch=epoch, partial_epoch=dataclasses.asdict(sums)))
        finally:
            bar.close()
        pos.sums = sums
        return None

    def end_epoch(self, pos: _Position, epoch: int, started: float) -> dict:
        record = pos.sums.record(epoch + 1, pos.step)
        pos.sums = None
        if self.eval_set is not None:
            ev = evaluate_batches(self.eval_step, pos.params, pos.state, self.eval_set)
            record["eval_loss"], record["eval_accuracy"] = ev["loss"], ev["accuracy"]
        record["seconds"] = time.perf_counter() - started
        pos.history.append(record)
        if self.progress:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "step"))
            tqdm.write(f"epoch {epoch + 1}/{self.epochs}: {shown}", file=sys.stderr)
        if self.run is not None:
            self.run.append(record)
            pos.checkpoint = self.save(pos, dict(epoch=epoch + 1))
        return record


def _check_fit_arguments(epochs, log_every, eval_batch_size, keep, on_nonfinite, resume, out_dir,
                         checkpoint_every):
    """Checked here, not where they are first used (after an epoch of training)."""
    positive_int(epochs, "epochs")
    positive_int(log_every, "log_every")
    positive_int(eval_batch_size, "eval_batch_size")
    keep = ckpt.check_keep(keep)
    if on_nonfinite not in ON_NONFINITE:
        raise ValueError(f"on_nonfinite={on_nonfinite!r}: expected one of {ON_NONFINITE}")
    if resume and out_dir is None and not isinstance(resume, (str, os.PathLike)):
        raise ValueError("resume=True needs out_dir= (where the checkpoints are)")
    if checkpoint_every is not None:
        checkpoint_every = positive_int(checkpoint_every, "checkpoint_every")
        if out_dir is None:
            raise ValueError(
                f"checkpoint_every={checkpoint_every} needs out_dir= (where the checkpoints go)"
            )
    return keep, checkpoint_every


def fit(
    model,
    loss_fn,
    optimizer,
    params,
    state,
    train_data,
    *,
    epochs: int,
    batch_size: int = 64,
    seed: int = 0,
    eval_data=None,
    eval_batch_size: int = 256,
    opt_state=None,
    trainable=None,
    penalty=None,
    out_dir=None,
    keep: int = 3,
    checkpoint_every: int | None = None,
    resume=False,
    overwrite: bool = False,
    progress: bool = True,
    on_nonfinite: str = "stop",
    log_every: int = 25,
    balanced: bool = False,
    train_step=None,
    eval_step=None,
    data_device=None,
    check_finite: bool = True,
) -> FitResult:
    """Trains `model` for `epochs` epochs; returns a `FitResult`.

    Args:
      model, loss_fn, optimizer, trainable, penalty: as for `make_train_step`.
      params, state: the starting point (copied: the caller's arrays stay valid).
      train_data, eval_data: (images, labels) or a split with `.images` / `.labels`.
      seed: fixes the data order (`BatchIterator` seed) and the rng of every step.
      opt_state: default `init_opt_state(optimizer, params, trainable)`.
      out_dir: where `metrics.jsonl` and `checkpoints/` go (None: nothing written).
      keep: checkpoints kept (the newest).
      checkpoint_every: also write a checkpoint every this many steps (counted over
        the whole run), not only at the end of each epoch; needs `out_dir`.
      resume: True to continue from the latest checkpoint in `out_dir` if there is
        one, or the path of a checkpoint to continue from.
      overwrite: for a fresh run into an `out_dir` holding an earlier run's
        checkpoints, delete them (and its metrics.jsonl); otherwise that is an error.
      on_nonfinite: "stop" (print the message, return with `stopped` set) or "raise"
        (`NonFiniteError`).
      log_every: steps between pulls of the metrics to the host (bar update, checks).
      train_step, eval_step: prebuilt steps with the same signatures (e.g. sharded);
        default `make_train_step(...)` / `make_eval_step(...)`.
      data_device: device or sharding the batches are put on (default device).
    """
    keep, checkpoint_every = _check_fit_arguments(
        epochs, log_every, eval_batch_size, keep, on_nonfinite, resume, out_dir, checkpoint_every)
    images, labels = split_arrays(train_data, "train_data")
    eval_arrays = split_arrays(eval_data, "eval_data")
    # Built first: it validates batch_size, seed and the arrays before any compile.
    iterator = BatchIterator(images, labels, batch_size, seed=seed, drop_last=True,
                             balanced=balanced, device=data_device)
    if train_step is None:
        train_step = make_train_step(model, loss_fn, optimizer, trainable=trainable,
                                     penalty=penalty, check_finite=check_finite)
    if eval_step is None and eval_arrays is not None:
        eval_step = make_eval_step(model, loss_fn)
    run = _RunDir.open(out_dir) if out_dir is not None else None
    job = _Fit(train_step, eval_step, iterator,
               None if eval_arrays is None else eval_batches(*eval_arrays, eval_batch_size, data_device),
               epochs, trainable, run,
               {"seed": int(seed), "batch_size": int(batch_size), "balanced": bool(balanced),
                "steps_per_epoch": iterator.steps_per_epoch},
               keep, checkpoint_every, log_every, progress)
    # The step donates its inputs: train on copies so the caller's arrays stay valid.
    params, state = jax.tree.map(jnp.copy, params), jax.tree.map(jnp.copy, state)
    opt_state = (init_opt_state(optimizer, params, trainable) if opt_state is None
                 else jax.tree.map(jnp.copy, opt_state))
    pos = _restore(run, resume, _Position(params, state, opt_state, jax.random.PRNGKey(seed)),
                   job.run_info)
    if pos.checkpoint is None and run is not None:
        run.start_fresh(overwrite)
    iterator.seek(pos.data)
    done = pos.data[0]
    for epoch in range(pos.data[0], epochs):
        started = time.perf_counter()
        stopped = job.train_epoch(pos, epoch)
        if stopped:
            if run is not None:
                run.append({"epoch": epoch + 1, "step": pos.step, "stopped": stopped})
            if on_nonfinite == "raise":
                raise NonFiniteError(stopped)
            tqdm.write(stopped, file=sys.stderr)
            return FitResult(pos.params, pos.state, pos.opt_state, pos.step, epoch, pos.history,
                             stopped, pos.checkpoint)
        job.end_epoch(pos, epoch, started)
        done = epoch + 1
    return FitResult(pos.params, pos.state, pos.opt_state, pos.step, done, pos.history, None,
                     pos.checkpoint)


__all__ = ["FitResult", "NonFiniteError", "evaluate", "fit", "split_arrays"]
