"""Lightning callbacks: training throughput, and a progress bar that shows loss, WER and speed."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import TQDMProgressBar


class ThroughputCallback(Callback):
    """Logs ``train_utts_per_sec`` and ``train_audio_sec_per_sec`` for each step (this rank).

    The run totals (for the summary) skip the first ``warmup_steps`` steps.
    """

    def __init__(self, sample_rate: int = 16000, warmup_steps: int = 5) -> None:
        self.sample_rate = sample_rate
        self.warmup_steps = warmup_steps
        self._start = 0.0
        self.total_utts = 0
        self.total_audio_s = 0.0
        self.total_time_s = 0.0

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        utts = int(batch[0].shape[0])
        audio_s = float(batch[1].sum()) / self.sample_rate
        if trainer.global_step > self.warmup_steps:
            self.total_utts += utts
            self.total_audio_s += audio_s
            self.total_time_s += elapsed
        pl_module.log("train_utts_per_sec", utts / elapsed, batch_size=utts)
        pl_module.log("train_audio_sec_per_sec", audio_s / elapsed, batch_size=utts)


class MetricsProgressBar(TQDMProgressBar):
    """Lightning's bar with the training loss, the last validation WER and the throughput.

    NeMo logs ``train_loss`` and ``val_wer`` for the loggers only (not for the bar);
    this reads them back from the trainer's metrics instead of logging them twice.
    """

    SHOWN = (
        ("train_loss", "loss", "{:.3f}"),
        ("val_wer", "wer", "{:.1%}"),
        ("train_utts_per_sec", "utt/s", "{:.1f}"),
        ("train_audio_sec_per_sec", "audio-s/s", "{:.1f}"),
    )

    def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, int | str | float | dict]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items.pop("train_step_timing in s", None)  # NeMo's, for its own bar; utt/s says more
        metrics = trainer.callback_metrics
        for key, label, fmt in self.SHOWN:
            if key in metrics:
                items[label] = fmt.format(float(metrics[key]))
        return items


class ReplayCallback(Callback):
    """A fresh general-domain replay draw for every epoch (forgetting guard).

    At the end of each epoch the next epoch's mixed manifest is written and the
    training data set up from it; the Trainer reloads its data loaders every
    epoch (``reload_dataloaders_every_n_epochs=1``) and picks it up.
    """

    def __init__(
        self, manifest_for_epoch: Callable[[int], Path], data_cfg: Callable[[Path, int], Any]
    ) -> None:
        self.manifest_for_epoch = manifest_for_epoch
        self.data_cfg = data_cfg

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.should_stop or (
            trainer.max_epochs is not None and trainer.current_epoch + 1 >= trainer.max_epochs
        ):
            return  # no next epoch
        manifest = self.manifest_for_epoch(trainer.current_epoch + 1)
        pl_module.setup_training_data(
            self.data_cfg(manifest, trainer.num_nodes * trainer.num_devices)
        )
