"""Train the reference CNN, print its test accuracy, write checkpoints.

    python -m fcnn.main [--dataset digits] [--data-dir DIR] [--epochs 10]
                        [--batch-size 32] [--lr 1e-3] [--seed 0] [--out DIR]
                        [--checkpoint-every N] [--resume | --overwrite]

The default dataset is scikit-learn's bundled 8x8 digits (no download): the
reference CNN (fcnn.models.refnet) trained with Adam reaches about 98% test
accuracy in well under a minute on two CPU cores. The run directory (default
runs/refnet-<dataset>/<timestamp>/) receives metrics.jsonl and checkpoints/ (at each
epoch's end and every --checkpoint-every steps). An existing run directory is never
overwritten silently: --resume continues it, --overwrite replaces it. Ctrl-C stops
with one line saying where and how to resume (exit code 130).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from fcnn import cli
from fcnn.data import DATASETS

PROG = "python -m fcnn.main"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.Parser(prog=PROG, description="Train the reference CNN and report its test accuracy.")
    parser.add_argument("--dataset", choices=DATASETS, default="digits",
                        help="dataset (default: digits, bundled, no download)")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the dataset files (default: $FCNN_DATA_DIR)")
    parser.add_argument("--epochs", type=cli.positive_int, default=10, help="epochs (default: 10)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=32,
                        help="examples per step (default: 32)")
    parser.add_argument("--lr", type=cli.positive_float, default=1e-3,
                        help="Adam learning rate (default: 1e-3)")
    parser.add_argument("--seed", type=cli.nonnegative_int, default=0,
                        help="seed for initialisation and data order (default: 0)")
    parser.add_argument("--out", default=None,
                        help="run directory (default: runs/refnet-<dataset>/<timestamp>)")
    parser.add_argument("--checkpoint-every", type=cli.positive_int, default=None, metavar="N",
                        help="also write a checkpoint every N steps (default: at each epoch's end only)")
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--resume", action="store_true",
                      help="continue the run in --out from its latest checkpoint")
    runs.add_argument("--overwrite", action="store_true",
                      help="replace the run already in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C is handled below now
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # a real command line: restart once with tcmalloc or mimalloc
        from fcnn import allocator

        allocator.use_fast_allocator()
    from fcnn.train import parallel

    parallel.initialize()  # a multi-process run started by python -m fcnn.launch, if any

    import jax

    from fcnn import losses
    from fcnn.data import load_dataset
    from fcnn.layers import count_params
    from fcnn.models import refnet
    from fcnn.train import FitInterrupted, fit, list_checkpoints, make_optimizer

    try:
        data = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err).replace("\n", " "))
    if args.batch_size > data.train.labels.shape[0]:
        parser.error(f"--batch-size {args.batch_size} is larger than the "
                     f"{data.train.labels.shape[0]} training examples")
    out = args.out or os.path.join("runs", f"refnet-{args.dataset}", time.strftime("%Y%m%d-%H%M%S"))
    if args.resume and args.out is None:
        parser.error("--resume needs --out DIR, the run to continue")
    earlier = list_checkpoints(os.path.join(out, "checkpoints"))
    if args.out is None and jax.process_count() > 1:
        parser.error("a multi-process run needs --out DIR, the one run folder of all processes")
    if earlier and not (args.resume or args.overwrite):
        parser.error(f"--out {out} already holds a run (latest checkpoint {earlier[-1]}): pass "
                     "--resume to continue it, --overwrite to replace it, or another --out")

    model = refnet(data.num_classes)
    _, params, state = model.init(jax.random.PRNGKey(args.seed), (-1,) + tuple(data.image_shape))
    print(f"{args.dataset}: {data.train.labels.shape[0]} training and {data.test.labels.shape[0]} "
          f"test images of shape {data.image_shape}; refnet with {count_params(params):,} parameters")
    started = time.perf_counter()
    try:
        result = fit(
            model, losses.softmax_cross_entropy, make_optimizer("adam", args.lr), params, state,
            data.train, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
            eval_data=data.test, out_dir=out, progress=not args.quiet, overwrite=args.overwrite,
            resume=args.resume, checkpoint_every=args.checkpoint_every,
        )
    except FitInterrupted:  # fit printed where it stopped
        print(f"resume with: {PROG} --out {out} --resume (and the same options)", file=sys.stderr)
        return 130
    seconds = time.perf_counter() - started
    if result.nonfinite:
        return 1
    accuracy = result.history[-1]["eval_accuracy"]
    print(f"test accuracy {100 * accuracy:.2f}% after {args.epochs} epochs "
          f"({result.step} steps, {seconds:.1f} s)")
    print(f"checkpoint: {result.checkpoint}")
    print(f"metrics:    {os.path.join(out, 'metrics.jsonl')}")
    return 0


if __name__ == "__main__":
    from fcnn import program

    program.run(main, PROG)
