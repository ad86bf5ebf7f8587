"""One markdown page from the JSON of `benchmarks.bench` (and of `benchmarks.ops`).

    python -m benchmarks.report runs/bench/bench.json [--ops runs/bench/ops.json]
        [--out runs/bench/report.md]

Sections: a summary per model (step time of every framework in every (batch,
allocator) configuration, with the ratio to fcnn); the speed-up from each preloaded
allocator; fcnn's share of the matmul peak; compile time and peak memory; the
detailed table of every configuration; and, with --ops, the per-op tables.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.peers import LABELS
from fcnn import cli

MODEL_TITLES = {
    "refnet": "RefNet-MNIST (28x28x1)",
    "resnet20": "ResNet-20 (32x32x3)",
    "vgg11_bn": "VGG-11-BN (32x32x3)",
}


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _ok(result: dict) -> bool:
    return "step_ms_median" in result


def _model(run: dict) -> str:
    return run.get("model", "refnet")


def _frameworks(runs) -> list[str]:
    return list(dict.fromkeys(n for r in runs for n in r["results"]))


def run_table(run: dict) -> list[str]:
    """One table: a row per framework of one (model, batch, allocator) configuration."""
    peak = run.get("matmul_peak_gflops")
    lines = [
        f"### {MODEL_TITLES.get(_model(run), _model(run))}, batch {run['batch']}, allocator "
        f"{run['allocator']} (matmul peak {_fmt(peak, '.0f')} GFLOP/s)",
        "",
        "| framework | step ms (median) | x fcnn | images/s | GFLOP/s | % of matmul peak "
        "| CPU ms/step | first step s | peak RSS MB | params | first loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in run["results"].items():
        if not _ok(r):
            why = r.get("skipped") or r.get("error") or "no result"
            lines.append(f"| {name} | {why} | | | | | | | | | |")
            continue
        share = r.get("share_of_matmul_peak")
        lines.append(
            f"| {name} | {r['step_ms_median']:.1f} | {_fmt(r.get('ratio_to_fcnn'), '.2f')} "
            f"| {r['images_per_s']:.0f} | {r['gflops']:.1f} "
            f"| {_fmt(None if share is None else 100 * share, '.0f')} "
            f"| {_fmt(r.get('cpu_ms_median'), '.1f')} | {r['compile_s']:.2f} "
            f"| {r['peak_rss_mb']:.0f} | {_fmt(r.get('param_count'), ',')} "
            f"| {r['loss_first']:.5f} |"
        )
    return lines + [""]


def summary_table(model: str, runs: list[dict]) -> list[str]:
    """Step ms (x fcnn) of every framework in every configuration of one model, then
    its first-step time and peak RSS in the first configuration."""
    first = runs[0]
    cols = [f"batch {r['batch']}, {r['allocator']}" for r in runs]
    lines = [
        f"### {MODEL_TITLES.get(model, model)}: step ms (x fcnn)",
        "",
        "| framework | " + " | ".join(cols) + f" | first step s ({cols[0]}) "
        f"| peak RSS MB ({cols[0]}) |",
        "|---|" + "---:|" * (len(cols) + 2),
    ]
    for name in _frameworks(runs):
        cells = []
        for r in runs:
            x = r["results"].get(name, {})
            if not _ok(x):
                cells.append("-" if not x else "n/a")
                continue
            ratio = x.get("ratio_to_fcnn")
            bold = "**" if name == "fcnn" else ""
            cells.append(f"{bold}{x['step_ms_median']:.1f}{bold}"
                         + ("" if name == "fcnn" or ratio is None else f" ({ratio:.2f}x)"))
        f = first["results"].get(name, {})
        extra = ([f"{f['compile_s']:.2f}", f"{f['peak_rss_mb']:.0f}"] if _ok(f) else ["-", "-"])
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells + extra) + " |")
    reasons = {n: (r["results"][n].get("skipped") or r["results"][n].get("error"))
               for r in runs for n in r["results"] if not _ok(r["results"][n])}
    lines.append("")
    for name, why in reasons.items():
        lines += [f"{LABELS.get(name, name)}: {why}", ""]
    return lines


def allocator_table(runs: list[dict]) -> list[str]:
    """Speed-up from each preloaded allocator (default ms / its ms), per model and batch."""
    by = {(_model(r), r["allocator"], r["batch"]): r["results"] for r in runs}
    others = list(dict.fromkeys(a for _, a, _ in by if a != "default"))
    keys = [(m, b) for m, a, b in by if a == "default"]
    cols = [(a, m, b) for a in others for m, b in keys if (m, a, b) in by]
    if not cols:
        return []
    lines = [
        "### Speed-up from a preloaded allocator (default ms / preloaded ms)",
        "",
        "| framework | " + " | ".join(f"{m} b{b}, {a}" for a, m, b in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for name in _frameworks(runs):
        cells = []
        for a, m, b in cols:
            d = by[(m, "default", b)].get(name, {})
            t = by[(m, a, b)].get(name, {})
            cells.append(f"{d['step_ms_median'] / t['step_ms_median']:.2f}"
                         if _ok(d) and _ok(t) else "-")
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return lines + [""]


def matmul_share_table(runs: list[dict]) -> list[str]:
    """fcnn's FLOP rate against the float32 matmul peak measured in the same run."""
    lines = [
        "### fcnn's share of the matmul peak",
        "",
        "| model | batch | allocator | MFLOP/image/step | fcnn GFLOP/s | matmul peak GFLOP/s "
        "| share |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        f = r["results"].get("fcnn", {})
        if not _ok(f):
            continue
        share = f.get("share_of_matmul_peak")
        lines.append(
            f"| {_model(r)} | {r['batch']} | {r['allocator']} "
            f"| {_fmt(r.get('step_mflop_per_image'), '.1f')} | {f['gflops']:.1f} "
            f"| {_fmt(r.get('matmul_peak_gflops'), '.0f')} "
            f"| {_fmt(None if share is None else 100 * share, '.0f')}% |")
    return lines + [""]


def ops_tables(ops: dict) -> list[str]:
    """The two tables of `benchmarks.ops`."""
    env = ops.get("env", {})
    lines = [
        "## Per op",
        "",
        f"batch {env.get('batch', '?')}, float32, median of {env.get('repeats', '?')} calls, "
        f"{env.get('threads', '?')} core(s); oneDNN {env.get('onednn')}; torch "
        f"{env.get('torch', 'not installed')} ({env.get('torch_threads', '-')} threads).",
        "",
    ]
    rows = ops.get("results", [])
    if rows:
        lines += [
            "### Layers, forward + backward (ms)",
            "",
            "| op | fcnn hand rule | autodiff of the same forward | PyTorch | hand/autodiff "
            "| hand/PyTorch |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['op']} | {r['custom_ms']:.2f} | {r['autodiff_ms']:.2f} "
                f"| {_fmt(r.get('torch_ms'), '.2f')} | {r['ratio']:.2f} "
                f"| {_fmt(r.get('ratio_torch'), '.2f')} |")
        lines.append("")
    rows = ops.get("conv_passes", [])
    if rows:
        lines += [
            "### Convolution passes of the CIFAR models (ms)",
            "",
            "`auto`: fcnn's default lowering (route: what ran); `xla`: XLA's convolution "
            "and its transposes; PyTorch with channels_last tensors.",
            "",
            "| convolution | pass | auto route | auto | xla | PyTorch | auto/xla | auto/PyTorch "
            "| auto GFLOP/s |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['conv']} | {r['pass_']} | {r['route']} | {r['auto_ms']:.2f} "
                f"| {r['xla_ms']:.2f} | {_fmt(r.get('torch_ms'), '.2f')} "
                f"| {r['auto_over_xla']:.2f} | {_fmt(r.get('auto_over_torch'), '.2f')} "
                f"| {r['auto_gflops']:.1f} |")
        lines.append("")
    return lines


def _loads(values) -> str:
    return "?" if not values else ", ".join(f"{v:.1f}" for v in values)


def render(data: dict, ops: dict | None = None) -> str:
    env = data.get("env", {})
    runs = data.get("runs", [])
    allocators = env.get("allocators") or {}
    lines = [
        "# Training-step benchmark",
        "",
        f"{env.get('cpu', '?')}, {env.get('threads', '?')} thread(s) per framework "
        f"({env.get('thread_settings', '')}); {env.get('rounds', '?')} interleaved "
        f"round(s), each framework in a fresh process; medians over rounds of the median "
        f"step. Steps per model (timed after warm-up): "
        + (", ".join(f"{m} {p['steps']} after {p['warmup']}"
                     + (f" (or as many as fit in {p['max_seconds']:g} s, at least 3)"
                        if p.get("max_seconds") else "")
                     for m, p in (env.get("plan") or {}).items())
           or f"{env.get('steps', '?')} after {env.get('warmup', '?')}")
        + ". Allocators: "
        + (", ".join(f"{a} ({p or 'glibc malloc'})" for a, p in allocators.items())
           or "default")
        + f". Load average (1, 5, 15 min) at start / end: {_loads(env.get('load_average_start'))}"
        f" / {_loads(env.get('load_average_end'))}; wall time "
        f"{_fmt(None if env.get('wall_s') is None else env['wall_s'] / 60, '.1f')} min.",
        "",
        "Read the ratios (x fcnn: that framework's step time over fcnn's, taken within "
        "each round, median over rounds) rather than the absolute times when the machine "
        "was busy.",
        "",
    ]
    for note in env.get("notes", []):
        lines += [f"Note: {note}", ""]
    by_model: dict = {}
    for run in runs:
        by_model.setdefault(_model(run), []).append(run)
    lines += ["## Summary", ""]
    for model, model_runs in by_model.items():
        lines += summary_table(model, model_runs)
    lines += allocator_table(runs)
    lines += matmul_share_table(runs)
    lines += ["## Every configuration", ""]
    for run in runs:
        lines += run_table(run)
    if ops:
        lines += ops_tables(ops)
    return "\n".join(lines)


def build_parser() -> cli.Parser:
    """The command line of the report."""
    p = cli.Parser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0],
                   allow_abbrev=False)
    p.add_argument("json", type=Path, metavar="JSON",
                   help="the results written by `python -m benchmarks.bench --json JSON` "
                        "(or benchmarks.refnet)")
    p.add_argument("--ops", type=Path, default=None, metavar="PATH",
                   help="also render the per-op tables of `python -m benchmarks.ops --json PATH`")
    p.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="write the markdown to PATH (default: print it)")
    return p


def _read(p, path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except OSError as err:
        p.error(f"argument {what}: cannot read {str(path)!r}: {err.strerror or err}")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        p.error(f"argument {what}: {str(path)!r} is not a JSON file ({err})")


def main(argv=None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    data = _read(p, args.json, "JSON")
    ops = _read(p, args.ops, "--ops") if args.ops else None
    try:
        text = render(data, ops)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as err:
        p.error(f"argument JSON: {str(args.json)!r} is not the output of benchmarks.refnet "
                f"or benchmarks.bench (or --ops of benchmarks.ops) (missing or malformed "
                f"field: {err})")
    if args.out:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
        except OSError as err:
            p.error(f"argument --out: cannot write {str(args.out)!r}: {err.strerror or err}")
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
