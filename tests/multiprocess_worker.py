"""One process of a data-parallel run, for tests/test_multiprocess.py.

    python tests/multiprocess_worker.py OUT_DIR [--steps N] [--devices K] [--kill-after N]

Joins the run `python -m fcnn.launch` started (FCNN_* variables), or, without them,
runs alone on K CPU devices. Trains the reference CNN with BatchNorm and Dropout on
the first 512 MNIST training images, batch 32, SGD momentum, with checkpoints every 4
steps in OUT_DIR/run (resumed when there is one), and writes OUT_DIR/final.npz
(params, state, optimizer state and the per-epoch metrics, from process 0).
With --kill-after N, process 1 sends itself SIGKILL after N steps.
"""

from __future__ import annotations

import os
import signal
import sys


def main(argv) -> int:
    out = argv[1]
    steps = int(argv[argv.index("--steps") + 1]) if "--steps" in argv else 16
    devices = int(argv[argv.index("--devices") + 1]) if "--devices" in argv else 4
    kill_after = int(argv[argv.index("--kill-after") + 1]) if "--kill-after" in argv else None
    from fcnn.train import parallel

    if not parallel.initialize():
        import jax

        jax.config.update("jax_num_cpu_devices", devices)
    import jax
    import numpy as np

    from fcnn import losses, models
    from fcnn.data import load_dataset
    from fcnn.train import fit, make_optimizer

    data = load_dataset("mnist", os.environ["FCNN_DATA_DIR"])
    images, labels = data.train.images[:512], data.train.labels[:512]
    model = models.refnet(10, widths=(8, 16), hidden=32, batchnorm=True, dropout=0.25)
    _, params, state = model.init(jax.random.PRNGKey(0), (None, 28, 28, 1))
    step = make_train_step_counting(model, kill_after) if kill_after else None
    result = fit(model, losses.softmax_cross_entropy, make_optimizer("momentum", 0.05), params, state,
                 (images, labels), epochs=steps * 32 // 512, batch_size=32, seed=3,
                 eval_data=(data.test.images[:256], data.test.labels[:256]), out_dir=os.path.join(out, "run"),
                 checkpoint_every=4, resume=True, progress=False, mesh=parallel.make_mesh(),
                 train_step=step)
    if parallel.is_main_process():
        host = parallel.to_host((result.params, result.state, result.opt_state))
        leaves = {f"a{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(host))}
        leaves["history"] = np.asarray([[r["train_loss"], r["train_accuracy"], r["eval_loss"],
                                         r["eval_accuracy"]] for r in result.history])
        np.savez(os.path.join(out, "final.npz"), **leaves)
    sys.stdout.write(f"done {jax.process_index()} {result.step}\n")
    return 0


def make_train_step_counting(model, kill_after):
    """The data-parallel step, process 1 killing itself after `kill_after` calls."""
    import jax

    from fcnn import losses
    from fcnn.train import make_optimizer, parallel

    step = parallel.make_data_parallel_step(model, losses.softmax_cross_entropy,
                                            make_optimizer("momentum", 0.05), parallel.make_mesh())
    calls = [0]

    def counted(*args):
        out = step(*args)
        calls[0] += 1
        if jax.process_index() == 1 and calls[0] == kill_after:
            jax.block_until_ready(out)
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    return counted


if __name__ == "__main__":
    sys.exit(main(sys.argv))
