"""Data parallelism with `jax.sharding`: the batch split across devices, params replicated.

    mesh = make_mesh()                                   # all devices, axis "data"
    step = make_data_parallel_step(model, loss_fn, optimizer, mesh)
    params, state, opt_state = replicate((params, state, opt_state), mesh)
    params, state, opt_state, metrics = step(params, state, opt_state, batch, rng)

The step is the ordinary train step (`make_train_step`) compiled once with
`jax.jit(..., in_shardings, out_shardings)`: the images and labels are sharded along
their leading axis over the mesh axis (NamedSharding(mesh, P("data"))), while
params, state, optimizer state, rng and metrics are replicated (P()). The program is
written for the global batch, and XLA's SPMD partitioner splits it: each device
runs the forward and backward on its shard, and every reduction over the batch
(the mean loss, the gradient sums, the batch-norm statistics) becomes a
cross-device all-reduce. So **batch-norm statistics are computed over the global
batch automatically**; BatchNorm's `axis_name` is not used here (it is for
`shard_map`/`pmap`-style code, where each device sees only its shard and the
means have to be named explicitly). The result equals the single-device step up to
the order of floating-point sums.

The device count must divide the batch size (checked before each call, with a
clear error). `fit(..., mesh=make_mesh())` trains with it: the iterator places each
batch sharded, params are replicated.

Several processes (hosts): every process calls `initialize()` before any other JAX
call (`python -m fcnn.launch` starts N local processes with what it needs; on a
cluster the same variables come from the job: see docs/multiprocess.md). Then
`jax.devices()` lists the devices of every process, `make_mesh()` spans them, and `fit`
runs unchanged: it defaults to that mesh when there is more than one process; each
process computes the same global batches (one data order), puts only the rows of its
own devices on them (`put_global`, with
`jax.make_array_from_process_local_data`), runs the same compiled step, and process 0
alone writes checkpoints, metrics and the progress bar. On the CPU, processes exchange
their all-reduces through gloo, JAX's CPU collectives.

On one CPU machine, `initialize(devices_per_process=4)` or
`XLA_FLAGS=--xla_force_host_platform_device_count=4` (set before JAX starts) gives 4
host devices to try this on.
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fcnn.data.batching import put_global

from fcnn.train.step import make_train_step

DATA_AXIS = "data"
# What `python -m fcnn.launch` gives each process (a cluster job sets the same).
ENV_COORDINATOR = "FCNN_COORDINATOR"        # host:port of process 0's coordinator
ENV_PROCESSES = "FCNN_NUM_PROCESSES"
ENV_PROCESS_ID = "FCNN_PROCESS_ID"
ENV_DEVICES = "FCNN_DEVICES_PER_PROCESS"     # CPU devices of each process (default 1)
ENV_TIMEOUT = "FCNN_INIT_TIMEOUT"            # seconds to wait for every process to join
HEARTBEAT_SECONDS = 20  # a process silent this long is declared lost, the others stop


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, devices_per_process: int | None = None,
               timeout: int | None = None) -> bool:
    """Joins this process to a multi-process run; returns False when there is none.

    Arguments default to the FCNN_* environment variables `python -m fcnn.launch`
    sets. Must run before any other JAX call. On the CPU it selects gloo for the
    collectives and `devices_per_process` CPU devices. A process that does not answer
    for HEARTBEAT_SECONDS (killed, hung) makes the others stop with an error naming
    the lost task, instead of waiting forever in a collective.
    """
    env = os.environ
    coordinator = coordinator or env.get(ENV_COORDINATOR)
    if coordinator is None:
        return False
    num_processes = num_processes if num_processes is not None else int(env.get(ENV_PROCESSES, "0"))
    process_id = process_id if process_id is not None else int(env.get(ENV_PROCESS_ID, "-1"))
    if not (num_processes >= 1 and 0 <= process_id < num_processes):
        raise ValueError(
            f"process_id={process_id}, num_processes={num_processes}: expected 0 <= process_id "
            f"< num_processes (set {ENV_PROCESSES} and {ENV_PROCESS_ID}, or start the program "
            "with python -m fcnn.launch)")
    devices = devices_per_process or int(env.get(ENV_DEVICES, "1"))
    timeout = timeout or int(env.get(ENV_TIMEOUT, "120"))
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.config.update("jax_num_cpu_devices", devices)
    # JAX aborts the process when the others do not join in time: say what it waits for
    sys.stderr.write(f"process {process_id} of {num_processes}: joining the run coordinated at "
                     f"{coordinator} (waiting up to {timeout} s for all {num_processes})\n")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=timeout,
                                   heartbeat_timeout_seconds=HEARTBEAT_SECONDS)
    except Exception as err:  # noqa: BLE001 - XLA's errors are long; say what failed first
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise RuntimeError(
            f"process {process_id} of {num_processes} could not join the run coordinated at "
            f"{coordinator} within {timeout} s (did all {num_processes} processes start, with the "
            f"same {ENV_PROCESSES}?): {first}") from None
    return True


def is_main_process() -> bool:
    """True in process 0, the one that writes files and shows progress."""
    return jax.process_index() == 0


def to_host(tree):
    """Every leaf as a NumPy array: replicated arrays spanning several processes are read
    from this process's copy (jax.device_get alone refuses them)."""
    def read(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                raise ValueError(f"an array of shape {x.shape} is split over processes: gather it first")
            return np.asarray(x.addressable_data(0))
        return x
    return jax.device_get(jax.tree.map(read, tree))


def make_mesh(devices=None, axis_name: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh over `devices` (default: every device, all hosts) named `axis_name`."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("make_mesh: no devices given")
    return Mesh(np.asarray(devices), (axis_name,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch leaf: leading (example) axis split over the mesh axis."""
    return NamedSharding(mesh, P(mesh.axis_names[0]))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of a replicated value (params, state, ...): a full copy per device."""
    return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh):
    """Puts every leaf of `tree` on every device of `mesh` (every process holds the same
    values: the same initialisation from the same seed, or the same checkpoint)."""
    return jax.device_put(tree, replicated(mesh))


def check_divisible(batch_size: int, mesh: Mesh) -> None:
    """Raises if the mesh's device count does not divide `batch_size`."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"batch size {batch_size} is not divisible by the {n} devices of the mesh: each "
            f"device needs an equal shard; use a batch size that is a multiple of {n}"
        )


def shard_batch(batch, mesh: Mesh):
    """Puts (images, labels) on the mesh, split along the leading axis."""
    check_divisible(int(np.shape(batch[0])[0]), mesh)
    return tuple(put_global(leaf, batch_sharding(mesh)) for leaf in batch)


def make_data_parallel_step(model, loss_fn, optimizer, mesh: Mesh | None = None, **kwargs):
    """The train step of `make_train_step` (same signature and keyword options),
    compiled once for `mesh`: batch sharded, everything else replicated, buffers
    donated. The batch size must be a multiple of the number of devices."""
    mesh = make_mesh() if mesh is None else mesh
    kwargs.pop("jit", None)
    one = make_train_step(model, loss_fn, optimizer, jit=False, **kwargs)
    rep, data = replicated(mesh), batch_sharding(mesh)
    compiled = jax.jit(
        one,
        in_shardings=(rep, rep, rep, (data, data), rep),
        out_shardings=(rep, rep, rep, rep),
        donate_argnums=(0, 1, 2),
    )

    def step(params, state, opt_state, batch, rng):
        check_divisible(int(np.shape(batch[0])[0]), mesh)
        return compiled(params, state, opt_state, tuple(batch), rng)

    step.mesh = mesh
    step.compiled = compiled
    return step
