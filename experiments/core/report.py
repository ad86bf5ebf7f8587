"""A study's output folder and what is written into it.

    <out>/<study>/<timestamp>/
        config.json    the settings, the variants, the environment
        metrics.jsonl  one JSON object per line: per step, per epoch, per probe, per seed
        summary.json   per variant and metric: mean, spread and per-seed values; the claims
        report.md      a table (mean +/- std over seeds), the claims, the plots
        *.png          the study's plots

Files are written as results come in (every JSON and Markdown file through a
temporary file and a rename), so an interrupted study leaves its finished variants
readable.
"""

from __future__ import annotations

import datetime
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from experiments.core import claims as claims_lib


def jsonable(obj):
    """`obj` with NumPy scalars and arrays as Python values, non-finite floats as None."""
    import numpy as np

    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def number(value) -> float | None:
    """A float, or None when it is not finite."""
    value = float(value)
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------
# Statistics over seeds and the table's columns


def stat(values: Sequence) -> dict:
    """Mean, spread (sample std), min, max over seeds; `n` counts the defined values."""
    xs = claims_lib.finite(values)
    return {
        "mean": (sum(xs) / len(xs)) if xs else None,
        "std": claims_lib.spread(xs) if xs else None,
        "min": min(xs) if xs else None,
        "max": max(xs) if xs else None,
        "n": len(xs),
        "seeds": len(list(values)),
        "values": [number(v) if v is not None else None for v in values],
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


def target_key(target: float) -> str:
    return f"steps_to_{100 * target:g}"


# The columns several studies share.
TEST_ACCURACY = Column("test_accuracy", "test acc", ".4f")
FINAL_TRAIN_LOSS = Column("final_train_loss", "final train loss", ".3g")
LEARNING_RATE = Column("lr", "lr", ".3g")
DIVERGED = Column("diverged", "diverged", ".2f")
DEAD_MAX = Column("dead_max", "dead (max layer)", ".3f")


def percent(target: float) -> str:
    """0.1 -> '10%'."""
    return f"{100 * target:g}%"


def per_dataset_text(default, per_dataset: dict) -> str:
    """A target as a claim names it on every dataset: '10%' or '10% (cifar10: 35%)';
    a tuple of targets is joined with ' and '."""
    show = lambda t: " and ".join(map(percent, t)) if isinstance(t, tuple) else percent(t)  # noqa: E731
    others = "; ".join(f"{name}: {show(t)}" for name, t in per_dataset.items())
    return show(default) + (f" ({others})" if others else "")


def steps_to_column(target: float) -> Column:
    """The column of the steps to a smoothed training error of `target`."""
    return Column(target_key(target), f"steps to {100 * target:g}%", ".0f")


# ---------------------------------------------------------------------------------
# The folder


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


class RunFolder:
    """The files of one study run."""

    def __init__(self, out: str, study: str):
        self.dir = new_run_dir(out, study)
        open(self.path("metrics.jsonl"), "w").close()

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _write_text(self, name: str, text: str) -> None:
        tmp = self.path(name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path(name))

    def write_json(self, name: str, obj) -> None:
        self._write_text(name, json.dumps(jsonable(obj), indent=1, allow_nan=False))

    def append_metrics(self, rows) -> None:
        with open(self.path("metrics.jsonl"), "a") as f:
            for row in rows:
                f.write(json.dumps(jsonable(row), allow_nan=False) + "\n")

    def write_report(self, *, title: str, description: str, header: str, notes: Sequence[str],
                     table: Mapping[str, Mapping[str, list]], columns: Sequence[Column],
                     searches: Mapping[str, dict], verdicts: Sequence[claims_lib.Verdict],
                     plots: Sequence[tuple[str, str]]) -> None:
        """report.md: the description, the settings, the table, the searches, the
        claims with their verdicts and the plots."""
        lines = [f"# {title}", ""]
        lines += [description, ""] if description else []
        lines += [header, ""]
        lines += [*(f"- {n}" for n in notes), ""] if notes else []
        columns = list(columns) or [TEST_ACCURACY]
        lines += ["## Results (mean ± std over seeds)", "",
                  "| variant | " + " | ".join(c.header for c in columns) + " |",
                  "|---|" + "---|" * len(columns)]
        for name, row in table.items():
            cells = [format_stat(stat(row[c.metric]), c.fmt) if c.metric in row else "n/a"
                     for c in columns]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        for name, search in searches.items():
            lines += [f"### Search `{name}` ({search['kind']}, score: {search['score']})", "",
                      "| params | score |", "|---|---|"]
            for t in search["trials"]:
                score = "n/a" if t["score"] is None else f"{t['score']:.4g}"
                lines.append(f"| {format_params(t['params'])} | {score} |")
            lines += ["", f"best: {format_params(search['best']) if search['best'] else 'none'}", ""]
        if verdicts:
            lines += ["## Claims", ""]
            lines += [f"- **{v.status}**: {v.claim}. Measured: {v.evidence}" for v in verdicts]
            lines.append("")
        if plots:
            lines += ["## Plots", ""]
            for path, caption in plots:
                lines += [f"![{caption}]({os.path.basename(path)})", ""]
        self._write_text("report.md", "\n".join(lines))


def format_params(params: Mapping) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
