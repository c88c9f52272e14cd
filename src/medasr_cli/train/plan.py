"""The plan of a training run: world size, batches, steps, warm-up, learning rates, data kept.

Computed before the first step (and by ``medasr train --dry-run``) from the
training manifest, the config and the world size, with NeMo's own arithmetic:
the sampler gives each of ``world`` processes ``ceil(N / world)`` utterances,
``ceil(that / batch)`` batches make an epoch, and ``accumulate`` batches one
optimizer step. The run's ``trainer.max_steps`` is set to the plan's total, so
the learning-rate schedule (warm-up as a share of it, then cosine decay to
``min_lr``) follows the real number of optimizer steps on any cluster size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from medasr_cli.core.errors import InputError
from medasr_cli.core.records import ManifestEntry


@dataclass
class Dropped:
    """Utterances a dataset filter removes (NeMo drops them silently when it loads the data)."""

    reason: str
    utterances: int
    hours: float


@dataclass
class TrainPlan:
    nodes: int
    devices_per_node: int
    per_device_batch: int
    accumulate: int
    utterances: int  # per epoch, after the filters (replay included)
    hours: float
    manifest_utterances: int  # in the training manifest, before the filters
    manifest_hours: float
    replay_utterances: int  # drawn anew each epoch
    steps_per_epoch: int
    epochs: int  # the epochs the run will take (the last may be cut short by max_steps)
    total_steps: int
    warmup_steps: int
    peak_lr: float
    final_lr: float | None
    scheduler: str
    dropped: list[Dropped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checkpoint_on: str = ""  # what the best checkpoint is picked on

    @property
    def world_size(self) -> int:
        return self.nodes * self.devices_per_node

    @property
    def global_batch(self) -> int:
        return self.per_device_batch * self.world_size * self.accumulate

    @property
    def dropped_share(self) -> float:
        lost = sum(d.utterances for d in self.dropped)
        return lost / self.manifest_utterances if self.manifest_utterances else 0.0

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) lines for the terminal and ``docs/train.md``."""
        final = "—" if self.final_lr is None else f"{self.final_lr:.3g}"
        rows = [
            ("world size", f"{self.world_size} ({self.nodes} node(s) × {self.devices_per_node})"),
            ("global batch", f"{self.global_batch} (per device {self.per_device_batch}"
             f" × {self.world_size} × accumulate {self.accumulate})"),
            ("utterances per epoch", f"{self.utterances:,} ({self.hours:.2f} h)"
             + (f", {self.replay_utterances:,} of them replay" if self.replay_utterances else "")),
            ("steps per epoch", f"{self.steps_per_epoch:,}"),
            ("total steps", f"{self.total_steps:,} ({self.epochs} epoch(s))"),
            ("warm-up steps", f"{self.warmup_steps:,}"),
            ("learning rate", f"peak {self.peak_lr:.3g} -> final {final} ({self.scheduler})"),
        ]  # fmt: skip
        if self.checkpoint_on:
            rows.append(("best checkpoint", self.checkpoint_on))
        for d in self.dropped:
            rows.append(("dropped", f"{d.utterances:,} utterances ({d.hours:.2f} h): {d.reason}"))
        return rows


def dataset_filters(
    entries: Sequence[ManifestEntry], ds: Any
) -> tuple[list[ManifestEntry], list[Dropped]]:
    """The entries NeMo's dataset keeps (``min_duration <= duration <= max_duration``), and
    what each filter drops."""
    low = ds.get("min_duration")
    high = ds.get("max_duration")
    too_long = [e for e in entries if high is not None and e.duration > float(high)]
    too_short = [e for e in entries if low is not None and e.duration < float(low)]
    gone = {id(e) for e in (*too_long, *too_short)}
    kept = [e for e in entries if id(e) not in gone]
    dropped = []
    if too_long:
        dropped.append(Dropped(f"longer than model.train_ds.max_duration {float(high):g} s",
                               len(too_long), sum(e.duration for e in too_long) / 3600))  # fmt: skip
    if too_short:
        dropped.append(Dropped(f"shorter than model.train_ds.min_duration {float(low):g} s",
                               len(too_short), sum(e.duration for e in too_short) / 3600))  # fmt: skip
    return kept, dropped


def scheduler_config(optim: Any) -> dict[str, Any]:
    """The ``model.optim`` section as NeMo gets it: explicit ``warmup_steps`` win over the
    shipped ``warmup_ratio`` (NeMo refuses both at once)."""
    from omegaconf import OmegaConf

    out = OmegaConf.to_container(optim, resolve=True)
    if not isinstance(out, dict):
        raise InputError("model.optim: expected a mapping")
    sched = out.get("sched")
    if isinstance(sched, dict) and sched.get("warmup_steps") is not None:
        sched.pop("warmup_ratio", None)
    return {str(k): v for k, v in out.items()}


def plan_training(
    cfg: Any,
    entries: Sequence[ManifestEntry],
    *,
    nodes: int,
    devices_per_node: int,
    replay: Sequence[ManifestEntry] = (),
) -> TrainPlan:
    """The plan for training on ``entries`` (plus a fresh draw of ``replay`` each epoch)."""
    ds = cfg.model.train_ds
    kept, dropped = dataset_filters(entries, ds)
    replay_n = 0
    replay_kept: list[ManifestEntry] = []
    if replay:
        ratio = float(cfg.replay.ratio)
        replay_n = round(ratio / (1 - ratio) * len(entries))
        replay_kept, _ = dataset_filters(replay, ds)
    replay_share = len(replay_kept) / len(replay) if replay else 0.0
    replay_kept_n = round(replay_n * replay_share)
    replay_hours = (
        replay_kept_n * sum(e.duration for e in replay_kept) / len(replay_kept) / 3600
        if replay_kept
        else 0.0
    )
    per_epoch = len(kept) + replay_kept_n
    if per_epoch == 0:
        raise InputError(
            "no training utterance is left after the duration filters "
            f"({'; '.join(d.reason for d in dropped)})"
        )
    batch = int(ds.batch_size)
    accumulate = int(cfg.trainer.get("accumulate_grad_batches", 1) or 1)
    world = nodes * devices_per_node
    per_rank = math.ceil(per_epoch / world)
    steps_per_epoch = math.ceil(math.ceil(per_rank / batch) / accumulate)
    epochs_cfg = int(cfg.trainer.max_epochs)
    max_steps = int(cfg.trainer.max_steps)
    by_epochs = steps_per_epoch * epochs_cfg if epochs_cfg > 0 else None
    if max_steps > 0 and by_epochs is not None:
        total = min(max_steps, by_epochs)
    elif max_steps > 0:
        total = max_steps
    elif by_epochs is not None:
        total = by_epochs
    else:
        raise InputError("set trainer.max_epochs (--epochs) or trainer.max_steps (--max-steps)")
    sched = scheduler_config(cfg.model.optim).get("sched") or {}
    if sched.get("warmup_steps") is not None:
        warmup = int(sched["warmup_steps"])
    else:
        warmup = int(float(sched.get("warmup_ratio") or 0.0) * total)
    warnings = []
    if warmup >= total:
        warnings.append(
            f"warm-up ({warmup} steps) is not shorter than the run ({total} steps): the learning "
            "rate never reaches its peak; use model.optim.sched.warmup_ratio"
        )
    elif warmup > total // 2:
        warnings.append(f"warm-up takes {warmup} of {total} steps")
    if steps_per_epoch < 10 and world > 1:  # paying for many GPUs that have little to do
        warnings.append(
            f"an epoch is only {steps_per_epoch} optimizer step(s): a global batch of "
            f"{batch * world * accumulate} is large for {per_epoch:,} utterances; lower "
            "--batch-size, use fewer GPUs, or bring more data"
        )
    return TrainPlan(
        nodes=nodes,
        devices_per_node=devices_per_node,
        per_device_batch=batch,
        accumulate=accumulate,
        utterances=per_epoch,
        hours=sum(e.duration for e in kept) / 3600 + replay_hours,
        manifest_utterances=len(entries),
        manifest_hours=sum(e.duration for e in entries) / 3600,
        replay_utterances=replay_kept_n,
        steps_per_epoch=steps_per_epoch,
        epochs=math.ceil(total / steps_per_epoch),
        total_steps=total,
        warmup_steps=warmup,
        peak_lr=float(cfg.model.optim.lr),
        final_lr=float(sched["min_lr"]) if sched.get("min_lr") is not None else None,
        scheduler=str(sched.get("name", "constant")),
        dropped=dropped,
        warnings=warnings,
    )


def check_dropped(plan: TrainPlan, max_share: float) -> None:
    """Refuse to start when the filters would drop more than ``max_share`` of the data."""
    if plan.dropped_share <= max_share:
        return
    lost = sum(d.utterances for d in plan.dropped)
    hours = sum(d.hours for d in plan.dropped)
    reasons = "; ".join(d.reason for d in plan.dropped)
    raise InputError(
        f"{lost:,} of {plan.manifest_utterances:,} training utterances ({hours:.2f} h, "
        f"{plan.dropped_share:.0%}) would be dropped ({reasons}): split long dictations with "
        "`medasr synth --max-utterance-s 20`, raise the limit "
        "(--set model.train_ds.max_duration=40), or accept it with --allow-dropped"
    )
