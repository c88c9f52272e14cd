"""Multi-process helpers: ranks from the launcher's environment and a real init barrier.

torchrun, SLURM and Kubeflow's PyTorchJob all export the ranks; Lightning reads
the same variables, and reuses a process group that is already initialised.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_global_zero(self) -> bool:
        return self.rank == 0


def dist_env() -> DistEnv:
    """Ranks from torchrun/PyTorchJob (RANK, LOCAL_RANK, WORLD_SIZE) or SLURM variables."""
    env = os.environ
    if "WORLD_SIZE" in env:
        return DistEnv(
            int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"])
        )
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        return DistEnv(
            int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"])
        )
    return DistEnv(0, 0, 1)


def init_process_group_if_launched(backend: str) -> bool:
    """Initialise torch.distributed when a launcher started several processes."""
    import torch.distributed as dist

    env = dist_env()
    if env.world_size <= 1 or dist.is_initialized():
        return dist.is_initialized()
    if "MASTER_ADDR" not in os.environ:  # SLURM without torchrun: let Lightning set it up later
        return False
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    log.info("process group up: rank %d/%d (%s)", env.rank, env.world_size, backend)
    return True


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def local_rank_zero_first() -> Iterator[bool]:
    """Local rank 0 of each node runs the block first (e.g. a download); the others wait.

    Yields whether this process is local rank 0. Every rank passes the barrier
    exactly once, so it is a real synchronisation point, not a sleep.
    """
    env = dist_env()
    first = env.local_rank == 0
    if not first:
        barrier()
    try:
        yield first
    finally:
        if first:
            barrier()
