"""Several validation sets, each one's WER logged, and the checkpoint picked on a stated choice.

Fine-tuning on synthetic medical speech can make general speech worse; a run
that validates on the medical set alone keeps the checkpoint that forgot the
most. With ``--val-manifest medical=... --val-manifest general=...`` NeMo
validates on both (its own multi-dataloader support) and logs
``medical_val_wer`` and ``general_val_wer``; the checkpoint is picked on one
named set or on a weighted mean of them (``validation.select``), which is
logged as ``val_wer_select``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import InputError

SELECT_METRIC = "val_wer_select"


def parse_validation_sets(items: Sequence[str | Path]) -> dict[str, Path]:
    """``PATH`` or ``NAME=PATH`` items -> ``{name: path}``; names default to the file stems."""
    out: dict[str, Path] = {}
    for item in items:
        text = str(item)
        name, sep, path = text.partition("=")
        if not sep:
            name, path = Path(text).stem, text
        # NeMo's metric prefixes drop "manifest" and "dataset" from names: so do we
        name = re.sub(r"manifest|dataset", "", name.lower())
        name = re.sub(r"[^a-z0-9]+", "_", name).strip("_")
        if not name:
            raise InputError(f"--val-manifest {text!r}: name the set, e.g. medical={path}")
        if name in out:
            raise InputError(f"--val-manifest: two validation sets are called '{name}'")
        out[name] = Path(path)
    if not out:
        raise InputError("give at least one --val-manifest")
    return out


def metric_name(name: str, sets: Mapping[str, Path]) -> str:
    """The WER metric NeMo logs for validation set ``name`` (``val_wer`` with one set)."""
    return "val_wer" if len(sets) == 1 else f"{name}_val_wer"


def selection(select: str | None, sets: Mapping[str, Path]) -> tuple[str, dict[str, float]]:
    """The metric the checkpoint is picked on, and the weights of a combination.

    ``None`` with one set is its WER; with several, their plain mean. ``NAME`` is one
    set's WER; ``NAME:W,NAME:W`` a weighted mean (weights need not sum to 1).
    """
    names = list(sets)
    if select is None or str(select).strip() in ("", "mean"):
        if len(names) == 1:
            return metric_name(names[0], sets), {}
        return SELECT_METRIC, dict.fromkeys(names, 1.0 / len(names))
    weights: dict[str, float] = {}
    for part in str(select).split(","):
        name, sep, weight = part.strip().partition(":")
        if name not in sets:
            raise InputError(
                f"--select-on {select!r}: no validation set '{name}' (sets: {', '.join(names)})"
            )
        try:
            weights[name] = float(weight) if sep else 1.0
        except ValueError as exc:
            raise InputError(f"--select-on {select!r}: '{weight}' is not a weight") from exc
    if len(weights) == 1 and not any(":" in p for p in str(select).split(",")):
        return metric_name(next(iter(weights)), sets), {}
    total = sum(weights.values())
    if total <= 0 or any(w < 0 for w in weights.values()):
        raise InputError(f"--select-on {select!r}: weights must be >= 0 and not all 0")
    return SELECT_METRIC, {n: w / total for n, w in weights.items()}


def describe(monitor: str, weights: Mapping[str, float]) -> str:
    """One line for the plan: what the best checkpoint is picked on."""
    if not weights:
        return f"lowest {monitor}"
    mix = " + ".join(f"{w:.2g}×{n}" for n, w in weights.items())
    return f"lowest {monitor} = {mix} (WER)"


def selection_callback(weights: Mapping[str, float], sets: Mapping[str, Path]) -> Any:
    """A Lightning callback that adds ``val_wer_select`` after each validation."""
    import torch
    from lightning.pytorch.callbacks import Callback

    keys = {metric_name(n, sets): w for n, w in weights.items()}

    class SelectionMetric(Callback):
        """Runs before the checkpoint callbacks (Lightning orders those last)."""

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            metrics = trainer.callback_metrics
            if trainer.sanity_checking or not all(k in metrics for k in keys):
                return
            value = sum(w * float(metrics[k]) for k, w in keys.items())
            metrics[SELECT_METRIC] = torch.tensor(value)
            for logger in trainer.loggers:
                logger.log_metrics({SELECT_METRIC: value}, step=trainer.global_step)

    return SelectionMetric()
