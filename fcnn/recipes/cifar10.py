"""Train a classic architecture on CIFAR-10 with the standard recipe.

    python -m fcnn.recipes.cifar10 --model resnet20 --data-dir DIR [--epochs 30] [--out DIR]

The recipe of He et al. (2016, Sec. 4.2) for CIFAR, shortened for a CPU budget:
per-channel standardized images; augmentation on the device inside the compiled step
(pad 4 and crop back to 32x32 at a random offset, random horizontal flip); SGD with
Nesterov momentum 0.9 and an L2 penalty on the kernels (5e-4 by default; biases and
BatchNorm parameters are not decayed); a learning rate that warms up linearly, then
follows a cosine decay to zero (or the one-cycle policy); optional label smoothing;
optionally bfloat16 compute with float32 weights (`--precision bfloat16`,
`fcnn.precision.mixed`: on a CPU with AVX-512 BF16, oneDNN's bfloat16 convolutions
make a ResNet-20 step about 1.6x faster).
It evaluates on the test set after every epoch, keeps the best checkpoint beside the
last ones, and resumes (`--resume`) bit-identically.

What it reports (stdout and <out>/summary.json): the final test accuracy (the
headline figure: the best epoch is picked on the test set, so it is shown only
beside it), the wall time to reach 85%, 90% and the ResNet paper's 91.25% for
ResNet-20, the time per epoch, the curve (<out>/curve.png) and <out>/report.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

from fcnn import cli

PROG = "python -m fcnn.recipes.cifar10"
MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "vgg11_bn", "vgg16_bn",
          "alexnet_cifar", "refnet")
TARGETS = (0.85, 0.90, 0.9125)
SCHEDULES = ("cosine", "onecycle")
PRECISIONS = ("float32", "bfloat16")
# --train-size / --test-size pick their images with this seed (the files are sorted by class).
SUBSET_SEED = 0


def build_parser() -> argparse.ArgumentParser:
    parser = cli.Parser(prog=PROG, description="Train a classic architecture on CIFAR-10.")
    parser.add_argument("--model", choices=MODELS, default="resnet20", help="architecture (default: resnet20)")
    parser.add_argument("--data-dir", default=None,
                        help="folder holding CIFAR-10 (the JPEG zip or the binary version); "
                             "default: $FCNN_DATA_DIR")
    parser.add_argument("--epochs", type=cli.positive_int, default=30, help="epochs (default: 30)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=128, help="batch size (default: 128)")
    parser.add_argument("--lr", type=cli.positive_float, default=0.1,
                        help="peak learning rate (default: 0.1)")
    parser.add_argument("--weight-decay", type=cli.nonnegative_float, default=5e-4,
                        help="L2 penalty on the kernels (default: 5e-4)")
    parser.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                        help="linear warm-up then cosine decay, or the one-cycle policy (default: cosine)")
    parser.add_argument("--warmup-epochs", type=cli.nonnegative_float, default=2.0,
                        help="epochs of linear warm-up (cosine schedule; default: 2)")
    parser.add_argument("--label-smoothing", type=cli.nonnegative_float, default=0.0,
                        help="label smoothing epsilon (default: 0, none)")
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="compute dtype of the model; weights, gradients, BatchNorm statistics "
                             "and the loss stay float32 (default: float32)")
    parser.add_argument("--train-size", type=cli.positive_int, default=None,
                        help="train on a fixed random subset of N training images (tests; default: all 50,000)")
    parser.add_argument("--test-size", type=cli.positive_int, default=None,
                        help="evaluate on a fixed random subset of N test images (tests; default: all 10,000)")
    parser.add_argument("--seed", type=cli.nonnegative_int, default=0, help="seed (default: 0)")
    parser.add_argument("--out", default=None, help="run folder (default: runs/cifar10/<model>-s<seed>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def model_for(name: str, precision: str = "float32"):
    """The architecture `name` for 10 classes, computed in `precision`."""
    from fcnn import models

    if name.startswith("resnet"):
        model = models.resnet_cifar(int(name[len("resnet"):]), 10)
    elif name.startswith("vgg"):
        model = models.vgg(int(name[3:5]), 10, head="cifar", batchnorm=True)
    elif name == "alexnet_cifar":
        model = models.alexnet_cifar(10)
    else:
        model = models.refnet(10)
    if precision == "float32":
        return model
    import jax.numpy as jnp

    from fcnn import precision as precision_lib

    return precision_lib.mixed(model, compute_dtype=jnp.dtype(precision))


def learning_rate(schedule: str, peak: float, steps: int, warmup: int):
    import optax

    if schedule == "onecycle":
        return optax.cosine_onecycle_schedule(steps, peak)
    warmup = min(max(warmup, 1), steps // 2)  # a short run keeps half of it for the decay
    return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, steps)


def time_to(history: list[dict], target: float) -> float | None:
    """Training wall time (s, evaluation included) until the test accuracy first reached
    `target`, or None."""
    elapsed = 0.0
    for record in history:
        elapsed += record["seconds"]
        if record.get("eval_accuracy", 0.0) >= target:
            return elapsed
    return None


def plot_curve(path: str, history: list[dict], title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    epochs = [r["epoch"] for r in history]
    minutes = [sum(r["seconds"] for r in history[:i + 1]) / 60 for i in range(len(history))]
    for ax, x, xlabel in ((fig.add_subplot(1, 2, 1), epochs, "epoch"),
                          (fig.add_subplot(1, 2, 2), minutes, "wall time (minutes)")):
        ax.plot(x, [r["eval_accuracy"] for r in history], label="test accuracy")
        ax.plot(x, [r["train_accuracy"] for r in history], label="training accuracy (augmented)")
        for target in TARGETS:
            ax.axhline(target, color="grey", linestyle=":", linewidth=0.8)
        ax.set_ylim(0.3, 1.0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path + ".tmp.png")
    os.replace(path + ".tmp.png", path)


PAPER_ACCURACY = {"resnet20": 0.9125, "resnet32": 0.9249, "resnet44": 0.9283, "resnet56": 0.9303,
                  "resnet110": 0.9357}  # He et al. 2016, Table 6 (100 - error %)


def write_report(out: str, summary: dict) -> str:
    """Writes <out>/report.md from a run's summary (as `main` writes it): the command,
    the accuracies, the time to each target and per epoch, and the curve."""
    history, settings = summary["history"], summary["settings"]
    seconds = summary["seconds_per_epoch"]
    paper = PAPER_ACCURACY.get(summary["model"])
    lines = [
        f"# {summary['model']} on CIFAR-10", "",
        f"Command: `{summary['command']}`", "",
        f"{summary['parameters']:,} parameters; {len(history)} of {settings['epochs']} epochs of batch "
        f"{settings['batch_size']}, peak learning rate {settings['lr']:g} ({settings['schedule']}, "
        f"{settings['warmup_epochs']:g} warm-up epochs), L2 {settings['weight_decay']:g}, seed "
        f"{settings['seed']}, label smoothing {settings.get('label_smoothing', 0.0):g}, "
        f"{settings.get('precision', 'float32')} compute; pad-4 crop and horizontal flip.", "",
        "| | value |", "|---|---|",
        f"| final test accuracy | {100 * summary['final_test_accuracy']:.2f}% |",
        f"| best epoch's test accuracy (picked on the test set: not a result) | "
        f"{100 * summary['best_test_accuracy']:.2f}% |",
    ]
    if paper is not None:
        lines.append(f"| the paper's (He et al. 2016, 64k iterations, about 164 epochs) | {100 * paper:.2f}% |")
    for target, value in summary["time_to"].items():
        lines.append(f"| training time to {target} test accuracy | "
                     + (f"{value / 60:.1f} min |" if value else "not reached |"))
    lines += [f"| time per epoch (median; evaluation included) | {sorted(seconds)[len(seconds) // 2]:.0f} s |",
              f"| training time in all | {sum(seconds) / 60:.1f} min |", "",
              "![test and training accuracy by epoch and by wall time](curve.png)", ""]
    path = os.path.join(out, "report.md")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)
    return path


def main(argv=None) -> int:
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # a real command line: restart once with tcmalloc or mimalloc
        from fcnn import allocator

        allocator.use_fast_allocator()
    from fcnn.train import parallel

    parallel.initialize()  # a multi-process run started by python -m fcnn.launch, if any

    import jax

    from fcnn import augment, losses
    from fcnn.data import load_dataset, subsample
    from fcnn.layers import count_params
    from fcnn.train import FitInterrupted, KeepBest, fit, optimizers

    try:
        data = load_dataset("cifar10", args.data_dir)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err).replace("\n", " "))
    train = subsample(data.train, args.train_size, seed=SUBSET_SEED)
    test = subsample(data.test, args.test_size, seed=SUBSET_SEED)
    if args.batch_size > train.labels.shape[0]:
        parser.error(f"--batch-size {args.batch_size} is larger than the {train.labels.shape[0]} "
                     "training images")
    out = args.out or os.path.join("runs", "cifar10", f"{args.model}-s{args.seed}")
    steps_per_epoch = train.labels.shape[0] // args.batch_size
    steps = steps_per_epoch * args.epochs
    schedule = learning_rate(args.schedule, args.lr, steps, round(args.warmup_epochs * steps_per_epoch))
    optimizer = optimizers.nesterov(schedule, 0.9, l2=args.weight_decay)
    loss_fn = losses.softmax_cross_entropy
    if args.label_smoothing:
        loss_fn = functools.partial(losses.softmax_cross_entropy, label_smoothing=args.label_smoothing)
    model = model_for(args.model, args.precision)
    _, params, state = model.init(jax.random.PRNGKey(args.seed), (-1, 32, 32, 3))
    print(f"{args.model}: {count_params(params):,} parameters; {train.labels.shape[0]} training, "
          f"{test.labels.shape[0]} test images; {args.epochs} epochs of {steps_per_epoch} steps")
    started = time.perf_counter()
    try:
        result = fit(model, loss_fn, optimizer, params, state, train, epochs=args.epochs,
                     batch_size=args.batch_size, seed=args.seed, eval_data=test,
                     augment=augment.chain(augment.random_crop, augment.random_flip),
                     callbacks=[KeepBest("eval_accuracy")], out_dir=out, resume=args.resume,
                     overwrite=not args.resume, progress=not args.quiet)
    except FitInterrupted:
        print(f"resume with: {PROG} --out {out} --resume (and the same options)", file=sys.stderr)
        return 130
    history = result.history
    summary = {
        "command": " ".join([PROG, *(sys.argv[1:] if argv is None else argv)]),
        "model": args.model, "parameters": count_params(params), "settings": vars(args),
        "dataset": {"name": "cifar10", "train": int(train.labels.shape[0]), "test": int(test.labels.shape[0]),
                    "image_shape": [32, 32, 3], "num_classes": 10},
        "final_test_accuracy": history[-1]["eval_accuracy"] if history else None,
        "best_test_accuracy": max((r["eval_accuracy"] for r in history), default=None),
        "seconds_per_epoch": [r["seconds"] for r in history],
        "time_to": {f"{100 * t:g}%": time_to(history, t) for t in TARGETS},
        "wall_time_this_process": time.perf_counter() - started,
        "history": history, "stopped": result.stopped,
    }
    with open(os.path.join(out, "summary.json.tmp"), "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(os.path.join(out, "summary.json.tmp"), os.path.join(out, "summary.json"))
    if history:
        write_report(out, summary)
        plot_curve(os.path.join(out, "curve.png"), history,
                   f"{args.model} on CIFAR-10: test accuracy {100 * history[-1]['eval_accuracy']:.2f}% "
                   f"after {len(history)} epochs")
    reached = ", ".join(f"{k} in {v / 60:.1f} min" if v else f"{k} not reached"
                        for k, v in summary["time_to"].items())
    print(f"test accuracy {100 * (summary['final_test_accuracy'] or 0):.2f}% (best epoch "
          f"{100 * (summary['best_test_accuracy'] or 0):.2f}%); {reached}; results in {out}")
    return 1 if result.nonfinite else 0


if __name__ == "__main__":
    from fcnn import program

    program.run(main, PROG)
