"""Run ``medasr train`` in this process and measure it: step time, throughput, peak memory.

The device kit's (``gpu_checks.sh``) run of the shipped training recipe at Parakeet's shape.
The training runs through the CLI's own ``main()`` with the arguments given after ``--``,
exactly as ``medasr ARGS`` would (config merge, flags, logs, plan, ``model.nemo``). The
driver adds one read-only Lightning callback, handed to ``build_trainer`` through its
``extra`` argument, that times every optimizer step, and it reads
``torch.cuda.max_memory_allocated()`` in the process that trained: a separate process could
only see the memory the driver's CUDA context holds, and the CLI logs no memory figure.

    python scripts/device/train_bench.py --result OUT/results.jsonl -- \\
        --verbose train --from-scratch --arch parakeet-xl --gpus 1 ...

``--cpu-harness`` applies ``tests/deepspeed_cpu_harness.py`` first (DeepSpeedStrategy on
DeepSpeed's CPU accelerator), for the kit's CPU rehearsal.

One JSON line goes to stdout and is appended to ``--result``:
- ``step_ms_median``: median wall time between the ends of consecutive optimizer steps
  after ``--warmup-steps`` (data-loader waits included; an interval that spans validation
  or an epoch boundary is left out), with ``compute_ms_median`` (batch start to end) and
  ``data_wait_ms_median`` (the rest) beside it;
- ``utts_per_s``, ``audio_s_per_s``, ``audio_h_per_s``, ``audio_h_per_gpu_h`` over the same
  steps (per-device batch x world size: every rank takes an equal batch);
- ``peak_mem_gib``: ``torch.cuda.max_memory_allocated()`` at the end of training (validation
  included) and ``peak_mem_reserved_gib``; on CPU the process's peak RSS instead;
- the plan (``OUT/plan.json``): world size, global batch, steps, warm-up;
- what the Trainer ran with: strategy, ZeRO stage, offload, precision, DeepSpeed's
  ``torch_autocast``, the speed-perturbation pipeline, SpecAugment, parameters;
- phase times from the process start (``t_*_s``, ``wall_s``): training start (imports,
  tokenizer, model build, strategy set-up), first step, last validation's end (the ZeRO
  checkpoints are written after it), training end, process end (the best checkpoint
  consolidated to fp32 and written as ``model.nemo``); ``checkpoint_gb`` on disk.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

T0 = time.perf_counter()
GIB = 2**30


def _since_start() -> float:
    return round(time.perf_counter() - T0, 2)


def _apply_cpu_harness() -> None:
    path = Path(__file__).resolve().parents[2] / "tests" / "deepspeed_cpu_harness.py"
    spec = importlib.util.spec_from_file_location("deepspeed_cpu_harness", path)
    assert spec is not None and spec.loader is not None
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)  # sets DS_ACCELERATOR=cpu unless the environment has one
    harness._lift_cuda_checks()
    harness._force_deepspeed()


def _cuda() -> Any:
    import torch

    return torch.cuda if torch.cuda.is_available() else None


def _augmentor(trainer: Any) -> list[dict[str, Any]]:
    """NeMo's waveform augmentation pipeline of the training data set, as (class, prob)."""
    loader = trainer.train_dataloader
    dataset = getattr(loader, "dataset", None)
    featurizer = getattr(dataset, "featurizer", None)
    pipeline = getattr(getattr(featurizer, "augmentor", None), "_pipeline", None) or []
    out = []
    for prob, perturbation in pipeline:
        item: dict[str, Any] = {"class": type(perturbation).__name__, "prob": prob}
        for attr in ("_min_rate", "_max_rate", "_res_type"):
            if hasattr(perturbation, attr):
                item[attr.lstrip("_")] = getattr(perturbation, attr)
        out.append(item)
    return out


def make_timer(sample_rate: int, warmup_steps: int) -> Any:
    from lightning.pytorch import Callback

    class StepTimer(Callback):
        """Times each optimizer step; records what the Trainer runs with."""

        def __init__(self) -> None:
            self.rows: list[dict[str, float]] = []
            self.info: dict[str, Any] = {}
            self._start = 0.0
            self._last_end: float | None = None
            self._val_start = 0.0
            self.val_s = 0.0
            self.validations = 0

        def _now(self) -> float:
            cuda = _cuda()
            if cuda is not None:
                cuda.synchronize()  # CUDA is asynchronous: a step ends when its kernels have
            return time.perf_counter()

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            strategy = trainer.strategy
            config = getattr(strategy, "config", None) or {}
            zero = config.get("zero_optimization", {}) if isinstance(config, dict) else {}
            params = list(pl_module.parameters())
            cuda = _cuda()
            self.info = {
                "t_train_start_s": _since_start(),
                "strategy": type(strategy).__name__,
                "zero_stage": zero.get("stage"),
                "offload_optimizer": bool(zero.get("offload_optimizer")),
                "lightning_precision": str(trainer.precision),
                "torch_autocast": config.get("torch_autocast") if config else None,
                "accelerator": type(trainer.accelerator).__name__,
                "params_m": round(sum(p.numel() for p in params) / 1e6, 1),
                "trainable_params_m": round(
                    sum(p.numel() for p in params if p.requires_grad) / 1e6, 1
                ),
                "param_dtype": str(params[0].dtype) if params else None,
                "augmentor": _augmentor(trainer),
                "spec_augment": getattr(pl_module, "spec_augmentation", None) is not None,
                "optimizer": type(trainer.optimizers[0]).__name__ if trainer.optimizers else None,
                "mem_at_train_start_gib": round(cuda.memory_allocated() / GIB, 2)
                if cuda is not None
                else None,
            }

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            self._last_end = None  # the first interval of an epoch includes the loader restart

        def on_train_batch_start(
            self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
        ) -> None:
            self._start = self._now()

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            end = self._now()
            if not self.rows:
                self.info["t_first_step_end_s"] = _since_start()
            self.rows.append(
                {
                    "step": trainer.global_step,
                    "interval_s": end - self._last_end if self._last_end is not None else math.nan,
                    "compute_s": end - self._start,
                    "utts": int(batch[0].shape[0]),
                    "audio_s": float(batch[1].sum()) / sample_rate,
                }
            )
            self._last_end = end

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking:
                return
            self._val_start = self._now()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking:
                return
            self.val_s += self._now() - self._val_start
            self.validations += 1
            self.info["t_last_val_end_s"] = _since_start()  # checkpoints are saved after this
            self._last_end = None  # the next interval would include the validation

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.info["t_train_end_s"] = _since_start()
            cuda = _cuda()
            if cuda is not None:
                self.info["peak_mem_gib"] = round(cuda.max_memory_allocated() / GIB, 2)
                self.info["peak_mem_reserved_gib"] = round(cuda.max_memory_reserved() / GIB, 2)
                self.info["gpu"] = cuda.get_device_name(0)

        def summary(self) -> dict[str, Any]:
            timed = [
                r for r in self.rows if r["step"] > warmup_steps and not math.isnan(r["interval_s"])
            ]
            out: dict[str, Any] = {
                "steps_run": len(self.rows),
                "warmup_steps_excluded": warmup_steps,
                "steps_timed": len(timed),
                "validations": self.validations,
                "val_s": round(self.val_s, 2),
                "mean_utt_s": round(
                    sum(r["audio_s"] for r in self.rows)
                    / max(1, sum(r["utts"] for r in self.rows)),
                    2,
                ),
            }
            if self.rows:
                out["first_step_s"] = round(self.rows[0]["compute_s"], 2)
            if timed:
                ms = sorted(1000 * r["interval_s"] for r in timed)
                compute = [1000 * r["compute_s"] for r in timed]
                wait = [1000 * (r["interval_s"] - r["compute_s"]) for r in timed]
                seconds = sum(r["interval_s"] for r in timed)
                out.update(
                    step_ms_median=round(statistics.median(ms), 1),
                    step_ms_p10=round(ms[len(ms) // 10], 1),
                    step_ms_p90=round(ms[min(len(ms) - 1, (9 * len(ms)) // 10)], 1),
                    compute_ms_median=round(statistics.median(compute), 1),
                    data_wait_ms_median=round(statistics.median(wait), 1),
                    timed_s=round(seconds, 2),
                    per_device_utts_per_s=round(sum(r["utts"] for r in timed) / seconds, 2),
                    per_device_audio_s_per_s=round(sum(r["audio_s"] for r in timed) / seconds, 1),
                )
            return out

    return StepTimer()


def _plan(out_dir: Path | None) -> dict[str, Any]:
    path = out_dir / "plan.json" if out_dir else None
    if path is None or not path.is_file():
        return {}
    plan = json.loads(path.read_text())
    world = int(plan["nodes"]) * int(plan["devices_per_node"])
    return {
        "world_size": world,
        "global_batch": int(plan["per_device_batch"]) * world * int(plan["accumulate"]),
        "per_device_batch": plan["per_device_batch"],
        "accumulate": plan["accumulate"],
        "total_steps": plan["total_steps"],
        "warmup_steps": plan["warmup_steps"],
        "steps_per_epoch": plan["steps_per_epoch"],
        "epoch_utterances": plan["utterances"],
        "epoch_replay_utterances": plan["replay_utterances"],
        "peak_lr": plan["peak_lr"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", type=Path, help="JSONL file to append the result line to")
    parser.add_argument("--check", default="train_bench", help="the line's 'check' name")
    parser.add_argument("--warmup-steps", type=int, default=10, help="steps left out of timing")
    parser.add_argument("--cpu-harness", action="store_true", help="DeepSpeed on CPU (rehearsal)")
    parser.add_argument("medasr_args", nargs=argparse.REMAINDER, help="-- then medasr's args")
    args = parser.parse_args()
    argv = args.medasr_args[1:] if args.medasr_args[:1] == ["--"] else args.medasr_args
    if "train" not in argv:
        parser.error("give the medasr arguments after --, e.g. -- train --from-scratch ...")

    if args.cpu_harness:
        _apply_cpu_harness()
    from medasr_cli.train import run

    seen: dict[str, Any] = {}
    build_trainer = run.build_trainer

    def build_trainer_timed(cfg: Any, out_dir: Path, replay: Any = None, extra: Any = ()) -> Any:
        timer = make_timer(int(cfg.model.sample_rate), args.warmup_steps)
        seen.update(timer=timer, out_dir=out_dir)
        return build_trainer(cfg, out_dir, replay, [*extra, timer])

    run.build_trainer = build_trainer_timed  # type: ignore[assignment]

    from medasr_cli.cli.app import main as medasr_main

    sys.argv = ["medasr", *argv]
    rc = 0
    try:
        medasr_main()
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:  # reported in the result line; the traceback goes to stderr
        import traceback

        traceback.print_exc()
        rc = 1
        seen["error"] = f"{type(exc).__name__}: {exc}"[:500]

    timer, out_dir = seen.get("timer"), seen.get("out_dir")
    result: dict[str, Any] = {"check": args.check, "rc": rc, "wall_s": _since_start()}
    if "error" in seen:
        result["error"] = seen["error"]
    result.update(_plan(out_dir))
    if timer is not None:
        result.update(timer.info)
        result.update(timer.summary())
        world = result.get("world_size", 1)
        if "per_device_utts_per_s" in result:
            result["utts_per_s"] = round(result["per_device_utts_per_s"] * world, 2)
            audio_s_per_s = result["per_device_audio_s_per_s"] * world
            result["audio_s_per_s"] = round(audio_s_per_s, 1)
            result["audio_h_per_s"] = round(audio_s_per_s / 3600, 4)
            # audio-hours per GPU-hour = audio-seconds per GPU-second
            result["audio_h_per_gpu_h"] = round(audio_s_per_s / world, 1)
    cuda = _cuda()
    if cuda is not None:
        result["peak_mem_process_end_gib"] = round(cuda.max_memory_allocated() / GIB, 2)
    else:  # the CPU rehearsal: host memory instead (ru_maxrss is in KiB on Linux)
        result["peak_host_rss_gib"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2
        )
    if out_dir is not None:
        result["model_nemo"] = (out_dir / "model.nemo").is_file()
        result["model_nemo_gb"] = (
            round((out_dir / "model.nemo").stat().st_size / 1e9, 2)
            if result["model_nemo"]
            else None
        )
        result["checkpoint_gb"] = round(
            sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file() and ".ckpt" in str(p))
            / 1e9,
            2,
        )
    result["ds_accelerator"] = os.environ.get("DS_ACCELERATOR")
    line = json.dumps(result)
    print(line, flush=True)
    if args.result:
        with args.result.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
