"""Ranks from each launcher's environment, and the init barrier with real gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from medasr_cli.train.dist import dist_env, init_process_group_if_launched

pytest.importorskip("lightning")

LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "LOCAL_WORLD_SIZE",
                 "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS", "SLURM_PROCID",
                 "SLURM_LOCALID", "SLURM_NODELIST", "SLURM_JOB_NAME", "SLURM_JOB_ID",
                 "SLURM_NTASKS_PER_NODE")  # fmt: skip


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in LAUNCHER_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_ranks_from_each_launcher(clean_env: pytest.MonkeyPatch) -> None:
    env = dist_env()
    assert (env.rank, env.local_rank, env.world_size, env.is_global_zero) == (0, 0, 1, True)
    # torchrun / PyTorchJob
    for k, v in {"RANK": "5", "LOCAL_RANK": "1", "WORLD_SIZE": "8"}.items():
        clean_env.setenv(k, v)
    assert dist_env() == type(env)(5, 1, 8)
    # Lightning's own launcher (--gpus 4 --nodes 2, no torchrun): no RANK in the children
    clean_env.delenv("RANK")
    clean_env.setenv("NODE_RANK", "1")
    assert dist_env(devices_per_node=4) == type(env)(5, 1, 8)
    assert not dist_env().is_global_zero  # exact even without the device count
    clean_env.setenv("NODE_RANK", "0")
    clean_env.setenv("LOCAL_RANK", "0")
    assert dist_env().is_global_zero
    # the children of Lightning's launcher leave the process group to Lightning
    clean_env.setenv("LOCAL_RANK", "1")
    assert init_process_group_if_launched("gloo") is False
    # SLURM without torchrun
    for k in ("LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        clean_env.delenv(k)
    for k, v in {"SLURM_NTASKS": "16", "SLURM_PROCID": "9", "SLURM_LOCALID": "1"}.items():
        clean_env.setenv(k, v)
    assert dist_env() == type(env)(9, 1, 16)


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from medasr_cli.train.dist import dist_env, init_process_group_if_launched, local_rank_zero_first

    marker = Path(sys.argv[1])
    assert init_process_group_if_launched("gloo")
    with local_rank_zero_first() as first:
        entered = time.monotonic()
        if first:
            time.sleep(1.5)  # e.g. the hub download
            marker.write_text("downloaded")
        seen = marker.exists()
    print(json.dumps({"rank": dist_env().rank, "first": first, "seen": seen}))
    """
)


@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_local_rank_zero_runs_first_and_the_others_wait(tmp_path: Path, launcher: str) -> None:
    """Two real processes over gloo: rank 1 must not enter the block before rank 0 has left it.

    ``slurm`` starts them the way srun does (SLURM_* variables, no MASTER_ADDR): the
    rendezvous address comes from SLURM_NODELIST as in Lightning's SLURMEnvironment.
    """
    from helpers import free_port

    marker = tmp_path / "marker"
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
        if launcher == "torchrun":
            env |= {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}  # fmt: skip
        else:
            env |= {"SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_NTASKS": "2",
                    "SLURM_NTASKS_PER_NODE": "2", "SLURM_NODELIST": "127.0.0.1", "SLURM_JOB_NAME": "train",
                    "MASTER_PORT": port}  # fmt: skip
        cmd = [sys.executable, "-c", WORKER, str(marker)]
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
        procs.append(subprocess.Popen(cmd, env=env, text=True, **pipes))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0] == {"rank": 0, "first": True, "seen": True}
    assert results[1] == {"rank": 1, "first": False, "seen": True}  # waited for rank 0


SLOW_DOWNLOAD = textwrap.dedent(
    """
    import json, sys, time
    from medasr_cli.train.dist import dist_env, init_process_group_if_launched, local_rank_zero_first

    # training collectives time out after 2 s; the set-up barrier may wait 120 s
    assert init_process_group_if_launched("gloo", timeout_s=2, setup_timeout_s=120)
    with local_rank_zero_first() as first:
        if first:
            time.sleep(6)  # a hub download on a slow link: longer than the training timeout
    print(json.dumps({"rank": dist_env().rank, "first": first}))
    """
)


def test_setup_barrier_outlasts_the_training_timeout(tmp_path: Path) -> None:
    """The download barrier is its own gloo group with its own (long) timeout: rank 1 waits
    6 s for rank 0's download although training collectives time out after 2 s. On the
    default group (what NCCL would use on GPUs) rank 1 would fail after 2 s."""
    from helpers import free_port

    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
        env |= {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, "-c", SLOW_DOWNLOAD], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))  # fmt: skip
    for rank, p in enumerate(procs):
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        assert json.loads(out.strip().splitlines()[-1]) == {"rank": rank, "first": rank == 0}


def test_several_nodes_without_a_launcher_fail_at_once(tmp_path: Path) -> None:
    """`medasr train --nodes 2` typed bare used to wait forever for the other node."""
    from helpers import cli_env, one_error_line, run_cli

    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio_filepath": "a.wav", "duration": 1.0, "text": "x"}\n')
    proc = run_cli("train", "--nodes", "2", "--config", "tiny-cpu", "--train-manifest",
                   str(manifest), "--val-manifest", str(manifest), "--out", str(tmp_path / "r"),
                   env=cli_env(*LAUNCHER_VARS), timeout=60)  # fmt: skip
    assert proc.returncode == 2
    line = one_error_line(proc, "error")
    assert "--nodes 2" in line and "torchrun" in line and "srun" in line and "PyTorchJob" in line
