"""Training-step speed of fcnn and its peers on RefNet-MNIST, ResNet-20 and VGG-11-BN, in one run.

    python -m benchmarks.bench [--models refnet,resnet20,vgg11_bn]
        [--frameworks fcnn,stax,linen,equinox,haiku,torch,torch_cl] [--batch B ...]
        [--steps N] [--warmup N] [--rounds 3] [--allocator both] [--threads N]
        [--quick] [--json runs/bench/bench.json]

Models (benchmarks/peers/_common.py): RefNet-MNIST on 28x28x1 (default batches 128 and
32), ResNet-20 (option A shortcuts) and VGG-11-BN (CIFAR head) on 32x32x3 (default
batch 128). Every framework builds the same architecture from the same initial
parameter values, asserts its parameter count and trains with SGD momentum 0.9,
BatchNorm in training mode. `torch_cl` (PyTorch with channels_last tensors) runs on
the CIFAR models only.

Every (round, allocator, model, batch, framework) runs in a fresh process
(`python -m benchmarks.peers.<module>`), so no framework warms another's caches or
allocator. Frameworks are interleaved round by round, so slow drift of the machine
(other work on the shared cores) hits every framework alike; each process runs
`--warmup` untimed steps (the first is reported as the compile time), then times
`--steps` steps one by one; a round's figure is the median step, and the reported
figure the median over rounds. `ratio_to_fcnn` is taken within each round, then the
median over rounds. Defaults per model: 50 timed steps after 10 warm-up steps for
RefNet; for the CIFAR models up to 30 after 2, a process stopping once its timed steps
took 20 s (`--max-seconds`), after at least 3: the XLA-based peers need 10-16 s per
VGG-11-BN step. `--steps`/`--warmup`/`--max-seconds` set them for every model.

Threads: every process gets the same CPU set (`--threads N`, default all cores,
pinned with sched_setaffinity) and OMP_NUM_THREADS=N; XLA sizes its thread pool
from the CPU set, PyTorch from OMP_NUM_THREADS. On a machine shared with other work,
PyTorch's OpenMP workers wait for each other at every parallel region and its step
time can grow tenfold (measured: 26 ms -> 330 ms at batch 128 on 2 busy cores),
while XLA's work-stealing pool degrades gracefully; `--threads 1` with the
`cpu_ms_median` column (process CPU time per step) gives figures that other work
barely moves.

Allocator: `--allocator` takes default, tcmalloc, mimalloc, a comma-separated list of
them, or `both`: the default (glibc) malloc and then the first preloadable one of
mimalloc (libmimalloc.so from the `cmeel-mimalloc` wheel of the `bench` extra) and
tcmalloc (`apt-get install libtcmalloc-minimal4`). A preloaded allocator goes into
every framework's process alike (LD_PRELOAD); one that is asked for but missing is
reported and left out.

JSON: `runs` lists every (model, batch, allocator) configuration with a result per
framework; `results` and `matmul_peak_gflops` repeat the first configuration;
`env` records versions, threads, allocators, the machine and the wall time.
`python -m benchmarks.report` renders it.
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

from benchmarks.peers import PEERS, runs_on
from benchmarks.peers._common import MODELS, param_count, step_flops_per_image
from fcnn import cli
from fcnn.allocator import QUIET, TCMALLOC_PATHS, find_mimalloc, find_tcmalloc

ROOT = Path(__file__).resolve().parent.parent
ALLOCATORS = ("default", "tcmalloc", "mimalloc", "both")
PRELOADED = ("mimalloc", "tcmalloc")  # `both` takes the first of these that preloads
MISSING = {
    "tcmalloc": "tcmalloc not found (looked in {paths}); install it with `apt-get install "
                "libtcmalloc-minimal4` (Debian/Ubuntu)",
    "mimalloc": "mimalloc not found: no libmimalloc.so in the `cmeel-mimalloc` wheel (`pip "
                "install cmeel-mimalloc`, part of the `bench` extra) of this Python",
}
DEFAULT_MODELS = ("refnet", "resnet20", "vgg11_bn")
DEFAULT_FRAMEWORKS = ("fcnn", "stax", "linen", "equinox", "haiku", "torch", "torch_cl")
# Per model: batches, timed steps, warm-up steps (the compiling one included), and
# the seconds of timed steps after which a process stops early (0: never), after at
# least MIN_STEPS: the XLA-based peers take 10-16 s per VGG-11-BN step at batch 128
# on two cores, where fcnn takes about 1.5 s.
MODEL_DEFAULTS = {
    "refnet": {"batch": (128, 32), "steps": 50, "warmup": 10, "max_seconds": 0.0},
    "resnet20": {"batch": (128,), "steps": 30, "warmup": 2, "max_seconds": 20.0},
    "vgg11_bn": {"batch": (128,), "steps": 30, "warmup": 2, "max_seconds": 20.0},
}
MIN_STEPS = 3
QUICK = {"rounds": 1, "steps": 3, "warmup": 1}
# For the time estimate printed before the run: a guess of the step time (ms at batch
# 128, two cores, default malloc) of fcnn, PyTorch and the XLA-based peers, and of
# the first step (s); plus the start of a process and the matmul peak of each round.
GUESS_STEP_MS = {
    "refnet": {"fcnn": 50.0, "torch": 50.0, "xla": 120.0},
    "resnet20": {"fcnn": 300.0, "torch": 600.0, "xla": 1200.0},
    "vgg11_bn": {"fcnn": 1300.0, "torch": 2500.0, "xla": 12000.0},
}
GUESS_COMPILE_S = {
    "refnet": {"fcnn": 1.0, "torch": 0.3, "xla": 1.8},
    "resnet20": {"fcnn": 4.0, "torch": 2.5, "xla": 10.0},
    "vgg11_bn": {"fcnn": 4.0, "torch": 2.5, "xla": 20.0},
}
GUESS_START_S = 3.0
GUESS_PEAK_S = 8.0


# ----------------------------------------------------------------------------------
# Allocators.

def preloads(path: str) -> bool:
    """True when a Python started with LD_PRELOAD=path has the library mapped."""
    env = dict(os.environ, LD_PRELOAD=path)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import sys; sys.stdout.write(open('/proc/self/maps').read())"],
            env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and os.path.basename(os.path.realpath(path)) in proc.stdout


def resolve_allocators(requested, finders) -> tuple[list, dict, list]:
    """([names to run], {name: library path or None}, [notes]).

    `finders` maps "tcmalloc" and "mimalloc" to functions returning a path or None;
    both are always called, so the JSON records what the machine has.
    """
    found = {name: finders[name]() for name in PRELOADED}
    paths = {"default": None}
    notes = []
    for name, path in found.items():
        if path is not None and not preloads(path):
            notes.append(f"{name} at {path} did not load with LD_PRELOAD; left out")
            found[name] = None
    wanted = []
    for name in requested:
        if name == "both":
            first = next((n for n in PRELOADED if found[n]), None)
            if first is None:
                notes.append("no allocator to preload: "
                             + "; ".join(MISSING[n].format(paths=", ".join(TCMALLOC_PATHS))
                                         for n in PRELOADED)
                             + ". Running with the default allocator only.")
            wanted += ["default"] + ([first] if first else [])
        elif name == "default" or found[name]:
            wanted.append(name)
        else:
            notes.append(MISSING[name].format(paths=", ".join(TCMALLOC_PATHS))
                         + "; left out")
    wanted = list(dict.fromkeys(wanted)) or ["default"]
    for name in wanted:
        paths[name] = found.get(name)
    return wanted, paths, notes


def child_env(threads: int, preload: str | None, allocator: str = "default") -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
        env.update(QUIET.get(allocator, {}))
    return env


# ----------------------------------------------------------------------------------
# Processes and medians.

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


VERSION_KEYS = ("jax", "optax", "flax", "haiku", "equinox", "torch")


def summarise(rounds: list[dict], batch: int, peak: float | None,
              model: str = "refnet") -> dict:
    """Per-framework medians over rounds, and each round's ratio to fcnn."""
    names = list(dict.fromkeys(n for r in rounds for n in r))
    flops = step_flops_per_image(model)
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
        gflops = flops * batch / (step / 1e3) / 1e9
        out[name] = {
            "step_ms_median": step,
            "step_ms_rounds": [x["step_ms_median"] for x in ok],
            "steps_timed": [x.get("steps_timed") for x in ok],
            "cpu_ms_median": median([x.get("cpu_ms_median") for x in ok]),
            "compile_s": median([x["compile_s"] for x in ok]),
            "images_per_s": batch / (step / 1e3),
            "peak_rss_mb": max(x["peak_rss_mb"] for x in ok),
            "gflops": gflops,
            "share_of_matmul_peak": gflops / peak if peak else None,
            "ratio_to_fcnn": median(ratios) if ratios else None,
            "loss_first": ok[0]["loss_first"],
            "loss_last": ok[0]["loss_last"],
            "param_count": ok[0].get("param_count"),
            "versions": {k: v for k, v in ok[0].items() if k in VERSION_KEYS},
        }
    return out


# ----------------------------------------------------------------------------------
# The command line.

def build_parser(prog: str = "python -m benchmarks.bench", description: str | None = None,
                 models=DEFAULT_MODELS, frameworks=DEFAULT_FRAMEWORKS, batch=None,
                 steps=None, warmup=None, allocator: str = "both") -> cli.Parser:
    """The command line; building and parsing it imports no peer framework.

    The keyword arguments are the defaults (None: per model, MODEL_DEFAULTS), so that
    `benchmarks.refnet` can keep its own.
    """
    p = cli.Parser(prog=prog, description=description or __doc__.splitlines()[0],
                   allow_abbrev=False)
    p.add_argument("--models", type=cli.name_list(tuple(MODELS), "models"),
                   default=",".join(models), metavar="NAME,NAME,...",
                   help=f"comma-separated models, from {','.join(MODELS)} "
                        f"(default: {','.join(models)})")
    p.add_argument("--frameworks", type=cli.name_list(tuple(PEERS), "frameworks"),
                   default=",".join(frameworks), metavar="NAME,NAME,...",
                   help=f"comma-separated frameworks to time, from {','.join(PEERS)} "
                        f"(default: {','.join(frameworks)}; torch_cl on the CIFAR models "
                        "only)")
    per_model = "; ".join(f"{m} {' '.join(map(str, d['batch']))}"
                          for m, d in MODEL_DEFAULTS.items())
    p.add_argument("--batch", type=cli.number_list(int, "batch sizes"), nargs="+",
                   default=None if batch is None else [tuple(batch)], metavar="B",
                   help="one or more batch sizes for every model, e.g. `--batch 128 32` or "
                        "`--batch 128,32` (default: "
                        + (per_model if batch is None else " ".join(map(str, batch))) + ")")
    p.add_argument("--steps", type=cli.positive_int, default=steps, metavar="N",
                   help="timed steps per process (default: "
                        + ("50 for refnet, 30 for the CIFAR models" if steps is None
                           else str(steps)) + ")")
    p.add_argument("--warmup", type=cli.nonnegative_int, default=warmup, metavar="N",
                   help="untimed steps before them, the first (compile) included (default: "
                        + ("10 for refnet, 2 for the CIFAR models" if warmup is None
                           else str(warmup)) + ")")
    p.add_argument("--max-seconds", type=cli.nonnegative_float, default=None,
                   metavar="SECONDS",
                   help=f"a process stops timing once its timed steps took this long, after "
                        f"at least {MIN_STEPS} of them; 0: never (default: 0 for refnet, 20 "
                        "for the CIFAR models)")
    p.add_argument("--rounds", type=cli.positive_int, default=None, metavar="N",
                   help="interleaved rounds over the frameworks; medians over rounds "
                        "(default: 3)")
    p.add_argument("--allocator", type=cli.name_list(ALLOCATORS, "allocators"),
                   default=allocator, metavar="NAME[,NAME]",
                   help="malloc of every process: default (glibc's), tcmalloc, mimalloc "
                        "(LD_PRELOAD), a comma-separated list of them, or both: default and "
                        f"the first of {', '.join(PRELOADED)} found (default: {allocator})")
    p.add_argument("--threads", type=cli.positive_int, default=len(os.sched_getaffinity(0)),
                   metavar="N", help="CPU cores given to every framework (default: all)")
    p.add_argument("--timeout", type=cli.positive_float, default=900.0, metavar="SECONDS",
                   help="time limit per process (default: 900)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 1 round, 3 timed steps after 1 warm-up step, unless "
                        "given otherwise")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="also write the results as JSON to PATH")
    return p


def parse_args(argv=None, parser: cli.Parser | None = None):
    p = parser or build_parser()
    args = p.parse_args(argv)
    args.models = list(args.models)
    args.frameworks = list(args.frameworks)
    args.allocator = list(args.allocator)
    if args.batch is not None:
        args.batch = [b for group in args.batch for b in group]
    if args.quick:  # the smoke settings, where the command line kept the default
        for key, value in QUICK.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    if args.rounds is None:
        args.rounds = 3
    args.plan = {
        m: {"batch": list(args.batch or MODEL_DEFAULTS[m]["batch"]),
            "steps": args.steps or MODEL_DEFAULTS[m]["steps"],
            "warmup": args.warmup if args.warmup is not None else MODEL_DEFAULTS[m]["warmup"],
            "max_seconds": (args.max_seconds if args.max_seconds is not None
                            else MODEL_DEFAULTS[m]["max_seconds"])}
        for m in args.models
    }
    available = sorted(os.sched_getaffinity(0))
    if args.threads > len(available):
        p.error(f"argument --threads: {args.threads}: expected 1..{len(available)}, the "
                "cores this process may use")
    args.cpus = set(available[: args.threads])
    return args


def estimate_s(plan: dict, frameworks, allocators: int, rounds: int) -> float:
    """A rough wall time of the run from GUESS_*: for planning, not a measurement."""
    per_round = GUESS_PEAK_S * allocators
    for model, p in plan.items():
        for name in (f for f in frameworks if runs_on(f, model)):
            kind = name if name == "fcnn" else "torch" if name.startswith("torch") else "xla"
            for batch in p["batch"]:
                step_s = GUESS_STEP_MS[model][kind] / 1e3 * batch / 128
                timed = p["steps"] * step_s
                if p.get("max_seconds"):
                    timed = min(timed, max(p["max_seconds"], MIN_STEPS * step_s))
                one = (GUESS_START_S + GUESS_COMPILE_S[model][kind]
                       + max(p["warmup"] - 1, 0) * step_s + timed)
                per_round += one * allocators
    return per_round * rounds


# ----------------------------------------------------------------------------------
# The run.

def main(argv=None) -> dict:
    return run(parse_args(argv))


def run(args, find_tcmalloc_fn=None) -> dict:
    finders = {"tcmalloc": find_tcmalloc_fn or find_tcmalloc, "mimalloc": find_mimalloc}
    allocators, paths, notes = resolve_allocators(args.allocator, finders)
    for note in notes:
        print("NOTE: " + note, flush=True)

    configs = [(m, a, b) for m in args.models for a in allocators for b in args.plan[m]["batch"]]
    rounds = {c: [] for c in configs}
    peaks = {a: [] for a in allocators}
    guess = estimate_s(args.plan, args.frameworks, len(allocators), args.rounds)
    print(f"{len(configs)} configurations x {args.rounds} round(s), allocators "
          f"{', '.join(allocators)}; estimated wall time {guess / 60:.0f} min on two quiet "
          f"cores (a guess; the time of round 1 is printed after it)", flush=True)
    t_start = time.time()
    load_start = list(os.getloadavg())
    for rnd in range(args.rounds):
        t_round = time.time()
        tag = f"[round {rnd + 1}/{args.rounds}]"
        for alloc in allocators:
            env = child_env(args.threads, paths[alloc], alloc)
            peak = run_child("benchmarks.matmul_peak", [], env, args.cpus, args.timeout)
            peaks[alloc].append(peak.get("matmul_peak_gflops"))
            print(f"{tag} {alloc}: matmul peak {peak.get('matmul_peak_gflops') or peak}",
                  flush=True)
            for model in args.models:
                plan = args.plan[model]
                for batch in plan["batch"]:
                    this = {}
                    for name in args.frameworks:
                        if not runs_on(name, model):
                            continue
                        module, extra = PEERS[name]
                        extra = [*extra, "--model", model, "--batch", str(batch),
                                 "--steps", str(plan["steps"]), "--warmup", str(plan["warmup"]),
                                 "--max-seconds", str(plan["max_seconds"]),
                                 "--min-steps", str(MIN_STEPS)]
                        try:
                            res = run_child(module, extra, env, args.cpus, args.timeout)
                        except subprocess.TimeoutExpired:
                            res = {"error": f"timed out after {args.timeout} s"}
                        this[name] = res
                        if "step_ms_median" in res:
                            msg = (f"{res['step_ms_median']:9.2f} ms/step "
                                   f"({res.get('steps_timed', '?')} timed), first step "
                                   f"{res['compile_s']:.2f} s, loss {res['loss_first']:.6f}, "
                                   f"{res.get('param_count', 0):,} params, "
                                   f"peak RSS {res['peak_rss_mb']:.0f} MB")
                        else:
                            msg = "skipped: " + res.get("skipped", res.get("error", "?"))
                        print(f"{tag} {alloc:8s} {model:8s} batch {batch:4d} {name:9s} {msg}",
                              flush=True)
                    rounds[(model, alloc, batch)].append(this)
        if rnd == 0 and args.rounds > 1:
            took = time.time() - t_round
            print(f"{tag} took {took / 60:.1f} min; about {took * (args.rounds - 1) / 60:.0f} "
                  "min to go", flush=True)

    runs = []
    for model, alloc, batch in configs:
        peak = median(peaks[alloc])
        plan = args.plan[model]
        runs.append({
            "model": model, "allocator": alloc, "batch": batch, "matmul_peak_gflops": peak,
            "steps": plan["steps"], "warmup": plan["warmup"], "max_seconds": plan["max_seconds"],
            "param_count": param_count(MODELS[model]),
            "step_mflop_per_image": step_flops_per_image(model) / 1e6,
            "results": summarise(rounds[(model, alloc, batch)], batch, peak, model),
        })
    out = {
        "results": runs[0]["results"],
        "matmul_peak_gflops": runs[0]["matmul_peak_gflops"],
        "model": runs[0]["model"],
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
            "allocators": paths,
            "tcmalloc": paths.get("tcmalloc"),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "onednn_env": {k: v for k, v in os.environ.items() if k.startswith("FCNN_ONEDNN")},
            "rounds": args.rounds, "models": args.models, "frameworks": args.frameworks,
            "plan": args.plan,
            "steps": args.plan[args.models[0]]["steps"],
            "warmup": args.plan[args.models[0]]["warmup"],
            "step_mflop_per_image": {m: step_flops_per_image(m) / 1e6 for m in args.models},
            "estimate_s": guess,
            "load_average_start": load_start,
            "wall_s": time.time() - t_start,
            "notes": notes,
        },
    }
    out["env"]["load_average_end"] = list(os.getloadavg())
    print(f"wall time {out['env']['wall_s'] / 60:.1f} min (estimated {guess / 60:.0f})")
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
