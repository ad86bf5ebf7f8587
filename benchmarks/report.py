"""Markdown tables from the JSON written by `benchmarks.refnet`.

    python -m benchmarks.report runs/bench.json [--out runs/bench.md]
"""

from __future__ import annotations

import json
from pathlib import Path

from fcnn import cli


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def run_table(run: dict) -> list[str]:
    """One table: a row per framework of one (batch, allocator) configuration."""
    peak = run.get("matmul_peak_gflops")
    lines = [
        f"### batch {run['batch']}, allocator {run['allocator']} "
        f"(matmul peak {_fmt(peak, '.0f')} GFLOP/s)",
        "",
        "| framework | step ms (median) | x fcnn | images/s | GFLOP/s | % of matmul peak "
        "| CPU ms/step | first step s | peak RSS MB | first loss |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in run["results"].items():
        if "step_ms_median" not in r:
            why = r.get("skipped") or r.get("error") or "no result"
            lines.append(f"| {name} | {why} | | | | | | | | |")
            continue
        share = r.get("share_of_matmul_peak")
        lines.append(
            f"| {name} | {r['step_ms_median']:.1f} | {_fmt(r.get('ratio_to_fcnn'), '.2f')} "
            f"| {r['images_per_s']:.0f} | {r['gflops']:.1f} "
            f"| {_fmt(None if share is None else 100 * share, '.0f')} "
            f"| {_fmt(r.get('cpu_ms_median'), '.1f')} | {r['compile_s']:.2f} | {r['peak_rss_mb']:.0f} | {r['loss_first']:.5f} |"
        )
    return lines + [""]


def allocator_table(runs: list[dict]) -> list[str]:
    """Speed-up from tcmalloc (default step time / tcmalloc step time), per batch."""
    by = {(r["allocator"], r["batch"]): r["results"] for r in runs}
    batches = sorted({b for _, b in by}, reverse=True)
    if not any(("tcmalloc", b) in by and ("default", b) in by for b in batches):
        return []
    names = list(dict.fromkeys(n for r in runs for n in r["results"]))
    lines = [
        "### speed-up from tcmalloc (default ms / tcmalloc ms)",
        "",
        "| framework | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|" + "---:|" * len(batches),
    ]
    for name in names:
        cells = []
        for b in batches:
            d = by.get(("default", b), {}).get(name, {})
            t = by.get(("tcmalloc", b), {}).get(name, {})
            if "step_ms_median" in d and "step_ms_median" in t:
                cells.append(f"{d['step_ms_median'] / t['step_ms_median']:.2f}")
            else:
                cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def render(data: dict) -> str:
    env = data.get("env", {})
    lines = [
        "## RefNet-MNIST training step",
        "",
        f"{env.get('cpu', '?')}, {env.get('threads', '?')} thread(s) per framework "
        f"({env.get('thread_settings', '')}); {env.get('rounds', '?')} interleaved "
        f"rounds of {env.get('steps', '?')} timed steps after {env.get('warmup', '?')} "
        f"warm-up steps, each framework in a fresh process; medians. A step is "
        f"{_fmt(env.get('step_mflop_per_image'), '.1f')} MFLOP per image. "
        f"Load average at start/end: {env.get('load_average_start')} / "
        f"{env.get('load_average_end')}.",
        "",
    ]
    for note in env.get("notes", []):
        lines += [f"Note: {note}", ""]
    for run in data.get("runs", []):
        lines += run_table(run)
    lines += allocator_table(data.get("runs", []))
    return "\n".join(lines)


def build_parser() -> cli.Parser:
    """The command line of the report."""
    p = cli.Parser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0],
                   allow_abbrev=False)
    p.add_argument("json", type=Path, metavar="JSON",
                   help="the results written by `python -m benchmarks.refnet --json JSON`")
    p.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="write the markdown to PATH (default: print it)")
    return p


def main(argv=None) -> None:
    p = build_parser()
    args = p.parse_args(argv)
    try:
        text = render(json.loads(args.json.read_text()))
    except OSError as err:
        p.error(f"argument JSON: cannot read {str(args.json)!r}: {err.strerror or err}")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        p.error(f"argument JSON: {str(args.json)!r} is not a JSON file ({err})")
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        p.error(f"argument JSON: {str(args.json)!r} is not the output of benchmarks.refnet "
                f"(missing or malformed field: {err})")
    if args.out:
        try:
            args.out.write_text(text + "\n")
        except OSError as err:
            p.error(f"argument --out: cannot write {str(args.out)!r}: {err.strerror or err}")
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
