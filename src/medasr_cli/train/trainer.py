"""The Lightning Trainer of a run: accelerator, strategy and precision, callbacks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import InputError
from medasr_cli.train.data import ReplayMix, data_config
from medasr_cli.train.devices import (
    build_strategy,
    deepspeed_precision,
    resolve_accelerator,
    resolve_devices,
    resolve_precision,
)


def _as_dict(container: Any) -> dict[str, Any]:
    if not isinstance(container, dict):
        raise InputError(f"config: expected a mapping, got {type(container).__name__}")
    return {str(k): v for k, v in container.items()}


def build_trainer(
    cfg: Any, out_dir: Path, replay: ReplayMix | None = None, extra: Sequence[Any] = ()
) -> tuple[Any, str]:
    """A Lightning Trainer from ``cfg.trainer`` + ``cfg.deepspeed`` with medasr's callbacks and
    ``extra`` ones; returns it and the accelerator."""
    import lightning.pytorch as pl
    from lightning.pytorch.strategies import DeepSpeedStrategy
    from omegaconf import OmegaConf

    from medasr_cli.train.callbacks import MetricsProgressBar, ReplayCallback, ThroughputCallback

    settings = _as_dict(OmegaConf.to_container(cfg.trainer, resolve=True))
    accelerator = resolve_accelerator(str(settings.pop("accelerator")))
    devices = resolve_devices(settings.pop("devices"), accelerator)
    num_nodes = int(settings.pop("num_nodes"))
    strategy = build_strategy(
        str(settings.pop("strategy")), accelerator, num_nodes, devices,
        _as_dict(OmegaConf.to_container(cfg.deepspeed, resolve=True)),
    )  # fmt: skip
    on_deepspeed = isinstance(strategy, DeepSpeedStrategy)
    precision = deepspeed_precision(
        strategy, resolve_precision(settings.pop("precision"), accelerator, on_deepspeed)
    )
    callbacks: list[Any] = [ThroughputCallback(int(cfg.model.sample_rate)), *extra]
    if settings.get("enable_progress_bar", True):
        callbacks.append(MetricsProgressBar())
    if replay is not None:  # a new replay draw every epoch: reload the training data
        train_ds = cfg.model.train_ds
        callbacks.append(ReplayCallback(
            replay.manifest, lambda m, world: data_config(train_ds, m, accelerator, world)))  # fmt: skip
        settings["reload_dataloaders_every_n_epochs"] = 1
    trainer = pl.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
        precision=precision, logger=False, enable_checkpointing=False, callbacks=callbacks,
        default_root_dir=str(out_dir), **settings,
    )  # fmt: skip
    return trainer, accelerator
