"""The ``medasr train`` recipe: validate data, build model and Trainer, fit, save one .nemo."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import InputError, MedasrError, require
from medasr_cli.core.jsonl import atomic_write, read_records, write_jsonl
from medasr_cli.core.records import ManifestEntry
from medasr_cli.manifest.validate import validate_manifest
from medasr_cli.train.config import to_yaml
from medasr_cli.train.devices import (
    build_strategy,
    deepspeed_precision,
    resolve_accelerator,
    resolve_devices,
    resolve_precision,
)
from medasr_cli.train.dist import dist_env, init_process_group_if_launched

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    out_dir: Path
    nemo_path: Path | None
    best_checkpoint: str | None
    best_val_wer: float | None
    mlflow_run_id: str | None
    checkpoints: list[str] = field(default_factory=list)
    utts_per_sec: float | None = None
    audio_sec_per_sec: float | None = None


def check_manifest(path: Path, role: str) -> list[ManifestEntry]:
    """Validate a manifest before the first step; point to `medasr manifest validate`."""
    report = validate_manifest(path, sample_rate=None, channels=None)
    if report.problems:
        first = report.problems[0]
        raise InputError(
            f"{role} manifest has {len(report.problems)} problem(s), first: {first}; "
            f"run `medasr manifest validate {path}` for all"
        )
    return [e for _, e in read_records(path, ManifestEntry)]


def mix_replay(
    domain: list[ManifestEntry], general: list[ManifestEntry], ratio: float, out: Path, seed: int
) -> Path:
    """A training manifest where a fresh draw of general-domain replay makes up ``ratio``.

    Every domain utterance is kept; ``ratio / (1 - ratio) * len(domain)`` general
    utterances are drawn without replacement (with replacement only when the
    general set is smaller than that). Called once per epoch with its own seed,
    so over a run the replay covers the general set rather than one fixed sample.
    """
    n = round(ratio / (1 - ratio) * len(domain))
    rng = random.Random(seed)
    picked = rng.sample(general, n) if n <= len(general) else rng.choices(general, k=n)
    rows = [e.model_copy(update={"replay": False}) for e in domain]
    rows += [e.model_copy(update={"replay": True}) for e in picked]
    rng.shuffle(rows)
    write_jsonl(out, rows)  # atomic: every rank writes the same rows
    log.info("replay: %d general-domain + %d domain utterances -> %s", n, len(domain), out)
    return out


class ReplayMix:
    """The replay manifests of one run: ``OUT/replay/epoch_NNN.jsonl``, a new draw per epoch."""

    def __init__(self, train: Path, replay: Path, ratio: float, out_dir: Path, seed: int) -> None:
        if not 0 < ratio < 1:
            raise InputError(f"--replay-ratio must be between 0 and 1, got {ratio}")
        self.domain = check_manifest(train, "train")
        self.general = check_manifest(replay, "replay")
        self.ratio, self.folder, self.seed = ratio, out_dir / "replay", seed

    def manifest(self, epoch: int) -> Path:
        out = self.folder / f"epoch_{epoch:03d}.jsonl"
        return mix_replay(self.domain, self.general, self.ratio, out, self.seed * 100_003 + epoch)


OOM_HINT = (
    "out of memory: lower --batch-size, model.train_ds.max_duration "
    "(--set model.train_ds.max_duration=15), or use --precision bf16-mixed"
)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's "can't allocate memory"."""
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text


def _data_cfg(ds: Any, manifest: Path, accelerator: str, world: int) -> Any:
    import os

    from omegaconf import OmegaConf

    cfg: Any = OmegaConf.create(OmegaConf.to_container(ds, resolve=True))
    cfg.manifest_filepath = str(manifest)
    if accelerator == "cpu":
        cfg.pin_memory = False
        cfg.num_workers = min(
            int(cfg.get("num_workers", 0)), max(0, (os.cpu_count() or 1) // world - 1)
        )
    return cfg


def _as_dict(container: Any) -> dict[str, Any]:
    if not isinstance(container, dict):
        raise InputError(f"config: expected a mapping, got {type(container).__name__}")
    return {str(k): v for k, v in container.items()}


def build_trainer(
    cfg: Any, out_dir: Path, explicit_strategy: bool, replay: ReplayMix | None = None
) -> tuple[Any, str]:
    """A Lightning Trainer from ``cfg.trainer`` + ``cfg.deepspeed``; returns it and the accelerator."""
    import lightning.pytorch as pl
    from lightning.pytorch.strategies import DeepSpeedStrategy
    from omegaconf import OmegaConf

    from medasr_cli.train.callbacks import MetricsProgressBar, ReplayCallback, ThroughputCallback

    t = _as_dict(OmegaConf.to_container(cfg.trainer, resolve=True))
    accelerator = resolve_accelerator(str(t.pop("accelerator")))
    devices = resolve_devices(t.pop("devices"), accelerator)
    num_nodes = int(t.pop("num_nodes"))
    strategy = build_strategy(
        str(t.pop("strategy")), accelerator, num_nodes, devices,
        _as_dict(OmegaConf.to_container(cfg.deepspeed, resolve=True)),
        explicit=explicit_strategy,
    )  # fmt: skip
    on_deepspeed = isinstance(strategy, DeepSpeedStrategy)
    precision = deepspeed_precision(
        strategy, resolve_precision(t.pop("precision"), accelerator, on_deepspeed)
    )
    callbacks: list[Any] = [ThroughputCallback(int(cfg.model.sample_rate))]
    if t.get("enable_progress_bar", True):
        callbacks.append(MetricsProgressBar())
    if replay is not None:  # a new replay draw every epoch: reload the training data
        train_ds = cfg.model.train_ds
        callbacks.append(ReplayCallback(
            replay.manifest, lambda m, world: _data_cfg(train_ds, m, accelerator, world)))  # fmt: skip
        t["reload_dataloaders_every_n_epochs"] = 1
    trainer = pl.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
        precision=precision, logger=False, enable_checkpointing=False, callbacks=callbacks,
        default_root_dir=str(out_dir), **t,
    )  # fmt: skip
    return trainer, accelerator


def _exp_manager(
    trainer: Any, cfg: Any, out_dir: Path, resume: bool, mlflow_uri: str | None
) -> None:
    """NeMo's exp_manager for TensorBoard, checkpoints and resume; MLflow attached by us.

    NeMo 3.0's exp_manager passes ``run_name`` twice to ``MLFlowLogger`` (its
    MLFlowParams default plus the version), so it cannot create that logger;
    we create the same Lightning ``MLFlowLogger`` and add it to the trainer.
    """
    from lightning.pytorch.loggers import MLFlowLogger
    from nemo.utils.exp_manager import exp_manager
    from omegaconf import OmegaConf

    em: Any = OmegaConf.create(OmegaConf.to_container(cfg.exp_manager, resolve=True))
    em.exp_dir = str(out_dir)
    em.version = "run"
    em.use_datetime_version = False
    em.resume_if_exists = resume
    em.resume_ignore_no_checkpoint = True
    em.checkpoint_callback_params.save_nemo_on_train_end = False
    want_mlflow = bool(em.pop("create_mlflow_logger", False))
    ml_kwargs = dict(em.pop("mlflow_logger_kwargs", {}) or {})
    exp_manager(trainer, em)
    if want_mlflow:
        # Default: a local SQLite store (MLflow's file store is deprecated) in the run folder.
        local = f"sqlite:///{(out_dir / 'mlflow.db').resolve()}"
        uri = mlflow_uri or ml_kwargs.get("tracking_uri") or local
        mlf = MLFlowLogger(
            artifact_location=None
            if uri != local
            else (out_dir / "mlartifacts").resolve().as_uri(),
            experiment_name=ml_kwargs.get("experiment_name") or "medasr",
            run_name=ml_kwargs.get("run_name") or out_dir.name,
            tracking_uri=uri,
            tags=ml_kwargs.get("tags"),
            log_model=False,
        )
        trainer.loggers = [*trainer.loggers, mlf]


def _mlflow_logger(trainer: Any) -> Any:
    from lightning.pytorch.loggers import MLFlowLogger

    return next((lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)


def _load_best(model: Any, trainer: Any) -> tuple[str | None, float | None]:
    """Load the best checkpoint's weights (DeepSpeed directories are consolidated first)."""
    import torch

    cb = trainer.checkpoint_callback
    best = getattr(cb, "best_model_path", "") or ""
    score = getattr(cb, "best_model_score", None)
    if not best or not Path(best).exists():
        return None, None
    if Path(best).is_dir():  # a DeepSpeed ZeRO checkpoint directory
        weights = zero_checkpoint_weights(best)
    else:
        weights = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    load_weights(model, weights)
    return best, float(score) if score is not None else None


def zero_checkpoint_weights(checkpoint_dir: str) -> dict[str, Any]:
    """The fp32 weights of a DeepSpeed ZeRO checkpoint directory (all ranks' shards merged).

    DeepSpeed's own reader, not Lightning 2.4's ``convert_zero_checkpoint_to_fp32_state_dict``:
    that one calls ``torch.load`` with torch >= 2.6's ``weights_only=True`` default and
    fails on DeepSpeed's pickled loss scaler. The checkpoint is this run's own.
    """
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    state = get_fp32_state_dict_from_zero_checkpoint(checkpoint_dir)
    prefix = "_forward_module."  # Lightning's wrapper, in checkpoints of Lightning < 2.1
    return {k.removeprefix(prefix): v for k, v in state.items()}


def load_weights(model: Any, weights: dict[str, Any]) -> None:
    """Load checkpoint weights; every trainable parameter must be among them."""
    model.load_state_dict(weights, strict=False)
    missing = sorted(name for name, _ in model.named_parameters() if name not in weights)
    if missing:
        raise MedasrError(
            f"the best checkpoint lacks {len(missing)} model parameter(s), e.g. {missing[0]}"
        )


def run_training(
    cfg: Any,
    *,
    train_manifest: Path,
    val_manifest: Path,
    out_dir: Path,
    resume: bool = False,
    mlflow_uri: str | None = None,
    tokenizer: Path | None = None,
    explicit_strategy: bool = False,
) -> TrainResult:
    """Fine-tune (or train from scratch) and write ``out_dir/model.nemo`` from the best checkpoint."""
    require("nemo.collections.asr", "train")
    import lightning.pytorch as pl

    from medasr_cli.train.model_init import init_model

    train_entries = check_manifest(train_manifest, "train")
    check_manifest(val_manifest, "validation")
    out_dir.mkdir(parents=True, exist_ok=True)
    replay = None
    if cfg.replay.manifest:
        replay = ReplayMix(train_manifest, Path(cfg.replay.manifest), float(cfg.replay.ratio),
                           out_dir, int(cfg.seed))  # fmt: skip
        train_manifest = replay.manifest(0)
    pl.seed_everything(int(cfg.seed), workers=True)
    trainer, accelerator = build_trainer(cfg, out_dir, explicit_strategy, replay)
    env = dist_env(trainer.num_devices)
    world = trainer.num_nodes * trainer.num_devices  # Lightning's launcher sets WORLD_SIZE later
    init_process_group_if_launched("gloo" if accelerator == "cpu" else "nccl")
    model = init_model(cfg, [e.text for e in train_entries], out_dir, accelerator, tokenizer)
    _exp_manager(trainer, cfg, out_dir, resume, mlflow_uri)
    model.set_trainer(trainer)
    model.setup_training_data(_data_cfg(cfg.model.train_ds, train_manifest, accelerator, world))
    model.setup_validation_data(
        _data_cfg(cfg.model.validation_ds, val_manifest, accelerator, world)
    )
    model.setup_optimization(cfg.model.optim)
    if env.is_global_zero:
        with atomic_write(out_dir / "config.yaml") as fh:
            fh.write(to_yaml(cfg))
    mlf = _mlflow_logger(trainer)
    if mlf is not None:
        from omegaconf import OmegaConf

        mlf.log_hyperparams({"medasr": OmegaConf.to_container(cfg, resolve=True)})
    try:
        trainer.fit(model)
    except RuntimeError as exc:
        if is_out_of_memory(exc):
            raise MedasrError(OOM_HINT) from exc
        raise
    return _finish(model, trainer, out_dir, mlf)


def _finish(model: Any, trainer: Any, out_dir: Path, mlf: Any) -> TrainResult:
    from medasr_cli.train.callbacks import ThroughputCallback

    best, score = _load_best(model, trainer)
    tp = next((c for c in trainer.callbacks if isinstance(c, ThroughputCallback)), None)
    ckpt_dir = Path(getattr(trainer.checkpoint_callback, "dirpath", "") or out_dir)
    result = TrainResult(
        out_dir=out_dir, nemo_path=None, best_checkpoint=best, best_val_wer=score,
        mlflow_run_id=getattr(mlf, "run_id", None) if mlf else None,
        checkpoints=sorted(str(p) for p in ckpt_dir.glob("*.ckpt")),
        utts_per_sec=tp.total_utts / tp.total_time_s if tp and tp.total_time_s else None,
        audio_sec_per_sec=tp.total_audio_s / tp.total_time_s if tp and tp.total_time_s else None,
    )  # fmt: skip
    if trainer.is_global_zero:
        nemo_path = out_dir / "model.nemo"
        tmp = out_dir / ".model.nemo.tmp"
        model.save_to(str(tmp))
        tmp.replace(nemo_path)
        result.nemo_path = nemo_path
        if mlf is not None:
            mlf.experiment.log_artifact(mlf.run_id, str(nemo_path))
            mlf.experiment.log_artifact(mlf.run_id, str(out_dir / "config.yaml"))
            if score is not None:
                mlf.experiment.log_metric(mlf.run_id, "best_val_wer", score)
    return result
