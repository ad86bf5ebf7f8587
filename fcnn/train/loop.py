"""The training loop: epochs of jitted steps, progress bar, evaluation, logs, checkpoints.

    result = fit(model, loss_fn, optimizer, params, state, (images, labels),
                 epochs=10, batch_size=64, eval_data=(test_images, test_labels),
                 out_dir="runs/digits")

Each epoch runs the train step over a `fcnn.data.BatchIterator` (fixed batch shape,
so the step compiles once), shows a tqdm bar with the running loss and accuracy,
evaluates on `eval_data`, appends one JSON line to `out_dir/metrics.jsonl` and writes
a checkpoint to `out_dir/checkpoints/` (also every `checkpoint_every` steps, if
given). Step metrics stay on the device and are pulled to the host every `log_every`
steps and before every checkpoint, which is also when they are checked: if the
loss, a gradient or a parameter becomes NaN or infinite, training stops with a
message naming the step and the first non-finite quantity, and no checkpoint is
written after it, so the last good one is kept.

Resuming (`resume=True`) restores params, state, optimizer state, rng, step and the
data iterator position from the latest checkpoint, also one written mid-epoch: the
rest of the run is bit-identical to a run that was never stopped, because each
step's rng is fold_in(rng, step), the data order of epoch e is a function of
(seed, e), and a mid-epoch checkpoint carries the epoch's running metric sums.
A process killed at any moment (even while writing a checkpoint) leaves the
previous checkpoint as the latest valid one; leftovers of the interrupted write are
removed when the next run starts.
"""

from __future__ import annotations

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

from fcnn._checks import positive_int
from fcnn.data import BatchIterator
from fcnn.train import checkpoint as ckpt
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


def _split_arrays(data, name: str):
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


def evaluate(eval_step, params, state, images, labels, batch_size: int = 256, device=None) -> dict:
    """Mean loss and accuracy of the model over (images, labels), pulled to the host.

    Floats for a single model; (K,) arrays for a population's vmapped eval step.

    Batches have a fixed size (the last is padded and its padding weighted 0), so
    `eval_step` (from `make_eval_step`) compiles once. Results are pulled to the host
    once, at the end.
    """
    batch_size = positive_int(batch_size, "batch_size")
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim == 0 or images.shape[0] == 0:
        raise ValueError(
            f"evaluate: images has shape {images.shape}: expected (N, ...) with at least "
            "one example"
        )
    n = images.shape[0]
    batch_size = min(batch_size, n)
    outs = []
    for begin in range(0, n, batch_size):
        x, y = images[begin:begin + batch_size], labels[begin:begin + batch_size]
        w = np.ones(x.shape[0], np.float32)
        short = batch_size - x.shape[0]
        if short:
            x = np.concatenate([x, np.zeros((short,) + x.shape[1:], x.dtype)])
            y = np.concatenate([y, np.zeros((short,) + y.shape[1:], y.dtype)])
            w = np.concatenate([w, np.zeros(short, np.float32)])
        outs.append(eval_step(params, state, jax.device_put((x, y, w), device)))
    outs = jax.device_get(outs)
    counts = np.stack([np.asarray(o["count"], np.float64) for o in outs])
    total = counts.sum(axis=0)

    def mean(key):
        values = np.stack([np.asarray(o[key], np.float64) for o in outs])
        out = (values * counts).sum(axis=0) / total
        return float(out) if out.ndim == 0 else out

    return {"loss": mean("loss"), "accuracy": mean("accuracy")}


def step_keys(rng, first_step: int, count: int) -> np.ndarray:
    """The per-step keys fold_in(rng, step) for steps first_step .. first_step+count-1,
    as one host array (computed in one call, fed to the step without further ops)."""
    steps = jnp.arange(first_step, first_step + count, dtype=jnp.uint32)
    return np.asarray(jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, steps))


def _read_history(path: str, last_epoch: int) -> list[dict]:
    if not os.path.exists(path):
        return []
    kept = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if record.get("epoch", 0) <= last_epoch and "stopped" not in record:
                kept.append(record)
    return kept


def _write_history(path: str, records: list[dict]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records).encode()
    ckpt._atomic_write(path, lambda f: f.write(text))


def _append(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _remove_partial_log(out_dir: str) -> None:
    """Deletes temporary files of a metrics.jsonl rewrite cut by a crash."""
    for name in os.listdir(out_dir):
        if name.startswith(".metrics.jsonl.") and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(out_dir, name))
            except FileNotFoundError:
                pass


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
    epochs = positive_int(epochs, "epochs")
    log_every = positive_int(log_every, "log_every")
    # checked here, not where they are first used (after an epoch of training)
    eval_batch_size = positive_int(eval_batch_size, "eval_batch_size")
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
    images, labels = _split_arrays(train_data, "train_data")
    eval_arrays = _split_arrays(eval_data, "eval_data")
    iterator_args = dict(seed=seed, drop_last=True, balanced=balanced, device=data_device)
    # Built first: it validates batch_size, seed and the arrays before any compile.
    iterator = BatchIterator(images, labels, batch_size, **iterator_args)
    steps_per_epoch = iterator.steps_per_epoch

    if train_step is None:
        train_step = make_train_step(
            model, loss_fn, optimizer, trainable=trainable, penalty=penalty,
            check_finite=check_finite,
        )
    if eval_step is None and eval_arrays is not None:
        eval_step = make_eval_step(model, loss_fn)
    # The step donates its inputs: train on copies so the caller's arrays stay valid.
    params = jax.tree.map(jnp.copy, params)
    state = jax.tree.map(jnp.copy, state)
    opt_state = init_opt_state(optimizer, params, trainable) if opt_state is None else jax.tree.map(
        jnp.copy, opt_state
    )
    rng = jax.random.PRNGKey(seed)
    global_step, position = 0, (0, 0)
    run_info = {"seed": int(seed), "batch_size": int(batch_size), "balanced": bool(balanced),
                "steps_per_epoch": steps_per_epoch}

    metrics_path = ckpt_dir = None
    if out_dir is not None:
        out_dir = os.fspath(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        metrics_path = os.path.join(out_dir, "metrics.jsonl")
        ckpt_dir = os.path.join(out_dir, "checkpoints")
        ckpt.remove_partial(ckpt_dir)
        _remove_partial_log(out_dir)
    last_checkpoint = None
    history: list[dict] = []
    partial = None  # the resumed epoch's running sums, when resuming mid-epoch
    found = None
    if resume:
        source = ckpt_dir if resume is True else resume
        found = ckpt.latest_checkpoint(source) if resume is True else source
        if found is not None:
            restored = ckpt.load_checkpoint(found, params=params, state=state, opt_state=opt_state)
            saved = {k: restored["extra"].get(k) for k in run_info}
            if saved != run_info:
                raise ValueError(
                    f"cannot resume from {restored['path']!r}: it was written with {saved}, "
                    f"this run has {run_info}; the data order would differ"
                )
            params, state, opt_state = restored["params"], restored["state"], restored["opt_state"]
            rng, global_step, position = restored["rng"], restored["step"], restored["position"]
            last_checkpoint = restored["path"]
            if metrics_path is not None:
                history = _read_history(metrics_path, position[0])
                _write_history(metrics_path, history)
            iterator.seek(position)
            if position[1]:
                partial = restored["extra"].get("partial_epoch")
    if found is None and out_dir is not None:
        earlier = ckpt.list_checkpoints(ckpt_dir)
        if earlier and not overwrite:
            raise ValueError(
                f"out_dir={out_dir!r} holds checkpoints of an earlier run (latest "
                f"{earlier[-1]!r}): pass resume=True to continue it, overwrite=True to "
                "replace it, or another out_dir"
            )
        for old in earlier:
            ckpt._remove(old)
        if os.path.exists(metrics_path):
            os.unlink(metrics_path)  # a fresh run starts a fresh log

    result = FitResult(params, state, opt_state, global_step, position[0], history, None,
                       last_checkpoint)
    for epoch in range(position[0], epochs):
        first = iterator.position[1]
        keys = step_keys(rng, global_step, steps_per_epoch - first)
        started = time.perf_counter()
        sums = {"loss": 0.0, "accuracy": 0.0}
        seen = 0
        last_lr = None
        if partial is not None:
            sums = {"loss": float(partial["loss"]), "accuracy": float(partial["accuracy"])}
            seen, last_lr, partial = int(partial["seen"]), partial["learning_rate"], None
        pending: list = []
        bar = tqdm(total=steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{epochs}",
                   disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)
        stopped = None
        for i in range(steps_per_epoch - first):
            batch = next(iterator)
            params, state, opt_state, m = train_step(params, state, opt_state, batch, keys[i])
            pending.append(m)
            global_step += 1
            last_of_epoch = i == steps_per_epoch - first - 1
            # the end of the epoch writes its own checkpoint, after the epoch's record
            save_now = (checkpoint_every is not None and not last_of_epoch
                        and global_step % checkpoint_every == 0)
            if len(pending) < log_every and not last_of_epoch and not save_now:
                continue
            host = jax.device_get(pending)
            for j, hm in enumerate(host):
                step_number = global_step - len(host) + j + 1
                code = int(hm.get("nonfinite", 0))
                if code == 0 and not math.isfinite(float(hm["loss"])):
                    code = 1
                if code:
                    what = describe_nonfinite(code, params, trainable)
                    batch_index = first + i - (len(host) - 1 - j)
                    stopped = (
                        f"training stopped at step {step_number} (epoch {epoch + 1}, batch "
                        f"{batch_index + 1}): {what}. "
                        + (f"The last good checkpoint is {last_checkpoint}."
                           if last_checkpoint else "No checkpoint was written before it.")
                    )
                    break
                sums["loss"] += float(hm["loss"])
                sums["accuracy"] += float(hm["accuracy"])
                seen += 1
                if "learning_rate" in hm:
                    last_lr = float(hm["learning_rate"])
            bar.update(len(host))
            if seen:
                bar.set_postfix(loss=f"{sums['loss'] / seen:.4f}", acc=f"{sums['accuracy'] / seen:.3f}")
            pending = []
            if stopped:
                break
            if save_now:  # every step so far was checked just above
                last_checkpoint = ckpt.save_checkpoint(
                    ckpt_dir, global_step, params=params, state=state, opt_state=opt_state,
                    rng=rng, position=iterator.position, keep=keep,
                    extra=dict(run_info, epoch=epoch, partial_epoch=dict(
                        loss=sums["loss"], accuracy=sums["accuracy"], seen=seen,
                        learning_rate=last_lr)),
                )
        bar.close()
        if stopped:
            if metrics_path is not None:
                _append(metrics_path, {"epoch": epoch + 1, "step": global_step, "stopped": stopped})
            result = FitResult(params, state, opt_state, global_step, epoch, history, stopped,
                               last_checkpoint)
            if on_nonfinite == "raise":
                raise NonFiniteError(stopped)
            tqdm.write(stopped, file=sys.stderr)
            return result
        record = {
            "epoch": epoch + 1,
            "step": global_step,
            "train_loss": sums["loss"] / max(seen, 1),
            "train_accuracy": sums["accuracy"] / max(seen, 1),
        }
        if last_lr is not None:
            record["learning_rate"] = last_lr
        if eval_arrays is not None:
            ev = evaluate(eval_step, params, state, *eval_arrays, batch_size=eval_batch_size,
                          device=data_device)
            record["eval_loss"], record["eval_accuracy"] = ev["loss"], ev["accuracy"]
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        if progress:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "step"))
            tqdm.write(f"epoch {epoch + 1}/{epochs}: {shown}", file=sys.stderr)
        if metrics_path is not None:
            _append(metrics_path, record)
        if ckpt_dir is not None:
            last_checkpoint = ckpt.save_checkpoint(
                ckpt_dir, global_step, params=params, state=state, opt_state=opt_state, rng=rng,
                position=iterator.position, extra=dict(run_info, epoch=epoch + 1), keep=keep,
            )
        result = FitResult(params, state, opt_state, global_step, epoch + 1, history, None,
                           last_checkpoint)
    return result
