"""Loading NeMo ASR models and transcribing decoded audio with them.

Shared by ``eval --model``, ``train --init`` and ``serve``. NeMo is imported
lazily so the core install (manifests, eval on existing predictions) stays light.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medasr_cli.core.errors import InputError, MedasrError, require
from medasr_cli.core.logging import quiet_nemo

log = logging.getLogger(__name__)


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    require("torch", "asr")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA GPU is visible on this machine")
    return device


def load_asr_model(spec: str | Path, device: str = "auto") -> Any:
    """Load a NeMo ASR model from a ``.nemo`` file or a hub name (``nvidia/parakeet-tdt-0.6b-v2``).

    A hub name goes through NeMo's real ``ASRModel.from_pretrained``; without
    network access it fails with one clear line.
    """
    quiet_nemo()  # before NeMo's import resets its logger to INFO
    require("nemo.collections.asr", "asr")
    from nemo.collections.asr.models import ASRModel

    dev = resolve_device(device)
    path = Path(spec)
    started = time.perf_counter()
    if path.suffix == ".nemo" or path.exists():
        if not path.exists():
            raise InputError(f"{path}: model file not found")
        if path.is_dir() or path.suffix != ".nemo":
            raise InputError(f"{path}: not a .nemo model file")
        try:
            model = ASRModel.restore_from(str(path), map_location=dev)
        except Exception as exc:  # NeMo raises many types for a corrupt archive
            raise InputError(
                f"{path}: cannot load as a NeMo model ({type(exc).__name__}: {exc})"
            ) from exc
    else:
        try:
            model = ASRModel.from_pretrained(str(spec), map_location=dev)
        except Exception as exc:
            raise InputError(
                f"model '{spec}' is not available locally and could not be downloaded "
                f"({type(exc).__name__}); pass a .nemo path or allow network access"
            ) from exc
    model.eval()
    log.info("loaded %s on %s in %.1f s", spec, dev, time.perf_counter() - started)
    return model


def hypothesis_text(hyp: Any) -> str:
    """Text of a NeMo transcribe() result item (a Hypothesis or a plain string)."""
    return hyp if isinstance(hyp, str) else str(getattr(hyp, "text", "") or "")


def transcribe_arrays(
    model: Any,
    audio: Sequence[np.ndarray],
    *,
    batch_size: int = 8,
    timestamps: bool = False,
) -> list[Any]:
    """Transcribe 16 kHz mono float32 arrays with NeMo's own ``transcribe()``; returns Hypotheses."""
    import torch

    if not audio:
        return []
    with torch.inference_mode():
        out = model.transcribe(
            list(audio),
            batch_size=batch_size,
            return_hypotheses=True,
            verbose=False,
            timestamps=timestamps or None,
        )
    if isinstance(out, tuple):  # some NeMo versions return (best, all)
        out = out[0]
    if len(out) != len(audio):
        raise MedasrError(f"NeMo returned {len(out)} results for {len(audio)} inputs")
    return list(out)
