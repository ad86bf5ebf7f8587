"""PNG plots for the studies: curves with a band over seeds, grouped bars, 2-D scatter.

Figures are built with `matplotlib.figure.Figure` and the Agg canvas (no pyplot, no
display, no global state). Each function draws on a given `Axes`; `figure()` makes
the axes and `save()` writes the PNG. Every axis gets a label, every multi-series
plot a legend, and the caller picks log scales where the values span decades.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 110
_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39",
)


def color(index: int) -> str:
    """A stable colour per series index (variants keep their colour across plots)."""
    return _PALETTE[index % len(_PALETTE)]


def figure(nrows: int = 1, ncols: int = 1, *, width: float = 7.0, height: float = 4.5):
    """(fig, axes) with `axes` a flat list of nrows * ncols Axes."""
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]
    return fig, axes


def save(fig, path) -> str:
    """Writes `fig` as a PNG at `path` and returns the path."""
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    return os.fspath(path)


def _positive(values) -> bool:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return arr.size > 0 and bool(np.all(arr > 0))


def band(ax, x, runs, *, label: str, index: int, logy: bool = False, linestyle: str = "-"):
    """Draws the mean over runs as a line and the min-max over runs as a band.

    x: (T,); runs: (R, T) (one row per seed). Non-finite values (diverged runs) are
    left out of the mean and band at that point.
    """
    runs = np.atleast_2d(np.asarray(runs, dtype=float))
    x = np.asarray(x, dtype=float)
    with np.errstate(all="ignore"):
        masked = np.where(np.isfinite(runs), runs, np.nan)
        valid = np.any(np.isfinite(masked), axis=0)
        mean = np.full(x.shape, np.nan)
        low = np.full(x.shape, np.nan)
        high = np.full(x.shape, np.nan)
        if np.any(valid):
            mean[valid] = np.nanmean(masked[:, valid], axis=0)
            low[valid] = np.nanmin(masked[:, valid], axis=0)
            high[valid] = np.nanmax(masked[:, valid], axis=0)
    if not np.any(np.isfinite(mean)):
        return  # nothing finite to draw (e.g. no seed reached a target)
    if logy:
        if not np.any(mean > 0):
            return  # nothing to draw on a log axis (e.g. all zeros)
        low = np.where(low > 0, low, np.nanmin(np.where(mean > 0, mean, np.nan)))
    ax.plot(x, mean, color=color(index), label=label, linestyle=linestyle, linewidth=1.6)
    if runs.shape[0] > 1:
        ax.fill_between(x, low, high, color=color(index), alpha=0.18, linewidth=0)


def finish(ax, *, xlabel: str, ylabel: str, title: str, logy: bool = False, logx: bool = False,
           legend: bool = True, legend_cols: int = 1, integer_x: bool = False):
    """Labels, scales, grid and legend of one Axes (`integer_x`: whole-number x ticks)."""
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if not ax.has_data():
        # A log scale on an empty axis fails when the figure is laid out; say why it is empty.
        ax.text(0.5, 0.5, "no finite values to draw", transform=ax.transAxes,
                ha="center", va="center", color="gray")
        logx = logy = False
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.grid(True, which="major", alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, ncol=legend_cols, framealpha=0.8)


def curves(path, series: Sequence[Mapping], *, xlabel: str, ylabel: str, title: str,
           logy: bool = False, logx: bool = False, hlines: Sequence[float] = (),
           hline_label: str = "target", integer_x: bool = False) -> str:
    """One plot of several curves with seed bands.

    series: dicts with "label", "x" (T,), "runs" (R, T) and optionally "index" (the
    colour) and "linestyle".
    """
    fig, (ax,) = figure()
    for i, s in enumerate(series):
        band(ax, s["x"], s["runs"], label=s["label"], index=s.get("index", i),
             logy=logy, linestyle=s.get("linestyle", "-"))
    for j, y in enumerate(hlines):
        ax.axhline(y, color="black", linestyle=":", linewidth=0.8,
                   label=hline_label if j == 0 else None)
    logy = logy and _positive(np.concatenate([np.ravel(s["runs"]) for s in series])) if series else False
    finish(ax, xlabel=xlabel, ylabel=ylabel, title=title, logy=logy, logx=logx,
           legend_cols=2 if len(series) > 6 else 1, integer_x=integer_x)
    return save(fig, path)


def grouped_bars(ax, groups: Sequence[str], series: Mapping[str, Sequence[Sequence[float]]], *,
                 ylabel: str, title: str, xlabel: str = "layer", logy: bool = False,
                 legend: bool = True, colors: Mapping[str, int] | None = None):
    """Bars per group (e.g. layer), one bar per series (e.g. activation).

    series[name][g] is the list of per-seed values of group g (None/NaN: missing);
    the bar is the mean and the error bar spans min..max over seeds. `colors` maps a
    series to its colour index (default: its position).
    """
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(groups))
    all_values = []
    for i, (name, per_group) in enumerate(series.items()):
        means, lows, highs = [], [], []
        for values in per_group:
            vals = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
            if vals.size:
                m = float(vals.mean())
                means.append(m)
                lows.append(m - float(vals.min()))
                highs.append(float(vals.max()) - m)
                all_values.extend(vals.tolist())
            else:
                means.append(np.nan)
                lows.append(0.0)
                highs.append(0.0)
        ax.bar(x + (i - (n - 1) / 2) * width, means, width, yerr=[lows, highs], label=name,
               color=color((colors or {}).get(name, i)), capsize=2, error_kw={"linewidth": 0.8})
    ax.set_xticks(x)
    ax.set_xticklabels(groups)
    finish(ax, xlabel=xlabel, ylabel=ylabel, title=title, logy=logy and _positive(all_values),
           legend=legend, legend_cols=2 if n > 6 else 1)


def scatter_classes(ax, points, labels, *, title: str, max_points: int = 3000):
    """2-D points coloured by class, e.g. a feature layer of width 2."""
    points = np.asarray(points, float)
    labels = np.asarray(labels)
    if points.shape[0] > max_points:
        keep = np.random.default_rng(0).choice(points.shape[0], max_points, replace=False)
        points, labels = points[keep], labels[keep]
    for c in np.unique(labels):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=6, alpha=0.6, color=color(int(c)), label=str(c))
    finish(ax, xlabel="feature 1", ylabel="feature 2", title=title, legend_cols=2)


# ---------------------------------------------------------------------------------
# The plots several studies draw. Each returns (path, caption) for the report.


def training_error(path, results, *, study: str, dataset: str, targets: Sequence[float] = (),
                   title: str | None = None) -> tuple[str, str]:
    """Smoothed mini-batch training error against steps, one curve per variant."""
    from experiments.core.training import SMOOTHING

    floor = 1e-3
    series = [{"label": n, "x": np.arange(1, r.total_steps + 1),
               "runs": np.maximum(r.smoothed_error(), floor), "index": i}
              for i, (n, r) in enumerate(results.items())]
    curves(path, series, xlabel="training step (log scale)",
           ylabel=f"training error, mean of last {SMOOTHING} batches (0 drawn at {floor:g})",
           title=title or f"{study}: training error ({dataset})", logy=True, logx=True,
           hlines=targets, hline_label="error targets")
    return os.fspath(path), "training error vs step"


def epoch_metric(path, results, key: str, *, ylabel: str, study: str, dataset: str,
                 logy: bool = False) -> tuple[str, str]:
    """A per-epoch metric (epoch 0 = initialisation) against epochs."""
    series = [{"label": n, "x": np.arange(r.epoch[key].shape[1]), "runs": r.epoch[key], "index": i}
              for i, (n, r) in enumerate(results.items()) if key in r.epoch]
    curves(path, series, xlabel="epoch", ylabel=ylabel, title=f"{study}: {ylabel} ({dataset})",
           logy=logy)
    return os.fspath(path), f"{ylabel} vs epoch"


def layer_bars(path, results, panels: Sequence[tuple[str, int | None, str]], *, title: str,
               logy: bool = False, caption: str = "") -> tuple[str, str]:
    """Grouped bars per layer, one panel per (probe prefix, probe index or None for the
    mean over training, y label)."""
    from experiments.core.probes import _layer_order, probe_at, probe_layers, probe_mean

    fig, axes = figure(1, len(panels))
    for ax, (prefix, index, ylabel) in zip(axes, panels):
        layers = sorted({layer for r in results.values() for layer in probe_layers(r, prefix)},
                        key=_layer_order)
        series = {}
        for vname, r in results.items():
            if not probe_layers(r, prefix):
                continue
            pick = (lambda key: probe_mean(r, key)) if index is None else (lambda key: probe_at(r, key, index))
            series[vname] = [pick(f"{prefix}/{layer}") for layer in layers]
        when = "mean over training" if index is None else ("at initialisation" if index == 0 else "after training")
        grouped_bars(ax, layers, series, ylabel=ylabel, title=f"{ylabel} ({when})", logy=logy,
                     legend=ax is axes[0], colors={n: i for i, n in enumerate(results)})
    fig.suptitle(title)
    return save(fig, path), caption or title
