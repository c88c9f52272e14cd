"""Checkpoints: the best one's weights back into the model (ZeRO directories too), one ``.nemo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medasr_cli.core.errors import MedasrError


def load_best(model: Any, trainer: Any) -> tuple[str | None, float | None]:
    """Load the best checkpoint's weights (DeepSpeed directories are consolidated first)."""
    import torch

    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") or ""
    score = getattr(callback, "best_model_score", None)
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


def save_nemo(model: Any, path: Path) -> Path:
    """Write ``path`` atomically: a crash never leaves a half-written ``.nemo`` behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    model.save_to(str(tmp))
    tmp.replace(path)
    return path


def list_checkpoints(trainer: Any, out_dir: Path) -> list[str]:
    """The ``.ckpt`` files the checkpoint callback wrote."""
    folder = Path(getattr(trainer.checkpoint_callback, "dirpath", "") or out_dir)
    return sorted(str(p) for p in folder.glob("*.ckpt"))
