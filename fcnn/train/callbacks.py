"""Callbacks of `fit`: called after every epoch with the epoch's record.

A callback is a plain function `record -> None | "stop"` or an object with
`on_epoch_end(record, control)`; `record` is the epoch's log line as a dict
("epoch", "step", "train_loss", "train_accuracy", "eval_loss", "eval_accuracy",
"learning_rate", ...) and `control` lets it act on the run:

    control.stop(reason)          end training after this epoch (the reason is logged)
    control.learning_rate         the current learning rate (None if not injected)
    control.set_learning_rate(x)  change it from the next step on
    control.save_best(name)       keep this epoch's checkpoint as the best one

An object may also have `state() -> dict` and `restore(dict)`: its state is saved in
every checkpoint and given back on resume, so a resumed run stops, reduces and keeps
the best exactly as an uninterrupted one.

Built in: `EarlyStopping`, `KeepBest`, `ReduceOnPlateau`. A learning-rate warm-up is a
schedule (`fcnn.schedules.warmup`), not a callback: it acts at every step.
"""

from __future__ import annotations

import math

from fcnn._checks import check_int, check_number

MODES = ("min", "max")


class Monitor:
    """The best value so far of one metric of the epoch record, and the epochs since."""

    def __init__(self, monitor: str, mode: str, min_delta: float):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor={monitor!r}: expected a metric name, e.g. 'eval_loss'")
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: expected 'min' (loss) or 'max' (accuracy)")
        self.monitor, self.mode = monitor, mode
        self.min_delta = check_number(min_delta, "min_delta", low=0.0)
        self.best: float | None = None
        self.wait = 0

    def update(self, record: dict) -> bool:
        """True when `record` improves on the best value (which it then becomes)."""
        if self.monitor not in record:
            raise ValueError(
                f"monitor={self.monitor!r} is not in the epoch record (it has {sorted(record)}); "
                "pass eval_data to fit for eval_loss / eval_accuracy")
        value = float(record[self.monitor])
        better = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta)
        if better and math.isfinite(value):
            self.best, self.wait = value, 0
            return True
        self.wait += 1
        return False

    def state(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def restore(self, state: dict) -> None:
        self.best, self.wait = state["best"], int(state["wait"])


class EarlyStopping(Monitor):
    """Stops when `monitor` has not improved by more than `min_delta` for `patience`
    epochs."""

    def __init__(self, monitor: str = "eval_loss", mode: str = "min", patience: int = 5,
                 min_delta: float = 0.0):
        super().__init__(monitor, mode, min_delta)
        self.patience = check_int(patience, "patience", low=0)

    def on_epoch_end(self, record: dict, control) -> None:
        if not self.update(record) and self.wait >= self.patience:
            control.stop(f"early stopping: {self.monitor} has not improved on {self.best:.4g} "
                         f"for {self.wait} epochs (patience {self.patience})")


class KeepBest(Monitor):
    """Keeps the checkpoint of the epoch with the best `monitor` (beside the last ones),
    in out_dir/checkpoints/best/; `fcnn.train.load_for_inference(out_dir, which="best")`
    reads it."""

    def __init__(self, monitor: str = "eval_accuracy", mode: str = "max", min_delta: float = 0.0):
        super().__init__(monitor, mode, min_delta)

    def on_epoch_end(self, record: dict, control) -> None:
        if self.update(record):
            control.save_best(f"best {self.monitor} {self.best:.4g}")


class ReduceOnPlateau(Monitor):
    """Multiplies the learning rate by `factor` when `monitor` has not improved for
    `patience` epochs (not below `min_lr`); needs an optimizer whose learning rate is
    injected (every optimizer of fcnn.train.optimizers)."""

    def __init__(self, monitor: str = "eval_loss", mode: str = "min", factor: float = 0.1,
                 patience: int = 2, min_lr: float = 0.0, min_delta: float = 0.0):
        super().__init__(monitor, mode, min_delta)
        self.factor = check_number(factor, "factor", low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = check_int(patience, "patience", low=0)
        self.min_lr = check_number(min_lr, "min_lr", low=0.0)

    def on_epoch_end(self, record: dict, control) -> None:
        if self.update(record) or self.wait < self.patience:
            return
        if control.learning_rate is None:
            raise ValueError(
                "ReduceOnPlateau needs the learning rate in the optimizer state: build the "
                "optimizer with fcnn.train.optimizers (or optax.inject_hyperparams)")
        control.set_learning_rate(max(control.learning_rate * self.factor, self.min_lr))
        self.wait = 0


def check_callbacks(callbacks) -> tuple:
    """The callbacks as a tuple, each a function or an object with on_epoch_end."""
    if callable(callbacks) or hasattr(callbacks, "on_epoch_end"):
        callbacks = (callbacks,)
    callbacks = tuple(callbacks)
    for i, cb in enumerate(callbacks):
        if not (hasattr(cb, "on_epoch_end") or callable(cb)):
            raise TypeError(f"callbacks[{i}]={cb!r}: expected a function record -> None | 'stop' "
                            "or an object with on_epoch_end(record, control)")
    return callbacks


def call(callback, record: dict, control) -> None:
    """Runs one callback on the epoch record."""
    if hasattr(callback, "on_epoch_end"):
        callback.on_epoch_end(record, control)
    elif callback(record) == "stop":
        control.stop(f"stopped by the callback {getattr(callback, '__name__', callback)!r}")


__all__ = ["EarlyStopping", "KeepBest", "ReduceOnPlateau", "check_callbacks"]
