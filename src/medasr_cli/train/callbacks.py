"""Lightning callbacks: training throughput in utterances/s and audio-seconds/s."""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch import Callback


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
        pl_module.log("train_audio_sec_per_sec", audio_s / elapsed, prog_bar=True, batch_size=utts)
