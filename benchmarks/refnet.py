"""Training-step speed of RefNet-MNIST in fcnn and its peers, in one run.

    python -m benchmarks.refnet --frameworks fcnn,stax,linen,equinox,haiku,torch \
        --batch 128 32 --steps 50 --rounds 3 --allocator both --json runs/bench.json

Every (round, allocator, batch, framework) runs in a fresh process
(`python -m benchmarks.peers.<module>`), so no framework warms another's caches or
allocator. Frameworks are interleaved round by round, so slow drift of the machine
(other work on the shared cores) hits every framework alike; each process runs
`--warmup` untimed steps (the first is reported as the compile time), then times
`--steps` steps one by one; a round's figure is the median step, and the reported
figure the median over rounds. `ratio_to_fcnn` is taken within each round, then the
median over rounds.

Threads: every process gets the same CPU set (`--threads N`, default all cores,
pinned with sched_setaffinity) and OMP_NUM_THREADS=N; XLA sizes its thread pool
from the CPU set, PyTorch from OMP_NUM_THREADS. On a machine shared with other work,
PyTorch's OpenMP workers wait for each other at every parallel region and its step
time can grow tenfold (measured: 26 ms -> 330 ms at batch 128 on 2 busy cores),
while XLA's work-stealing pool degrades gracefully; `--threads 1` with the
`cpu_ms_median` column (process CPU time per step) gives figures that other work
barely moves.

Allocator: `--allocator tcmalloc` preloads tcmalloc (LD_PRELOAD) into every
framework's process alike; `both` runs each configuration under both allocators.

JSON: `results` and `matmul_peak_gflops` describe the first configuration (the first
batch under the first allocator); `runs` lists every (batch, allocator)
configuration in the same form; `env` records versions, threads and the machine.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.peers import PEERS
from benchmarks.peers._common import step_flops_per_image
from fcnn import cli

ROOT = Path(__file__).resolve().parent.parent
TCMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
)
TCMALLOC_MISSING = (
    "tcmalloc not found (looked in {paths}); install it with "
    "`apt-get install libtcmalloc-minimal4` (Debian/Ubuntu). Running with the "
    "default allocator only."
)


def find_tcmalloc() -> str | None:
    for path in TCMALLOC_PATHS:
        if os.path.exists(path):
            return path
    return None


def child_env(threads: int, preload: str | None) -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    return env


def run_child(module: str, extra: list[str], env: dict, cpus: set[int], timeout: float):
    """Runs `python -m module *extra` pinned to `cpus`; returns its RESULT dict."""
    cmd = [sys.executable, "-m", module, *extra]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
        preexec_fn=lambda: os.sched_setaffinity(0, cpus),
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"error": f"exit code {proc.returncode}: " + " | ".join(tail)}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarise(rounds: list[dict], batch: int, peak: float | None) -> dict:
    """Per-framework medians over rounds, and each round's ratio to fcnn."""
    names = list(dict.fromkeys(n for r in rounds for n in r))
    out = {}
    for name in names:
        runs = [r[name] for r in rounds if name in r]
        ok = [x for x in runs if "step_ms_median" in x]
        if not ok:
            out[name] = {k: runs[-1][k] for k in ("skipped", "error") if k in runs[-1]}
            continue
        step = median([x["step_ms_median"] for x in ok])
        ratios = [
            r[name]["step_ms_median"] / r["fcnn"]["step_ms_median"]
            for r in rounds
            if "step_ms_median" in r.get(name, {}) and "step_ms_median" in r.get("fcnn", {})
        ]
        gflops = step_flops_per_image() * batch / (step / 1e3) / 1e9
        out[name] = {
            "step_ms_median": step,
            "step_ms_rounds": [x["step_ms_median"] for x in ok],
            "cpu_ms_median": median([x.get("cpu_ms_median") for x in ok]),
            "compile_s": median([x["compile_s"] for x in ok]),
            "images_per_s": batch / (step / 1e3),
            "peak_rss_mb": max(x["peak_rss_mb"] for x in ok),
            "gflops": gflops,
            "share_of_matmul_peak": gflops / peak if peak else None,
            "ratio_to_fcnn": median(ratios) if ratios else None,
            "loss_first": ok[0]["loss_first"],
            "loss_last": ok[0]["loss_last"],
            "versions": {k: v for k, v in ok[0].items()
                         if k in ("jax", "optax", "flax", "haiku", "equinox", "torch")},
        }
    return out


def build_parser() -> cli.Parser:
    """The command line; building and parsing it imports no peer framework."""
    p = cli.Parser(prog="python -m benchmarks.refnet", description=__doc__.splitlines()[0],
                   allow_abbrev=False)
    p.add_argument("--frameworks", type=cli.name_list(tuple(PEERS), "frameworks"),
                   default="fcnn,stax,linen,equinox,haiku,torch", metavar="NAME,NAME,...",
                   help=f"comma-separated frameworks to time, from {','.join(PEERS)} "
                        "(default: fcnn,stax,linen,equinox,haiku,torch)")
    p.add_argument("--batch", type=cli.number_list(int, "batch sizes"), nargs="+",
                   default=[(128,)], metavar="B",
                   help="one or more batch sizes, e.g. `--batch 128 32` or `--batch 128,32` "
                        "(default: 128)")
    p.add_argument("--steps", type=cli.positive_int, default=50, metavar="N",
                   help="timed steps per process (default: 50)")
    p.add_argument("--warmup", type=cli.nonnegative_int, default=10, metavar="N",
                   help="untimed steps before them, the first (compile) included (default: 10)")
    p.add_argument("--rounds", type=cli.positive_int, default=3, metavar="N",
                   help="interleaved rounds over the frameworks; medians over rounds (default: 3)")
    p.add_argument("--allocator", choices=("default", "tcmalloc", "both"), default="default",
                   help="malloc of every process: the default one, tcmalloc (LD_PRELOAD), or "
                        "both in turn (default: default)")
    p.add_argument("--threads", type=cli.positive_int, default=len(os.sched_getaffinity(0)),
                   metavar="N", help="CPU cores given to every framework (default: all)")
    p.add_argument("--timeout", type=cli.positive_float, default=900.0, metavar="SECONDS",
                   help="time limit per process (default: 900)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the results as JSON to PATH")
    return p


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    args.frameworks = list(args.frameworks)
    args.batch = [b for group in args.batch for b in group]
    available = sorted(os.sched_getaffinity(0))
    if args.threads > len(available):
        p.error(f"argument --threads: {args.threads}: expected 1..{len(available)}, the "
                "cores this process may use")
    args.cpus = set(available[: args.threads])
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    notes = []
    tcmalloc = find_tcmalloc()
    allocators = ["default", "tcmalloc"] if args.allocator == "both" else [args.allocator]
    if "tcmalloc" in allocators and tcmalloc is None:
        notes.append(TCMALLOC_MISSING.format(paths=", ".join(TCMALLOC_PATHS)))
        print("NOTE: " + notes[-1], flush=True)
        allocators = ["default"]

    configs = [(alloc, b) for alloc in allocators for b in args.batch]
    rounds = {c: [] for c in configs}
    peaks = {a: [] for a in allocators}
    t_start = time.time()
    load_start = list(os.getloadavg())
    for rnd in range(args.rounds):
        for alloc in allocators:
            env = child_env(args.threads, tcmalloc if alloc == "tcmalloc" else None)
            peak = run_child("benchmarks.matmul_peak", [], env, args.cpus, args.timeout)
            peaks[alloc].append(peak.get("matmul_peak_gflops"))
            print(f"[round {rnd + 1}/{args.rounds}] {alloc}: matmul peak "
                  f"{peak.get('matmul_peak_gflops') or peak}", flush=True)
            for batch in args.batch:
                this = {}
                for name in args.frameworks:
                    module, extra = PEERS[name]
                    extra = [*extra, "--batch", str(batch), "--steps", str(args.steps),
                             "--warmup", str(args.warmup)]
                    try:
                        res = run_child(module, extra, env, args.cpus, args.timeout)
                    except subprocess.TimeoutExpired:
                        res = {"error": f"timed out after {args.timeout} s"}
                    this[name] = res
                    if "step_ms_median" in res:
                        msg = (f"{res['step_ms_median']:8.2f} ms/step, first step "
                               f"{res['compile_s']:.2f} s, loss {res['loss_first']:.6f}")
                    else:
                        msg = "skipped: " + res.get("skipped", res.get("error", "?"))
                    print(f"[round {rnd + 1}/{args.rounds}] {alloc:8s} batch {batch:4d} "
                          f"{name:14s} {msg}", flush=True)
                rounds[(alloc, batch)].append(this)

    runs = []
    for alloc, batch in configs:
        peak = median(peaks[alloc])
        runs.append({
            "allocator": alloc, "batch": batch, "matmul_peak_gflops": peak,
            "results": summarise(rounds[(alloc, batch)], batch, peak),
        })
    out = {
        "results": runs[0]["results"],
        "matmul_peak_gflops": runs[0]["matmul_peak_gflops"],
        "batch": runs[0]["batch"],
        "allocator": runs[0]["allocator"],
        "runs": runs,
        "env": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "threads": args.threads,
            "thread_settings": "sched_setaffinity to the first N cores; "
                               "OMP_NUM_THREADS=N; XLA and PyTorch defaults otherwise",
            "tcmalloc": tcmalloc,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
            "frameworks": args.frameworks,
            "step_mflop_per_image": step_flops_per_image() / 1e6,
            "load_average_start": load_start,
            "wall_s": time.time() - t_start,
            "notes": notes,
        },
    }
    out["env"]["load_average_end"] = list(os.getloadavg())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
