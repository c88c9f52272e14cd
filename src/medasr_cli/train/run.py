"""The ``medasr train`` recipe: check data, build model and Trainer, fit, save one .nemo, evaluate.

The pieces live beside this module: :mod:`~medasr_cli.train.data` (manifests,
replay), :mod:`~medasr_cli.train.trainer` (accelerator, strategy, precision),
:mod:`~medasr_cli.train.model_init` (pretrained or from scratch),
:mod:`~medasr_cli.train.tracking` (exp_manager, MLflow) and
:mod:`~medasr_cli.train.checkpoint` (best checkpoint -> ``model.nemo``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import InputError, MedasrError, require
from medasr_cli.core.jsonl import atomic_write
from medasr_cli.core.records import ManifestEntry
from medasr_cli.manifest.validate import tokenizer_charset, untokenizable
from medasr_cli.train.checkpoint import list_checkpoints, load_best, save_nemo
from medasr_cli.train.config import to_yaml
from medasr_cli.train.data import (
    ReplayMix,
    check_augmentor,
    check_manifest,
    check_validation_sets,
    data_config,
)
from medasr_cli.train.dist import dist_env, init_process_group_if_launched, require_launcher
from medasr_cli.train.plan import TrainPlan, check_dropped, plan_training, scheduler_config
from medasr_cli.train.tracking import attach_tracking, log_config, log_outcome
from medasr_cli.train.trainer import build_trainer
from medasr_cli.train.validation import describe, selection, selection_callback

log = logging.getLogger(__name__)


@dataclass
class TestResult:
    """The final model scored on one test manifest."""

    manifest: Path
    report: Path
    wer: float
    utterances: int


@dataclass
class TrainResult:
    out_dir: Path
    nemo_path: Path | None  # None on every rank but global rank 0
    best_checkpoint: str | None
    best_val_wer: float | None
    mlflow_run_id: str | None
    checkpoints: list[str] = field(default_factory=list)
    utts_per_sec: float | None = None
    audio_sec_per_sec: float | None = None
    tests: list[TestResult] = field(default_factory=list)


def oom_hint(cfg: Any) -> str:
    """What to turn when a step ran out of memory, given what this run already uses."""
    knobs = [
        f"lower --batch-size (now {cfg.model.train_ds.batch_size})",
        "model.train_ds.max_duration (--set model.train_ds.max_duration=15)",
    ]
    if "bf16" not in str(cfg.trainer.precision):
        knobs.append("use --precision bf16-mixed")
    if not cfg.deepspeed.get("offload_optimizer"):
        knobs.append("on GPUs, keep the optimizer state on the CPU "
                     "(--set deepspeed.offload_optimizer=true)")  # fmt: skip
    return "out of memory: " + ", ".join(knobs)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's "can't allocate memory"."""
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text


def report_names(tests: Sequence[Path]) -> list[str]:
    """``eval_NAME.json`` names: the manifest's stem, with its folder where stems repeat."""
    stems = [t.stem for t in tests]
    names = [f"{t.parent.name}_{t.stem}" if stems.count(t.stem) > 1 else t.stem for t in tests]
    return [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]


def forgetting_warnings(cfg: Any, test_manifests: Sequence[Path]) -> list[str]:
    """What the run does not do to keep general speech from getting worse."""
    out = []
    if not cfg.arch and not cfg.replay.manifest:
        out.append(
            "fine-tuning a pretrained model without --replay: nothing keeps general speech from "
            "getting worse (catastrophic forgetting); mix in general-domain speech with "
            "--replay general.jsonl and test on it (docs/train.md, 'Forgetting')"
        )
    if cfg.replay.manifest and not test_manifests:
        out.append(
            "--replay without --test-manifest: pass a domain and a general-domain test set "
            "to see whether general WER held up"
        )
    return out


def plan_run(
    cfg: Any,
    train_manifest: Path,
    *,
    val_sets: Mapping[str, Path] | None = None,
    nodes: int | None = None,
    devices_per_node: int | None = None,
    test_manifests: Sequence[Path] = (),
) -> TrainPlan:
    """The plan of a run without starting it (``medasr train --dry-run``).

    The world size is the config's ``num_nodes`` x ``devices`` (``-1``: the GPUs visible
    here, or one CPU process), so a plan for a 64-GPU cluster can be printed on a laptop.
    """
    entries = check_manifest(train_manifest, "train")
    replay = check_manifest(Path(cfg.replay.manifest), "replay") if cfg.replay.manifest else []
    if devices_per_node is None:
        devices = cfg.trainer.devices
        devices_per_node = int(devices) if str(devices).lstrip("-").isdigit() else -1
        if devices_per_node < 1:
            devices_per_node = _visible_gpus() or 1
    plan = plan_training(
        cfg, entries, nodes=nodes or int(cfg.trainer.num_nodes),
        devices_per_node=devices_per_node, replay=replay,
    )  # fmt: skip
    if val_sets:
        check_validation_sets(val_sets)
        plan.checkpoint_on = describe(*selection(cfg.validation.select, val_sets))
    plan.warnings += forgetting_warnings(cfg, test_manifests)
    return plan


def check_tokenizer(
    model: Any, targets: Sequence[ManifestEntry], validation: Sequence[ManifestEntry] = ()
) -> None:
    """Refuse training transcripts with characters the model's tokenizer cannot produce.

    They would train as unknown-token targets (a pretrained tokenizer has no piece for
    °C, µg or a curly quote unless its training text had them). In validation
    transcripts such characters only cost WER: they are reported, not refused.
    """
    sp = getattr(getattr(model, "tokenizer", None), "tokenizer", None)
    if sp is None or not hasattr(sp, "GetPieceSize"):
        return  # not a SentencePiece model: nothing to check against
    charset = tokenizer_charset(sp)
    unseen = untokenizable(validation, charset)
    if unseen:
        log.warning(
            "%d validation transcript(s) use characters the model cannot produce (they count "
            "as errors), e.g. %s",
            len(unseen),
            unseen[0],
        )
    bad = list(dict.fromkeys(untokenizable(targets, charset)))  # a file may serve twice
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InputError(
            f"{len(bad)} transcript(s) use characters the model's tokenizer cannot produce "
            f"(they would train as <unk>): {shown}. Write them out ('degrees', 'micrograms', "
            "straight quotes) or list every line with `medasr manifest validate MANIFEST "
            "--tokenizer MODEL`"
        )


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_training(
    cfg: Any,
    *,
    train_manifest: Path,
    val_manifest: Path | Mapping[str, Path],
    out_dir: Path,
    test_manifests: Sequence[Path] = (),
    resume: bool = False,
    mlflow_uri: str | None = None,
    tokenizer: Path | None = None,
    on_plan: Callable[[TrainPlan], None] | None = None,
) -> TrainResult:
    """Fine-tune (or train from scratch), write ``out_dir/model.nemo`` from the best checkpoint,
    and score it on each of ``test_manifests`` (``out_dir/eval_NAME.json``).

    ``val_manifest`` is one manifest, or ``{name: manifest}`` for several validation sets
    (each one's WER is logged; ``cfg.validation.select`` says which picks the checkpoint).
    ``on_plan`` gets the run's :class:`TrainPlan` on global rank 0 before the model loads.
    """
    require("nemo.collections.asr", "train")
    import lightning.pytorch as pl
    from omegaconf import OmegaConf

    from medasr_cli.train.model_init import init_model

    require_launcher(int(cfg.trainer.num_nodes))
    check_augmentor(cfg.model.train_ds)
    train_entries = check_manifest(train_manifest, "train")
    val_sets = {"val": val_manifest} if isinstance(val_manifest, Path) else dict(val_manifest)
    val_entries = check_validation_sets(val_sets)
    monitor, weights = selection(cfg.validation.select, val_sets)
    for test in test_manifests:  # before training, not after hours of it
        check_manifest(test, "test")
    out_dir.mkdir(parents=True, exist_ok=True)
    replay = None
    if cfg.replay.manifest:
        replay = ReplayMix(train_entries, Path(cfg.replay.manifest), float(cfg.replay.ratio),
                           out_dir, int(cfg.seed))  # fmt: skip
        train_manifest = replay.manifest(0)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    extra = [selection_callback(weights, val_sets)] if weights else []
    trainer, accelerator = build_trainer(cfg, out_dir, replay, extra)
    plan = plan_training(
        cfg, train_entries, nodes=trainer.num_nodes, devices_per_node=trainer.num_devices,
        replay=replay.general if replay else (),
    )  # fmt: skip
    plan.checkpoint_on = describe(monitor, weights)
    plan.warnings += forgetting_warnings(cfg, test_manifests)
    check_dropped(plan, float(cfg.max_dropped_share))
    trainer.fit_loop.epoch_loop.max_steps = plan.total_steps  # the LR schedule follows the run
    env = dist_env(trainer.num_devices)
    if env.is_global_zero:
        with atomic_write(out_dir / "plan.json") as fh:
            json.dump(asdict(plan), fh, indent=2)
        if on_plan is not None:
            on_plan(plan)
    world = trainer.num_nodes * trainer.num_devices  # Lightning's launcher sets WORLD_SIZE later
    init_process_group_if_launched(
        "gloo" if accelerator == "cpu" else "nccl",
        timeout_s=float(cfg.dist.timeout_s),
        setup_timeout_s=float(cfg.dist.setup_timeout_s),
    )
    targets = [*train_entries, *(replay.general if replay else ())]  # what the model learns
    model = init_model(cfg, [e.text for e in targets], out_dir, accelerator, tokenizer)
    check_tokenizer(model, targets, val_entries)
    mlflow_logger = attach_tracking(trainer, cfg, out_dir, resume, mlflow_uri, monitor)
    if resume:  # exp_manager found the last checkpoint, or there is none yet
        if getattr(trainer, "ckpt_path", None):
            log.info("Resuming training from checkpoint %s", trainer.ckpt_path)
        else:
            log.warning("--resume: no checkpoint in %s yet; training starts from step 0", out_dir)
    model.set_trainer(trainer)
    model.setup_training_data(data_config(cfg.model.train_ds, train_manifest, accelerator, world))
    val_cfg = data_config(cfg.model.validation_ds, list(val_sets.values()), accelerator, world)
    if len(val_sets) == 1:
        model.setup_validation_data(val_cfg)
    else:  # NeMo's multi-dataloader validation: metrics NAME_val_wer, val_wer for the first
        val_cfg.name = list(val_sets)
        model.setup_multiple_validation_data(val_cfg)
    model.setup_optimization(OmegaConf.create(scheduler_config(cfg.model.optim)))
    if env.is_global_zero:
        with atomic_write(out_dir / "config.yaml") as fh:
            fh.write(to_yaml(cfg))
    log_config(mlflow_logger, cfg, plan)
    try:
        trainer.fit(model)
    except RuntimeError as exc:
        if is_out_of_memory(exc):
            raise MedasrError(oom_hint(cfg)) from exc
        raise
    return _finish(model, trainer, out_dir, mlflow_logger, test_manifests)


def _finish(
    model: Any, trainer: Any, out_dir: Path, mlflow_logger: Any, tests: Sequence[Path]
) -> TrainResult:
    from medasr_cli.train.callbacks import ThroughputCallback

    if not trainer.is_global_zero:  # one process reads the checkpoints and writes the model
        return TrainResult(out_dir, None, None, None, None)
    best, score = load_best(model, trainer)
    log.info("best checkpoint: %s (val_wer %s)", best, "—" if score is None else f"{score:.4f}")
    throughput = next((c for c in trainer.callbacks if isinstance(c, ThroughputCallback)), None)
    seconds = throughput.total_time_s if throughput else 0.0
    result = TrainResult(
        out_dir=out_dir, nemo_path=None, best_checkpoint=best, best_val_wer=score,
        mlflow_run_id=getattr(mlflow_logger, "run_id", None),
        checkpoints=list_checkpoints(trainer, out_dir),
        utts_per_sec=throughput.total_utts / seconds if throughput and seconds else None,
        audio_sec_per_sec=throughput.total_audio_s / seconds if throughput and seconds else None,
    )  # fmt: skip
    result.nemo_path = save_nemo(model, out_dir / "model.nemo")
    result.tests = evaluate_model(result.nemo_path, tests, out_dir)
    metrics = {f"test_wer_{Path(t.report).stem.removeprefix('eval_')}": t.wer for t in result.tests}
    if score is not None:
        metrics["best_val_wer"] = score
    log_outcome(
        mlflow_logger,
        artifacts=[result.nemo_path, out_dir / "config.yaml", *(t.report for t in result.tests)],
        metrics=metrics,
    )
    return result


def evaluate_model(nemo_path: Path, tests: Sequence[Path], out_dir: Path) -> list[TestResult]:
    """Score ``nemo_path`` on each test manifest; reports go to ``out_dir/eval_NAME.json``."""
    from medasr_cli.evaluate.run import run_eval, write_report
    from medasr_cli.infer.runner import RunnerOptions

    results = []
    for test, name in zip(tests, report_names(tests), strict=True):
        report = run_eval(test, model=RunnerOptions(model=str(nemo_path)))
        path = out_dir / f"eval_{name}.json"
        write_report(report, path)
        results.append(TestResult(test, path, report.overall.wer, report.overall.utterances))
        log.debug("%s: WER %.1f%% -> %s", test, 100 * report.overall.wer, path)
    return results
