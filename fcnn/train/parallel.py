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
clear error); `fit(..., train_step=step, data_device=batch_sharding(mesh))` trains
with it, the iterator placing each batch sharded.

Multi-host: start every process with `jax.distributed.initialize()` (coordinator
address, process count and id from the arguments or the cluster environment)
before any other JAX call. `jax.devices()` then lists the devices of all hosts and
`make_mesh()` spans them; each process loads its own part of the global batch and
builds the global array with
`jax.make_array_from_process_local_data(batch_sharding(mesh), local_batch)`, and
calls the same step; params are replicated on every device of every host.

On one CPU machine, `XLA_FLAGS=--xla_force_host_platform_device_count=4` (set before
JAX is imported) gives 4 host devices to try this on.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fcnn.train.step import make_train_step

DATA_AXIS = "data"


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
    """Puts every leaf of `tree` on every device of `mesh`."""
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
    return jax.device_put(tuple(batch), batch_sharding(mesh))


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
