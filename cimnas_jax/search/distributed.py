"""Multi-process search: ``jax.distributed`` set-up and the helpers ``Search`` uses when the
population is sharded over the devices of several processes (hosts).

    from cimnas_jax.search.distributed import initialize
    initialize(coordinator_address="host0:1234", num_processes=2, process_id=0)   # before any JAX work
    initialize(auto=True)      # Slurm / Open MPI / Kubernetes: jax.distributed detects the cluster

Every process runs the same program on the same seed; ``Search`` then builds one global
``Mesh`` over ``jax.devices()`` and shards the population over all of them (GPU: NCCL; CPU:
gloo collectives, set here). Process 0 alone writes results; orbax writes the checkpoints of
the global state cooperatively (every process calls save / restore, as it requires).
"""
from __future__ import annotations

import jax
import numpy as np


class DistributedError(ValueError):
    """Inconsistent multi-process settings (the message names the flag)."""


def check_args(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               auto: bool = False) -> bool:
    """Validate the flags; True when a multi-process run is requested."""
    explicit = bool(coordinator_address) or num_processes > 0 or process_id >= 0
    if auto and explicit:
        raise DistributedError("--distributed_auto detects the cluster itself: drop --coordinator_address, "
                               "--num_processes and --process_id, or drop --distributed_auto")
    if explicit:
        if not coordinator_address or num_processes < 1 or not 0 <= process_id < num_processes:
            raise DistributedError(
                f"--coordinator_address={coordinator_address!r} --num_processes={num_processes} "
                f"--process_id={process_id}: a multi-process run needs all three (an address host:port, "
                f">= 1 processes, and 0 <= process_id < num_processes)")
        if ":" not in coordinator_address:
            raise DistributedError(f"--coordinator_address={coordinator_address!r} must be host:port")
    return explicit or auto


def initialize(coordinator_address: str = "", num_processes: int = 0, process_id: int = -1,
               auto: bool = False, initialization_timeout_s: int = 300) -> bool:
    """``jax.distributed.initialize`` (call before any JAX computation). CPU processes use gloo
    collectives. Returns True if initialised, False for a single-process run (no arguments)."""
    if not check_args(coordinator_address, num_processes, process_id, auto):
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if auto:
        jax.distributed.initialize(initialization_timeout=initialization_timeout_s)
    else:
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=initialization_timeout_s)
    return True


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def is_primary() -> bool:
    """True on the process that writes outputs (process 0)."""
    return jax.process_index() == 0


def to_global(tree, shardings):
    """Host pytree (identical on every process) -> global jax.Arrays with ``shardings``."""
    def put(x, s):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])
    return jax.tree_util.tree_map(put, tree, shardings)


def to_host(tree):
    """Global (possibly sharded over processes) pytree -> full numpy arrays on every process
    (a collective: every process must call it)."""
    if not is_multiprocess():
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)
    return jax.tree_util.tree_map(get, tree)


def describe() -> str:
    return (f"process {jax.process_index()}/{jax.process_count()}, devices {jax.local_device_count()} local / "
            f"{jax.device_count()} global ({jax.default_backend()})")

