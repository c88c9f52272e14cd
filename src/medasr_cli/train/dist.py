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
from datetime import timedelta
from typing import Any

from medasr_cli.core.errors import InputError

log = logging.getLogger(__name__)
_setup_group: Any = None  # the gloo ProcessGroup of the set-up barriers


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int

    @property
    def is_global_zero(self) -> bool:
        return self.rank == 0


def dist_env(devices_per_node: int | None = None) -> DistEnv:
    """Ranks from the launcher's environment.

    * torchrun and Kubeflow's PyTorchJob: RANK, LOCAL_RANK, WORLD_SIZE.
    * Lightning's own launcher (``--gpus N`` without torchrun): the processes it
      starts get LOCAL_RANK, NODE_RANK and WORLD_SIZE but no RANK; the global rank
      is ``NODE_RANK * devices_per_node + LOCAL_RANK`` as Lightning computes it.
      Without ``devices_per_node`` (or LOCAL_WORLD_SIZE) it is exact on node 0 and
      a placeholder elsewhere: ``is_global_zero`` is exact either way.
    * SLURM without torchrun: SLURM_PROCID, SLURM_LOCALID, SLURM_NTASKS.
    """
    env = os.environ
    if "WORLD_SIZE" in env:
        world, local = int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
        if "RANK" in env:
            return DistEnv(int(env["RANK"]), local, world)
        node = int(env.get("NODE_RANK", 0))
        per_node = devices_per_node or int(env.get("LOCAL_WORLD_SIZE", 0)) or world
        return DistEnv(node * per_node + local, local, world)
    if "SLURM_NTASKS" in env and "SLURM_PROCID" in env:
        return DistEnv(
            int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"])
        )
    return DistEnv(0, 0, 1)


def require_launcher(num_nodes: int) -> None:
    """Several nodes need a launcher on each of them; fail at once instead of waiting forever.

    A bare ``medasr train --nodes 8`` would start Lightning's launcher on this machine
    alone and wait for seven nodes that nobody started.
    """
    env = os.environ
    launched = (
        "WORLD_SIZE" in env  # torchrun, Kubeflow's PyTorchJob, or set by hand
        or "SLURM_NTASKS" in env  # srun
        or ("NODE_RANK" in env and "MASTER_ADDR" in env)  # Lightning's own multi-node recipe
    )
    if num_nodes > 1 and not launched:
        raise InputError(
            f"--nodes {num_nodes}: start medasr on every node with a launcher: "
            f"`torchrun --nnodes {num_nodes} --nproc-per-node GPUS --node-rank K "
            "--rdzv-endpoint HOST:29500 -m medasr_cli train ...`, `srun medasr train ...`, "
            "or the Kubernetes PyTorchJob (docs/train.md, 'Several nodes')"
        )


def init_process_group_if_launched(
    backend: str, *, timeout_s: float = 1800.0, setup_timeout_s: float = 7200.0
) -> bool:
    """Initialise torch.distributed when a launcher started several processes.

    Only for launchers that start every process up front with its global rank
    (torchrun, PyTorchJob: RANK and MASTER_ADDR are set), so that the set-up
    barrier works before training. Lightning's own launcher starts the other
    local processes only when training begins, after local rank 0 has finished
    initialising (so they need no barrier), and sets up the group itself.

    ``timeout_s`` bounds the training collectives (Lightning reuses this group).
    The set-up steps (a hub download of 2.4 GB, the tokenizer) wait on a separate
    gloo group with ``setup_timeout_s``: it needs no GPU and no NCCL, so it works
    before a GPU is assigned and is not cut off by NCCL's watchdog on a slow link.
    """
    import torch.distributed as dist

    env = dist_env()
    if env.world_size <= 1 or dist.is_initialized():
        return dist.is_initialized()
    if "RANK" not in os.environ and "SLURM_PROCID" not in os.environ:
        return False  # Lightning's launcher: Lightning initialises the group in fit()
    if "MASTER_ADDR" not in os.environ and not _slurm_rendezvous():
        return False
    if backend == "nccl":
        import torch

        torch.cuda.set_device(env.local_rank)  # before NCCL picks a device for this rank
    dist.init_process_group(
        backend=backend, rank=env.rank, world_size=env.world_size,
        timeout=timedelta(seconds=timeout_s),
    )  # fmt: skip
    global _setup_group
    _setup_group = dist.new_group(backend="gloo", timeout=timedelta(seconds=setup_timeout_s))
    log.info("process group up: rank %d/%d (%s)", env.rank, env.world_size, backend)
    return True


def _slurm_rendezvous() -> bool:
    """Under srun without torchrun, set MASTER_ADDR/MASTER_PORT the way Lightning's
    SLURMEnvironment does (first node of SLURM_NODELIST, a port from the job id), so
    the group we start now is the one Lightning reuses. False when SLURM is not in use
    (or its job name opts out of Lightning's SLURM detection)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    if "SLURM_PROCID" not in os.environ or not SLURMEnvironment.detect():
        return False
    slurm = SLURMEnvironment()
    log.info("SLURM rendezvous at %s:%d", slurm.main_address, slurm.main_port)  # sets both
    return True


def barrier() -> None:
    """A set-up barrier (before training) on the gloo set-up group; a no-op in one process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier(group=_setup_group)


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
