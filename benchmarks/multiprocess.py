"""Global throughput of data-parallel training in 1 or 2 processes, on this machine.

    python -m benchmarks.multiprocess [--steps 40] [--batch 128] [--json PATH]

Trains RefNet-MNIST (random 28x28 images, the real model and step) with `fit` in three
set-ups, each in fresh processes: 1 process x 1 device, 1 process x 2 devices, 2
processes x 1 device (started by `python -m fcnn.launch`), and reports images per second
over the steps after the first (compile) epoch, and the ratio to 1 process x 1 device.
On a 2-core machine this measures the overhead of the split, not a speed-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fcnn import cli

SETUPS = ((1, 1), (1, 2), (2, 1))  # (processes, devices per process)


def worker(steps: int, batch: int, devices: int) -> None:
    """One process: time `steps` steps of fit after a warm-up epoch; process 0 prints."""
    from fcnn.train import parallel

    if not parallel.initialize():
        import jax

        jax.config.update("jax_num_cpu_devices", devices)
    import jax
    import numpy as np

    from fcnn import losses, models
    from fcnn.train import fit, make_optimizer

    rng = np.random.default_rng(0)
    images = rng.normal(size=(steps * batch, 28, 28, 1)).astype(np.float32)
    labels = rng.integers(0, 10, steps * batch).astype(np.int32)
    model = models.refnet(10)
    _, params, state = model.init(jax.random.PRNGKey(0), (None, 28, 28, 1))
    # the first epoch compiles; the second alone is timed
    result = fit(model, losses.softmax_cross_entropy, make_optimizer("momentum", 0.01), params,
                 state, (images, labels), epochs=2, batch_size=batch, progress=False,
                 mesh=parallel.make_mesh(), log_every=steps)
    if parallel.is_main_process():
        seconds = result.history[1]["seconds"]
        print(json.dumps({"images_per_second": steps * batch / seconds}), flush=True)


def measure(processes: int, devices: int, steps: int, batch: int) -> float:
    me = [sys.executable, "-m", "benchmarks.multiprocess", "--worker", "--steps", str(steps),
          "--batch", str(batch), "--devices", str(devices)]
    if processes > 1:
        me = [sys.executable, "-m", "fcnn.launch", "--processes", str(processes),
              "--devices-per-process", str(devices), "--", *me]
    out = subprocess.run(me, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["images_per_second"]


def main(argv=None) -> int:
    parser = cli.Parser(prog="python -m benchmarks.multiprocess", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=cli.positive_int, default=40, help="timed steps (default: 40)")
    parser.add_argument("--batch", type=cli.positive_int, default=128, help="global batch (default: 128)")
    parser.add_argument("--rounds", type=cli.positive_int, default=2, help="interleaved rounds (default: 2)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--worker", action="store_true",
                        help="(internal) run as one timed process of a set-up")
    parser.add_argument("--devices", type=cli.positive_int, default=1, help="(worker) devices")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.steps, args.batch, args.devices)
        return 0
    rates = {setup: [] for setup in SETUPS}
    for _ in range(args.rounds):
        for setup in SETUPS:
            rates[setup].append(measure(*setup, args.steps, args.batch))
    base = sorted(rates[(1, 1)])[len(rates[(1, 1)]) // 2]
    rows = []
    for (p, d), values in rates.items():
        median = sorted(values)[len(values) // 2]
        rows.append({"processes": p, "devices_per_process": d, "images_per_second": median,
                     "ratio_to_1x1": median / base, "rounds": values})
        print(f"{p} process(es) x {d} device(s): {median:8.0f} images/s ({median / base:.2f}x)")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump({"batch": args.batch, "steps": args.steps, "cpu_count": os.cpu_count(),
                       "results": rows}, f, indent=1)
        os.replace(args.json + ".tmp", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
