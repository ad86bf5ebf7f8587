"""Data-parallel training in several real processes (jax.distributed, gloo on the CPU),
started with `python -m fcnn.launch`: 2 processes x 2 devices equal 1 process x 4 devices;
a lost process stops the others instead of hanging, and the run resumes; bad set-ups
are refused with a clear message.

Tolerance of the comparison: the two runs execute the same SPMD program on a 4-device
mesh; the all-reduces differ (gloo between processes, in-process otherwise) and may sum
the 4 partial gradients in another order, and oneDNN's kernel gradient (the CPU
lowering of the convolutions) splits each device's batch into chunks by the size of
the process's thread pool, which differs between 1 process and 2. float32 rounding of
such reorderings is ~1e-7 relative per step, grown by 16 steps of training: we allow
1e-5 absolute on values of order 0.1-1 (rtol 1e-4).
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from fcnn.train import load_for_inference

pytestmark = pytest.mark.data
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multiprocess_worker.py")


def _env(mnist_dir, **extra):
    env = dict(os.environ, FCNN_DATA_DIR=mnist_dir, PYTHONPATH=ROOT, **extra)
    for key in ("FCNN_COORDINATOR", "FCNN_NUM_PROCESSES", "FCNN_PROCESS_ID"):
        env.pop(key, None)
    return env


def launch(mnist_dir, out, *worker_args, processes=2, devices=2, timeout=600):
    command = [sys.executable, "-m", "fcnn.launch", "--processes", str(processes),
               "--devices-per-process", str(devices), "--", sys.executable, WORKER, str(out),
               *worker_args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=_env(mnist_dir), cwd=ROOT)


def alone(mnist_dir, out, devices=4):
    return subprocess.run([sys.executable, WORKER, str(out), "--devices", str(devices)],
                          capture_output=True, text=True, timeout=600, env=_env(mnist_dir), cwd=ROOT)


def final(out):
    with np.load(os.path.join(out, "final.npz")) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def mnist_root():
    root = os.environ.get("FCNN_DATA_DIR")
    if not root or not any(os.path.isfile(os.path.join(d, "train-images-idx3-ubyte.gz"))
                           for d in (root, os.path.join(root, "mnist"))):
        from tests.conftest import skip_or_fail_missing_data

        skip_or_fail_missing_data("MNIST not found under FCNN_DATA_DIR")
    return root


@pytest.fixture(scope="module")
def two_by_two(mnist_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("two_by_two")
    result = launch(mnist_root, out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_two_processes_equal_one_process_with_four_devices(mnist_root, two_by_two, tmp_path):
    result = alone(mnist_root, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    many, one = final(two_by_two), final(tmp_path)
    assert set(many) == set(one) and len(many) > 10
    for key in one:
        np.testing.assert_allclose(many[key], one[key], rtol=1e-4, atol=1e-5, err_msg=key)
    # one writer: the checkpoints and the log of process 0 only, and they load in one process
    run = two_by_two / "run"
    assert sorted(os.listdir(run)) == ["checkpoints", "metrics.jsonl"]
    assert len(open(run / "metrics.jsonl").read().splitlines()) == 1
    params, state = load_for_inference(str(run))
    assert jax.tree_util.tree_leaves(params)[0].shape == one["a0"].shape


@pytest.mark.slow
def test_a_lost_process_stops_the_other_and_the_run_resumes_bit_identically(
        mnist_root, two_by_two, tmp_path):
    killed = launch(mnist_root, tmp_path, "--kill-after", "6", timeout=300)
    assert killed.returncode != 0
    assert "process 1 of 2 was killed by signal 9" in killed.stderr
    ckpts = sorted(f for f in os.listdir(tmp_path / "run" / "checkpoints") if f.endswith(".json"))
    assert ckpts == ["ckpt_00000004.json"]  # the last one written before the loss
    load_for_inference(str(tmp_path / "run"))
    resumed = launch(mnist_root, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again, uninterrupted = final(tmp_path), final(two_by_two)
    for key in uninterrupted:
        np.testing.assert_array_equal(again[key], uninterrupted[key], err_msg=key)


def test_bad_setups_are_refused_before_anything_is_written(mnist_root, tmp_path):
    # a process waiting for a second one that never comes: it says what it waits for
    lonely = subprocess.run(
        [sys.executable, WORKER, str(tmp_path / "lonely")], capture_output=True, text=True,
        timeout=120, cwd=ROOT,
        env=dict(_env(mnist_root), FCNN_COORDINATOR="127.0.0.1:1", FCNN_NUM_PROCESSES="2",
                 FCNN_PROCESS_ID="0", FCNN_INIT_TIMEOUT="5"))
    assert lonely.returncode != 0
    assert "process 0 of 2: joining the run coordinated at 127.0.0.1:1" in lonely.stderr
    assert not os.path.exists(tmp_path / "lonely" / "run")
    # a coordinator port that is taken
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "fcnn.launch", "--processes", "2", "--port",
                                 str(taken), "--", sys.executable, "-c", "pass"],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2 and f"--port {taken}: the port is in use" in result.stderr


def test_a_batch_that_does_not_split_over_the_devices_is_refused(tmp_path):
    script = (
        "import jax; jax.config.update('jax_num_cpu_devices', 4)\n"
        "import numpy as np, fcnn\n"
        "from fcnn import losses\nfrom fcnn.train import fit, make_optimizer, parallel\n"
        "m = fcnn.serial(fcnn.Flatten(), fcnn.Dense(3))\n"
        "_, p, s = m.init(jax.random.PRNGKey(0), (None, 2, 2, 1))\n"
        "x, y = np.zeros((60, 2, 2, 1), np.float32), np.zeros(60, np.int32)\n"
        f"fit(m, losses.softmax_cross_entropy, make_optimizer('sgd', 0.1), p, s, (x, y), epochs=1,"
        f" batch_size=30, mesh=parallel.make_mesh(), out_dir={str(tmp_path / 'run')!r})\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode != 0
    assert "batch size 30 is not divisible by the 4 devices of the mesh" in result.stderr
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("num_processes, process_id", [(2, 2), (2, -1), (0, 0)])
def test_mismatched_process_counts_are_refused_before_joining(num_processes, process_id):
    from fcnn.train import parallel

    with pytest.raises(ValueError, match=rf"process_id={process_id}, num_processes={num_processes}: "
                                         r"expected 0 <= process_id < num_processes"):
        parallel.initialize("127.0.0.1:1", num_processes=num_processes, process_id=process_id)
