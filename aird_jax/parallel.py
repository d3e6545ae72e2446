"""Data parallelism: which devices train, how the per-device step is mapped onto them, and how
state, batches and metrics move between host and devices.

The train step is written once, per device, with ``axis_name=AXIS`` collectives. It runs through
``jax.shard_map`` under ``jit`` on a 1-D ``data`` mesh (default) or through ``jax.pmap``
(``config.parallel="pmap"``, maintenance mode in JAX); everything that differs between the two
lives in this module and nowhere else.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"


@dataclasses.dataclass
class Parallel:
    """How the per-device step is mapped onto devices, and how arrays get there."""

    mode: str
    devices: list
    mesh: jax.sharding.Mesh  # global "data" mesh (shard_map) / also used for pmap bookkeeping
    local_mesh: jax.sharding.Mesh  # this host's devices: validation and prediction

    @property
    def n(self) -> int:
        return len(self.devices)

    def _n_local(self) -> int:
        return len([d for d in self.devices if d.process_index == jax.process_index()])

    def put_state(self, host_tree: Any) -> Any:
        """Replicate a host pytree on every training device."""
        if self.mode == "pmap":
            # pmap takes host arrays with a leading device axis; its outputs stay on device.
            n = self._n_local()
            return jax.tree.map(lambda x: np.stack([np.asarray(x)] * n), host_tree)
        sharding = NamedSharding(self.mesh, P())
        return jax.tree.map(
            lambda x: jax.make_array_from_callback(
                np.shape(x), sharding, lambda i: np.asarray(x)[i]
            ),
            host_tree,
        )

    def get_state(self, dev_tree: Any) -> Any:
        """Host numpy copy of replicated state (identical on every device by construction)."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: np.asarray(x)[0], dev_tree)
        return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), dev_tree)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """This host's part of the global batch, split over the devices."""
        if self.mode == "pmap":
            n = self._n_local()
            return {k: v.reshape((n, -1) + v.shape[1:]) for k, v in batch.items()}
        sharding = NamedSharding(self.mesh, P(AXIS))
        return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}

    def get_metrics(self, m: Any) -> dict[str, float]:
        """A step's (replicated) scalar metrics as host floats."""
        m = jax.device_get(m)
        if self.mode == "pmap":
            m = jax.tree.map(lambda x: x[0], m)
        return {k: float(v) for k, v in m.items()}

    def compile_step(self, step_fn: Callable) -> Callable:
        """``step_fn(state, batch, seed_key)`` written per device -> the compiled global step."""
        if self.mode == "pmap":
            # Multi-host pmap takes every participating device; each host feeds its local ones.
            return jax.pmap(step_fn, axis_name=AXIS, devices=self.devices, donate_argnums=0)
        mapped = jax.shard_map(
            step_fn, mesh=self.mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P())
        )
        return jax.jit(mapped, donate_argnums=0)


def make_parallel(config: ml_collections.ConfigDict) -> Parallel:
    """Devices for training; a clear error when the global batch cannot be split evenly."""
    devices = jax.devices()
    if config.num_devices:
        if jax.process_count() > 1:
            raise ValueError("num_devices only applies to single-host runs; leave it at 0")
        if config.num_devices > len(devices):
            raise ValueError(
                f"num_devices={config.num_devices} but only {len(devices)} devices are visible"
            )
        devices = devices[: config.num_devices]
    n = len(devices)
    if config.train.batch_size % n:
        raise ValueError(
            f"train.batch_size={config.train.batch_size} is not divisible by the {n} devices "
            f"({devices[0].platform}); use a multiple of {n}, e.g. "
            f"--config.train.batch_size={max(n, config.train.batch_size // n * n)}, or restrict "
            "devices with --config.num_devices"
        )
    local = [d for d in devices if d.process_index == jax.process_index()]
    if config.train.eval_batch_size % len(local):
        raise ValueError(
            f"train.eval_batch_size={config.train.eval_batch_size} is not divisible by the "
            f"{len(local)} local devices; use a multiple of {len(local)}"
        )
    mesh = jax.make_mesh((n,), (AXIS,), axis_types=(AxisType.Auto,), devices=devices)
    local_mesh = jax.make_mesh((len(local),), (AXIS,), axis_types=(AxisType.Auto,), devices=local)
    return Parallel(config.parallel, devices, mesh, local_mesh)


def maybe_initialize_distributed() -> None:
    """``jax.distributed.initialize()`` when the environment describes a multi-process job.

    Recognised: an explicit coordinator (``JAX_COORDINATOR_ADDRESS`` + ``JAX_NUM_PROCESSES`` +
    ``JAX_PROCESS_ID``), SLURM with more than one task, Open MPI with more than one rank, and
    multi-host Cloud TPU slices; otherwise a single-process run.
    """
    env = os.environ
    multi = (
        "JAX_COORDINATOR_ADDRESS" in env
        or int(env.get("SLURM_NTASKS", "1")) > 1
        or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
        or "," in env.get("TPU_WORKER_HOSTNAMES", "")
    )
    if multi:
        kwargs = {}
        if "JAX_COORDINATOR_ADDRESS" in env:
            kwargs = dict(
                coordinator_address=env["JAX_COORDINATOR_ADDRESS"],
                num_processes=int(env["JAX_NUM_PROCESSES"]),
                process_id=int(env["JAX_PROCESS_ID"]),
            )
        jax.distributed.initialize(**kwargs)
