"""The results page: every claim of every study against every dataset, from the
committed runs.

    python -m experiments.core.page docs/results      # rewrites docs/results/README.md

Runs are kept as docs/results/<dataset>/<study>/ (summary.json, report.md, plots, the
command and wall time in summary.json). A further run of a study in another setting
(say a longer one) is kept beside it as docs/results/<dataset>/<study>.<label>/ and gets
its own column, "<dataset> (<label>)". The page is one table per study: a row per
claim, a column per dataset, each cell the verdict with its key numbers and a link to
the report. Training recipes (`python -m fcnn.recipes.cifar10`) are kept as
docs/results/<dataset>/recipes/<run>/ and listed in one table per dataset at the end,
with the mean over seeds of runs that differ only in their seed.
It is generated, never written by hand; a test regenerates it and fails when the
committed page differs.
"""

from __future__ import annotations

import json
import os
import sys

DATASET_ORDER = ("digits", "mnist", "fashion-mnist", "cifar10")
MARK = {"supported": "supported", "contradicted": "**contradicted**", "inconclusive": "inconclusive"}
EVIDENCE_CHARS = 160


def _summaries(root: str, *sub: str):
    """(dataset, name, summary) of every root/<dataset>/<*sub>/<name>/summary.json."""
    for dataset in sorted(os.listdir(root)):
        folder = os.path.join(root, dataset, *sub)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name, "summary.json")
            if os.path.isfile(path):
                with open(path) as f:
                    yield dataset, name, json.load(f)


def load_runs(root: str) -> dict[str, dict[str, tuple[str, dict]]]:
    """{study: {column: (folder, summary)}} of every docs/results/<dataset>/<study>[.<label>]/
    summary.json; the column is the dataset, or "<dataset> (<label>)" for a labelled run, and
    the folder is relative to `root`."""
    runs: dict[str, dict[str, tuple[str, dict]]] = {}
    for dataset, name, summary in _summaries(root):
        study, _, label = name.partition(".")
        column = f"{dataset} ({label})" if label else dataset
        runs.setdefault(study, {})[column] = (f"{dataset}/{name}", summary)
    return runs


def load_recipes(root: str) -> dict[str, dict[str, dict]]:
    """{dataset: {run: summary}} of every docs/results/<dataset>/recipes/<run>/summary.json."""
    recipes: dict[str, dict[str, dict]] = {}
    for dataset, run, summary in _summaries(root, "recipes"):
        recipes.setdefault(dataset, {})[run] = summary
    return recipes


def _minutes(seconds) -> str:
    return "not reached" if seconds is None else f"{seconds / 60:.0f} min"


def _recipe_lines(recipes: dict[str, dict[str, dict]]) -> list[str]:
    """One table per dataset: a row per recipe run (model, size, length, accuracy, times)."""
    lines = []
    for dataset, by_run in recipes.items():
        targets = sorted({t for s in by_run.values() for t in s["time_to"]}, key=lambda t: float(t[:-1]))
        lines += [f"## Recipes on {dataset}", "",
                  "Final test accuracy (the last epoch's, not the best one picked on the test set); "
                  "training time (evaluation included) until the test accuracy first reached each "
                  "target; median time per epoch.", "",
                  "| run | model | parameters | epochs | final test accuracy | "
                  + " | ".join(f"time to {t}" for t in targets)
                  + " | per epoch | training time | command |",
                  "|---|---|---|---|---|" + "---|" * len(targets) + "---|---|---|"]
        for run, s in by_run.items():
            seconds = sorted(s["seconds_per_epoch"])
            median = seconds[len(seconds) // 2] if seconds else 0.0
            lines.append(
                f"| [{run}]({dataset}/recipes/{run}/report.md) | {s['model']} | {s['parameters']:,} | "
                f"{len(s['history'])} of {s['settings']['epochs']} | {100 * s['final_test_accuracy']:.2f}% | "
                + " | ".join(_minutes(s["time_to"].get(t)) for t in targets)
                + f" | {median:.0f} s | {sum(seconds) / 60:.0f} min | `{s['command']}` |")
        lines.append("")
        lines += _seed_lines(by_run, targets)
    return lines


# Settings that name a run rather than change its training: runs equal in all the
# others are the same recipe with different seeds.
_NOT_A_SETTING = ("seed", "out", "resume", "quiet", "data_dir")


def seed_groups(by_run: dict[str, dict]) -> list[list[str]]:
    """Runs that differ only in their seed, as lists of run names (groups of two or more,
    complete runs only, in the order of `by_run`)."""
    groups: dict[str, list[str]] = {}
    for run, s in by_run.items():
        if len(s["history"]) != s["settings"]["epochs"]:
            continue
        settings = {k: v for k, v in s["settings"].items() if k not in _NOT_A_SETTING}
        key = json.dumps([settings, s["dataset"]], sort_keys=True)
        groups.setdefault(key, []).append(run)
    return [runs for runs in groups.values() if len(runs) > 1]


def _seed_lines(by_run: dict[str, dict], targets: list[str]) -> list[str]:
    """A row per recipe run with two or more seeds: mean final accuracy, each seed's."""
    groups = seed_groups(by_run)
    if not groups:
        return []
    lines = ["Across seeds (the same command with another `--seed`): mean final test accuracy, "
             "then each seed's; times to each target per seed.", "",
             "| runs | seeds | mean final test accuracy | each seed | "
             + " | ".join(f"time to {t}" for t in targets) + " |",
             "|---|---|---|---|" + "---|" * len(targets)]
    for runs in groups:
        summaries = [by_run[r] for r in runs]
        accuracies = [100 * s["final_test_accuracy"] for s in summaries]
        lines.append(
            f"| {', '.join(runs)} | {', '.join(str(s['settings']['seed']) for s in summaries)} | "
            f"{sum(accuracies) / len(accuracies):.2f}% | {', '.join(f'{a:.2f}%' for a in accuracies)} | "
            + " | ".join(", ".join(_minutes(s["time_to"].get(t)) for s in summaries) for t in targets) + " |")
    return lines + [""]


def _wall(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 10 else f"{minutes:.0f} min"


def _overview_lines(runs, datasets) -> list[str]:
    """One row per study: per dataset the counts of supported / contradicted /
    inconclusive claims and the wall time (a labelled run's counts follow its dataset's)."""
    lines = ["| study | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for study, by_column in sorted(runs.items()):
        cells = []
        for dataset in datasets:
            parts = []
            for column, (_, summary) in sorted(by_column.items()):
                if column != dataset and not column.startswith(f"{dataset} ("):
                    continue
                n = [sum(c["status"] == status for c in summary.get("claims", [])) for status in MARK]
                label = column[len(dataset):].strip(" ()")
                parts.append((f"{label}: " if label else "") + " / ".join(map(str, n))
                             + f" ({_wall(summary.get('wall_time', 0))})")
            cells.append("; ".join(parts) or "not run")
        lines.append(f"| [{study}](#{study}) | " + " | ".join(cells) + " |")
    return lines + [""]


def _short(text: str) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= EVIDENCE_CHARS else text[:EVIDENCE_CHARS - 3].rstrip() + "..."


def render(root: str) -> str:
    """The page's Markdown for the runs under `root`."""
    runs = load_runs(root)
    datasets = [d for d in DATASET_ORDER if any(d in by for by in runs.values())]
    lines = ["# Results: the claims of the notes, measured", "",
             "Generated by `python -m experiments.core.page docs/results` from the runs below "
             "(do not edit by hand). Each cell: the verdict, the measured numbers it rests on, "
             "and the run's report (every number, mean and spread over seeds, plots, the exact "
             "command and its wall time).", ""]
    counts = {status: 0 for status in MARK}
    for study, by_column in sorted(runs.items()):
        columns = datasets + sorted(c for c in by_column if c not in datasets)
        lines += [f"## {study}", "", "| claim | " + " | ".join(columns) + " |",
                  "|---|" + "---|" * len(columns)]
        claims: dict[str, dict[str, dict]] = {}
        for column, (_, summary) in by_column.items():
            for claim in summary.get("claims", []):
                claims.setdefault(claim["claim"], {})[column] = claim
        for text, by in claims.items():
            cells = []
            for column in columns:
                claim = by.get(column)
                if claim is None:
                    cells.append("not run")
                    continue
                counts[claim["status"]] += 1
                link = f"[report]({by_column[column][0]}/report.md)"
                cells.append(f"{MARK[claim['status']]}: {_short(claim['evidence'])} {link}")
            lines.append(f"| {_short(text)} | " + " | ".join(cells) + " |")
        runs_line = "; ".join(
            f"{column}: `{summary.get('command', 'python -m experiments.' + study)}`, "
            f"{summary.get('wall_time', 0) / 60:.1f} min, {summary['settings']['seeds']} seed(s)"
            for column in columns if column in by_column for _, summary in [by_column[column]])
        lines += ["", f"Runs: {runs_line}.", ""]
    lines += _recipe_lines(load_recipes(root))
    lines[4:4] = ["Verdicts: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "; per study "
                  "and dataset, supported / contradicted / inconclusive claims and the run's wall time:", "",
                  *_overview_lines(runs, datasets)]
    return "\n".join(lines) + "\n"


def write(root: str) -> str:
    path = os.path.join(root, "README.md")
    text = render(root)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else os.path.join("docs", "results")))
