"""PNG plots of evaluation results: the confusion matrix.

    results = fcnn.train.evaluate(model, params, state, test, metrics=("confusion",))
    fcnn.plots.plot_confusion_matrix(results["confusion"], "confusion.png",
                                     class_names=dataset.class_names)

Figures are drawn with `matplotlib.figure.Figure` on the Agg canvas (no pyplot, no
display, no global state) and written atomically (a temporary file, then a rename).
matplotlib is an optional dependency (the `test` and `experiments` extras): it is
imported when a plot is drawn, with an error saying how to install it.
"""

from __future__ import annotations

import io
import os

import numpy as np

from fcnn.data.download import atomic_write

MISSING_MATPLOTLIB = (
    "fcnn.plots needs matplotlib, which is not installed: pip install matplotlib "
    "(or the project's extras, pip install 'fcnn[experiments]')"
)
NORMALIZE = (None, "true", "pred")


def _matplotlib():
    """(Figure, FigureCanvasAgg), imported on first use."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(MISSING_MATPLOTLIB) from err
    return Figure, FigureCanvasAgg


def _check_confusion(confusion) -> np.ndarray:
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 1:
        raise ValueError(
            f"confusion has shape {counts.shape}: expected (C, C) counts, entry [i, j] = "
            "examples of true class i predicted as j (fcnn.metrics.confusion_matrix)"
        )
    if counts.dtype.kind not in "iuf" or np.any(~np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError(
            f"confusion of dtype {counts.dtype}: expected finite counts >= 0"
        )
    return counts


def plot_confusion_matrix(confusion, path, *, class_names=None, normalize: str | None = None,
                          title: str = "confusion matrix", annotate: bool | None = None,
                          dpi: int = 110) -> str:
    """Writes a (C, C) confusion matrix as a PNG heat map at `path`; returns the path.

    Rows are the true classes, columns the predicted ones (as
    `fcnn.metrics.confusion_matrix` counts them). `normalize`: None (counts), "true"
    (each row divided by its sum: the diagonal is the per-class recall) or "pred"
    (each column divided by its sum: the diagonal is the per-class precision); an
    empty row or column stays 0. `class_names`: C labels for the axes (default 0..C-1).
    `annotate`: write each cell's value in it (default: when C <= 20).
    """
    counts = _check_confusion(confusion)
    c = counts.shape[0]
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize={normalize!r}: expected one of {NORMALIZE}")
    if class_names is None:
        class_names = [str(i) for i in range(c)]
    elif isinstance(class_names, str) or len(class_names) != c:
        raise ValueError(
            f"class_names={class_names!r}: expected {c} names, one per row of the {c}x{c} "
            "confusion matrix"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path={path!r}: expected a file path (str or os.PathLike) for the PNG")
    annotate = c <= 20 if annotate is None else bool(annotate)
    values = counts.astype(np.float64)
    if normalize is not None:
        axis = 1 if normalize == "true" else 0
        totals = values.sum(axis=axis, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
    Figure, FigureCanvasAgg = _matplotlib()
    size = min(max(4.0, 0.45 * c + 2.5), 16.0)
    fig = Figure(figsize=(size + 1.2, size), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(values, cmap="Blues", vmin=0.0,
                      vmax=1.0 if normalize is not None else max(float(values.max()), 1.0))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction" if normalize is not None else "examples")
    ticks = np.arange(c)
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xticklabels([str(n) for n in class_names], rotation=45 if c > 10 else 0, ha="right"
                       if c > 10 else "center")
    ax.set_yticklabels([str(n) for n in class_names])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    shown = {None: "counts", "true": "rows normalized (recall on the diagonal)",
             "pred": "columns normalized (precision on the diagonal)"}[normalize]
    ax.set_title(f"{title}\n{shown}, {int(counts.sum()):,} examples")
    if annotate:
        middle = (float(values.max()) or 1.0) / 2
        for i in range(c):
            for j in range(c):
                v = values[i, j]
                text = f"{v:.2f}" if normalize is not None else f"{int(round(v))}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if v > middle else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return atomic_write(path, [buffer.getvalue()])


__all__ = ["plot_confusion_matrix"]
