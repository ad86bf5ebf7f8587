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
import numpy as np
from tqdm.auto import tqdm

from fcnn._checks import check_number, positive_int
from fcnn.data import BatchIterator
from fcnn.layers.base import count_params
from fcnn.train import callbacks as callbacks_lib
from fcnn.train import checkpoint as ckpt
from fcnn.train import parallel
from fcnn.train.engine import train_steps
from fcnn.train.evaluation import check_labels, eval_batches, evaluate_batches
from fcnn.train.population import set_hyperparams
from fcnn.train.step import (
    check_descends,
    current_learning_rate,
    describe_nonfinite,
    init_opt_state,
    make_eval_step,
    make_train_step,
)

ON_NONFINITE = ("stop", "raise")


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or infinite loss, gradient or parameter, or diverged."""


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C during `fit`: `message` says where it stopped, `result` holds the run so far
    (its `checkpoint` is the last one written)."""

    def __init__(self, message: str, result: "FitResult"):
        super().__init__(message)
        self.message, self.result = message, result


@dataclass
class FitResult:
    """What `fit` returns.

    `stopped` is None after a complete run, else the message saying why training
    stopped early (a callback such as early stopping, or `nonfinite`: a NaN, an
    infinity or a diverging loss); `checkpoint` is the .json path of the last
    checkpoint written (the last good one when `nonfinite`).
    """

    params: Any
    state: Any
    opt_state: Any
    step: int
    epoch: int
    history: list = field(default_factory=list)
    stopped: str | None = None
    checkpoint: str | None = None
    nonfinite: bool = False

    def __repr__(self) -> str:
        """One line: where training ended, not the arrays (see .history for the log)."""
        stopped = self.stopped
        if stopped is not None and len(stopped) > 60:
            stopped = stopped[:57] + "..."
        return (f"FitResult(step={self.step}, epoch={self.epoch}, stopped={stopped!r}, "
                f"checkpoint={self.checkpoint!r}, params={count_params(self.params):,})")


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
    """`out_dir` with its metrics log and checkpoint folder; only the `writer` process
    (process 0 of a multi-process run) writes to it, the others only read."""

    path: str
    writer: bool = True

    @property
    def metrics(self) -> str:
        return os.path.join(self.path, "metrics.jsonl")

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.path, "checkpoints")

    @property
    def best(self) -> str:
        return os.path.join(self.path, "checkpoints", "best")

    @classmethod
    def open(cls, out_dir, writer: bool = True) -> "_RunDir":
        """Creates the folder; removes leftovers of a write cut by a crash."""
        run = cls(os.fspath(out_dir), writer)
        if not writer:
            return run
        os.makedirs(run.path, exist_ok=True)
        ckpt.remove_partial(run.checkpoints)
        ckpt.remove_partial(run.best)
        for name in os.listdir(run.path):
            if name.startswith(".metrics.jsonl.") and name.endswith(".tmp"):
                try:
                    os.unlink(os.path.join(run.path, name))
                except FileNotFoundError:
                    pass
        return run

    def start_fresh(self, overwrite: bool) -> None:
        earlier = ckpt.list_checkpoints(self.checkpoints)
        if not self.writer:
            return
        if earlier and not overwrite:
            raise ValueError(
                f"out_dir={self.path!r} holds checkpoints of an earlier run (latest "
                f"{earlier[-1]!r}): pass resume=True to continue it, overwrite=True to "
                "replace it, or another out_dir"
            )
        for old in earlier + ckpt.list_checkpoints(self.best):
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
        if self.writer:
            text = "".join(json.dumps(r) + "\n" for r in kept).encode()
            ckpt._atomic_write(self.metrics, lambda f: f.write(text))
        return kept

    def append(self, record: dict) -> None:
        if not self.writer:
            return
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
    reference_loss: float | None = None  # the first step's loss, the divergence yardstick
    callbacks: list = field(default_factory=list)  # the callbacks' states
    stopped: str | None = None  # why a callback ended the run


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
    extra = restored["extra"]
    saved = {k: extra.get(k) for k in run_info}
    if saved != run_info:
        raise ValueError(
            f"cannot resume from {restored['path']!r}: it was written with {saved}, "
            f"this run has {run_info}; the data order would differ"
        )
    position = restored["position"]
    partial = extra.get("partial_epoch") if position[1] else None
    return _Position(
        restored["params"], restored["state"], restored["opt_state"], restored["rng"],
        restored["step"], position,
        history=run.history_until(position[0]) if run is not None else [],
        sums=_EpochSums(**partial) if partial else None, checkpoint=restored["path"],
        reference_loss=extra.get("reference_loss"), callbacks=extra.get("callbacks", []),
        stopped=extra.get("stopped"))


def _first_bad(host: list[dict], reference: float | None, divergence: float | None):
    """(index in `host`, code, loss) of the first step that is not finite (code from
    the step's check, 1 for the loss) or diverging (code 0: loss > divergence x the
    reference loss); None when every step is fine."""
    for j, metrics in enumerate(host):
        loss = float(metrics["loss"])
        code = int(metrics.get("nonfinite", 0)) or (0 if math.isfinite(loss) else 1)
        if code:
            return j, code, loss
        if divergence is not None and reference is not None and loss > divergence * abs(reference):
            return j, 0, loss
    return None


class _Control:
    """What a callback may do to the run (see fcnn.train.callbacks)."""

    def __init__(self, job: "_Fit", pos: _Position):
        self._job, self._pos = job, pos

    def stop(self, reason: str) -> None:
        self._pos.stopped = reason

    @property
    def learning_rate(self) -> float | None:
        lr = current_learning_rate(self._pos.opt_state)
        return None if lr is None else float(lr)

    def set_learning_rate(self, value: float) -> None:
        self._pos.opt_state = set_hyperparams(self._pos.opt_state, {"learning_rate": value})
        tqdm.write(f"learning rate set to {value:.4g}", file=sys.stderr)

    def save_best(self, note: str) -> None:
        if self._job.run is not None:
            self._job.save(self._pos, {"best": note}, folder=self._job.run.best)


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
    divergence: float | None
    callbacks: tuple
    board: Any
    model: Any

    def save(self, pos: _Position, extra: dict, folder: str | None = None) -> str:
        folder = folder or self.run.checkpoints
        if not self.run.writer:  # process 0 writes it
            return ckpt.checkpoint_path(folder, pos.step)
        states = [cb.state() for cb in self.callbacks if hasattr(cb, "state")]
        params, state, opt_state, rng = parallel.to_host((pos.params, pos.state, pos.opt_state, pos.rng))
        return ckpt.save_checkpoint(
            folder, pos.step, params=params, state=state,
            opt_state=opt_state, rng=rng, position=self.iterator.position, model=self.model,
            keep=1 if folder != self.run.checkpoints else self.keep,
            extra=dict(self.run_info, reference_loss=pos.reference_loss, callbacks=states,
                       **extra))

    def stop_message(self, pos: _Position, step: int, epoch: int, batch: int, bad) -> str:
        _, code, loss = bad
        if code:
            what = describe_nonfinite(code, pos.params, self.trainable)
        else:
            what = (f"the loss {loss:.4g} is over {self.divergence:g} times the first step's loss "
                    f"{pos.reference_loss:.4g}: training is diverging (a learning rate too large, "
                    "or of the wrong sign?)")
        last = (f"The last good checkpoint is {pos.checkpoint}." if pos.checkpoint
                else "No checkpoint was written before it.")
        return f"training stopped at step {step} (epoch {epoch + 1}, batch {batch}): {what}. {last}"

    def train_epoch(self, pos: _Position, epoch: int) -> str | None:
        """Trains the rest of epoch `epoch` from `pos` (updated in place); returns the
        stop message if a step was not finite or diverged, else None."""
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
                host, pending = parallel.to_host(pending), []
                if pos.reference_loss is None:
                    pos.reference_loss = float(host[0]["loss"])
                bad = _first_bad(host, pos.reference_loss, self.divergence)
                for metrics in host[:None if bad is None else bad[0]]:
                    sums.add(metrics)
                bar.update(len(host))
                if sums.seen:
                    bar.set_postfix(loss=f"{sums.loss / sums.seen:.4f}",
                                    acc=f"{sums.accuracy / sums.seen:.3f}")
                if bad is not None:
                    later = len(host) - 1 - bad[0]  # steps run after the bad one
                    return self.stop_message(pos, pos.step - later, epoch, first + i + 1 - later, bad)
                if self.board is not None:
                    self.board.add_scalar("step/train_loss", float(host[-1]["loss"]), pos.step)
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
        if self.board is not None:
            for key, value in record.items():
                if key not in ("epoch", "step"):
                    self.board.add_scalar(f"epoch/{key}", value, pos.step)
            self.board.flush()
        control = _Control(self, pos)
        for callback in self.callbacks:
            callbacks_lib.call(callback, record, control)
        if self.run is not None:
            self.run.append(record if pos.stopped is None else dict(record, stopped=pos.stopped))
            pos.checkpoint = self.save(pos, dict(epoch=epoch + 1, stopped=pos.stopped))
        return record

    def interrupted(self, pos: _Position) -> str:
        epoch, batch = divmod(pos.step, self.iterator.steps_per_epoch)  # steps done
        where = (f"the last checkpoint is {pos.checkpoint}; resume with fit(..., resume=True)"
                 if pos.checkpoint else "no checkpoint was written")
        return f"interrupted after step {pos.step} (epoch {epoch + 1}, batch {batch}); {where}"


def _check_fit_arguments(epochs, log_every, eval_batch_size, keep, on_nonfinite, resume, out_dir,
                         checkpoint_every, divergence):
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
    if divergence is not None:
        divergence = check_number(divergence, "divergence", low=1.0, low_open=True)
    return keep, checkpoint_every, divergence


def _tensorboard(run: _RunDir | None, enabled: bool):
    """A TensorBoard SummaryWriter on out_dir/tensorboard/, or None."""
    if not enabled:
        return None
    if run is None:
        raise ValueError("tensorboard=True needs out_dir= (where the event files go)")
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError("tensorboard=True needs the tensorboardX package: "
                          "pip install 'fcnn[tensorboard]'") from None
    return SummaryWriter(os.path.join(run.path, "tensorboard"))


def _checked_data(model, optimizer, params, trainable, train_data, eval_data, batch_size, seed,
                  balanced, data_device):
    """(BatchIterator over train_data, eval (images, labels) or None), after checking the
    arrays, the labels against the model's outputs and the optimizer's direction."""
    images, labels = split_arrays(train_data, "train_data")
    eval_arrays = split_arrays(eval_data, "eval_data")
    # Built first: it validates batch_size, seed and the arrays before any compile.
    iterator = BatchIterator(images, labels, batch_size, seed=seed, drop_last=True,
                             balanced=balanced, device=data_device)
    check_labels(model, None, np.shape(images), labels, name="train_data labels",
                 logits_only=False)
    if eval_arrays is not None:
        check_labels(model, None, np.shape(eval_arrays[0]), eval_arrays[1], name="eval_data labels",
                     logits_only=False)
    if optimizer is not None:
        check_descends(optimizer, params, trainable)
    return iterator, eval_arrays


def _start(job, pos, resume, overwrite: bool, mesh):
    """The position training starts from: `pos`, or the checkpoint `resume` names, with
    the run folder, callbacks and data order set to match."""
    pos = _restore(job.run, resume, pos, job.run_info)
    if mesh is not None:  # every process holds the same values: replicate them on the mesh
        pos.params, pos.state, pos.opt_state = parallel.replicate(
            (pos.params, pos.state, pos.opt_state), mesh)
    if pos.checkpoint is None and job.run is not None:
        job.run.start_fresh(overwrite)
    elif pos.checkpoint is not None and job.progress:
        tqdm.write(f"resumed from step {pos.step} ({pos.checkpoint})", file=sys.stderr)
    for callback, saved in zip([cb for cb in job.callbacks if hasattr(cb, "state")], pos.callbacks):
        callback.restore(saved)
    job.iterator.seek(pos.data)
    return pos


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
    augment=None,
    callbacks=(),
    out_dir=None,
    keep: int = 3,
    checkpoint_every: int | None = None,
    resume=False,
    overwrite: bool = False,
    progress: bool = True,
    tensorboard: bool = False,
    on_nonfinite: str = "stop",
    divergence: float | None = 1e4,
    log_every: int = 25,
    balanced: bool = False,
    train_step=None,
    eval_step=None,
    data_device=None,
    mesh=None,
    check_finite: bool = True,
) -> FitResult:
    """Trains `model` for `epochs` epochs; returns a `FitResult`.

    Args:
      model, loss_fn, optimizer, trainable, penalty, augment: as for `make_train_step`
        (`augment(rng, image) -> image` runs inside the compiled step, per example).
      params, state: the starting point (copied: the caller's arrays stay valid).
      train_data, eval_data: (images, labels) or a split with `.images` / `.labels`;
        every label must be a class the model outputs (checked before training).
      seed: fixes the data order (`BatchIterator` seed) and the rng of every step.
      opt_state: default `init_opt_state(optimizer, params, trainable)`.
      callbacks: called after every epoch (fcnn.train.callbacks: EarlyStopping,
        KeepBest, ReduceOnPlateau, or a function record -> None | "stop").
      out_dir: where `metrics.jsonl` and `checkpoints/` go (None: nothing written).
      keep: checkpoints kept (the newest).
      checkpoint_every: also write a checkpoint every this many steps (counted over
        the whole run), not only at the end of each epoch; needs `out_dir`.
      resume: True to continue from the latest checkpoint in `out_dir` if there is
        one, or the path of a checkpoint to continue from.
      overwrite: for a fresh run into an `out_dir` holding an earlier run's
        checkpoints, delete them (and its metrics.jsonl); otherwise that is an error.
      tensorboard: also write TensorBoard event files to out_dir/tensorboard/.
      on_nonfinite: "stop" (print the message, return with `stopped` set) or "raise"
        (`NonFiniteError`) when the loss, a gradient or a parameter is not finite, or
        the loss exceeds `divergence` times the first step's loss (None: no such check).
      log_every: steps between pulls of the metrics to the host (bar update, checks).
      train_step, eval_step: prebuilt steps with the same signatures (e.g. sharded);
        default `make_train_step(...)` / `make_eval_step(...)`.
      data_device: device or sharding the batches are put on (default device).
      mesh: train data-parallel over this device mesh (`fcnn.train.parallel.make_mesh`):
        batches sharded over it, params replicated. The default, with several processes
        (`fcnn.train.parallel.initialize`), is a mesh over every device of every process;
        each process then puts only its own rows of every global batch on its devices,
        and process 0 alone writes checkpoints, metrics and the progress bar.

    Ctrl-C stops training with one line saying where and how to resume, and raises
    `FitInterrupted` (a KeyboardInterrupt) carrying the result so far.
    """
    keep, checkpoint_every, divergence = _check_fit_arguments(
        epochs, log_every, eval_batch_size, keep, on_nonfinite, resume, out_dir, checkpoint_every,
        divergence)
    callbacks = callbacks_lib.check_callbacks(callbacks)
    if mesh is None and jax.process_count() > 1:
        mesh = parallel.make_mesh()
    if mesh is not None:
        parallel.check_divisible(positive_int(batch_size, "batch_size"), mesh)
        data_device = parallel.batch_sharding(mesh)
    main = parallel.is_main_process()
    iterator, eval_arrays = _checked_data(model, optimizer, params, trainable, train_data, eval_data,
                                          batch_size, seed, balanced, data_device)
    if train_step is None:
        options = dict(trainable=trainable, penalty=penalty, augment=augment, check_finite=check_finite)
        train_step = (make_train_step(model, loss_fn, optimizer, **options) if mesh is None else
                      parallel.make_data_parallel_step(model, loss_fn, optimizer, mesh, **options))
    if eval_step is None and eval_arrays is not None:
        eval_step = make_eval_step(model, loss_fn)
    run = _RunDir.open(out_dir, writer=main) if out_dir is not None else None
    progress = progress and main
    job = _Fit(train_step, eval_step, iterator,
               None if eval_arrays is None else eval_batches(*eval_arrays, eval_batch_size, data_device),
               epochs, trainable, run,
               {"seed": int(seed), "batch_size": int(batch_size), "balanced": bool(balanced),
                "steps_per_epoch": iterator.steps_per_epoch},
               keep, checkpoint_every, log_every, progress, divergence, callbacks,
               _tensorboard(run, tensorboard and main), model)
    # The step donates its inputs: train on copies so the caller's arrays stay valid.
    params, state = jax.tree.map(jnp.copy, params), jax.tree.map(jnp.copy, state)
    opt_state = (init_opt_state(optimizer, params, trainable) if opt_state is None
                 else jax.tree.map(jnp.copy, opt_state))
    pos = _start(job, _Position(params, state, opt_state, jax.random.PRNGKey(seed)), resume,
                 overwrite, mesh)
    try:
        return _train(job, pos, on_nonfinite)
    except KeyboardInterrupt:
        message = job.interrupted(pos)
        tqdm.write(message, file=sys.stderr)
        raise FitInterrupted(message, _result(pos, iterator.position[0])) from None
    finally:
        if job.board is not None:
            job.board.close()


def _result(pos: _Position, epoch: int, stopped: str | None = None, nonfinite: bool = False):
    return FitResult(pos.params, pos.state, pos.opt_state, pos.step, epoch, pos.history,
                     stopped or pos.stopped, pos.checkpoint, nonfinite)


def _train(job: _Fit, pos: _Position, on_nonfinite: str) -> FitResult:
    """The epochs of `fit`, from `pos` on."""
    done = pos.data[0]
    for epoch in range(pos.data[0], job.epochs):
        if pos.stopped is not None:
            break
        started = time.perf_counter()
        stopped = job.train_epoch(pos, epoch)
        if stopped:
            if job.run is not None:
                job.run.append({"epoch": epoch + 1, "step": pos.step, "stopped": stopped})
            if on_nonfinite == "raise":
                raise NonFiniteError(stopped)
            tqdm.write(stopped, file=sys.stderr)
            return _result(pos, epoch, stopped, nonfinite=True)
        job.end_epoch(pos, epoch, started)
        done = epoch + 1
    if pos.stopped is not None and job.progress:
        tqdm.write(pos.stopped, file=sys.stderr)
    return _result(pos, done)


__all__ = ["FitInterrupted", "FitResult", "NonFiniteError", "fit", "split_arrays"]
