"""How long one pass of the encoder may be, from the model's shape and the device's free memory.

NeMo's recipe for long audio on FastConformer (``transcribe_speech.py``, the
Parakeet model cards): full attention while the quadratic attention matrix
fits, then limited-context ("local") attention, ``rel_pos_local_attn`` with
128 frames of context either side, whose memory grows linearly with length,
and beyond what even that allows, overlapping chunks stitched at word
boundaries (:mod:`.transcript`).

The limits are estimated once, after the model has loaded, from free device
memory (``torch.cuda.mem_get_info`` on a GPU, available RAM on the CPU) and
rounded down to whole minutes. Set them explicitly (``--full-attention-s``,
``--max-single-pass-s``) for decisions that do not depend on what else the
machine is doing, e.g. when comparing ``eval`` and ``serve`` on two machines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

LOCAL_CONTEXT = (128, 128)
"""Frames of attention context left and right in local-attention mode (NeMo's recipe)."""

MEMORY_SHARE = 0.5
"""Share of free memory one pass may plan to use (the rest: other batch items, fragmentation)."""

ATTENTION_TEMPS = 8
"""Score-sized tensors alive at once in one attention layer (scores, positional scores, mask,
softmax, dropout, matmul): measured 7 on the CPU (a 10-minute pass of a 2-head model took 3.1 GB
more than a 1-minute one); 8 leaves a margin."""

FULL_ATTENTION_CAP_S = 1440.0
"""Longest full-attention pass: the 24 minutes Parakeet's model card states it was checked for."""

SINGLE_PASS_CAP_S = 3 * 3600.0
"""Longest local-attention pass: the 3 hours NeMo states for local attention."""


@dataclass(frozen=True)
class PassLimits:
    """Seconds of audio per encoder pass; longer audio is cut into overlapping chunks."""

    full_attention_s: float
    single_pass_s: float
    chunk_overlap_s: float = 10.0

    def needs_local(self, duration: float) -> bool:
        """Whether a piece this long runs with local attention."""
        return duration > self.full_attention_s


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs from an encoder config."""

    heads: int
    d_model: int
    frames_per_s: float
    mel_per_s: float
    features: int
    conv_channels: int
    ff_expansion: float

    @classmethod
    def of(cls, model: Any) -> ModelShape:
        """Read the shape from a loaded NeMo ASR model's config."""
        enc = model.cfg.encoder
        pre = model.cfg.preprocessor
        stride = float(pre.get("window_stride", 0.01))
        factor = int(enc.get("subsampling_factor", 8))
        return cls(
            heads=int(enc.get("n_heads", 8)),
            d_model=int(enc.get("d_model", 512)),
            frames_per_s=1.0 / (stride * factor),
            mel_per_s=1.0 / stride,
            features=int(enc.get("feat_in", 80)),
            conv_channels=int(enc.get("subsampling_conv_channels", 256) or 256),
            ff_expansion=float(enc.get("ff_expansion_factor", 4)),
        )

    def full_attention_bytes(self, seconds: float, dtype_bytes: int) -> float:
        """Peak bytes of one full-attention layer (quadratic) plus the linear part."""
        frames = seconds * self.frames_per_s
        return self.heads * frames**2 * dtype_bytes * ATTENTION_TEMPS + self.linear_bytes(
            seconds, dtype_bytes
        )

    def local_attention_bytes(self, seconds: float, dtype_bytes: int) -> float:
        """Peak bytes of one local-attention layer plus the linear part."""
        frames = seconds * self.frames_per_s
        window = sum(LOCAL_CONTEXT) + 1
        return self.heads * frames * window * dtype_bytes * ATTENTION_TEMPS + self.linear_bytes(
            seconds, dtype_bytes
        )

    def linear_bytes(self, seconds: float, dtype_bytes: int) -> float:
        """Features, the first subsampling convolution and a layer's activations."""
        features = seconds * self.mel_per_s * self.features * 4  # preprocessor runs in fp32
        conv = seconds * (self.mel_per_s / 2) * (self.features / 2) * self.conv_channels
        layer = seconds * self.frames_per_s * self.d_model * (4 * self.ff_expansion + 8)
        return features + (conv + layer) * dtype_bytes


def free_memory_bytes(device: str) -> int:
    """Free memory on ``device``: the GPU's free bytes, or the host's available RAM."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def estimate_limits(
    shape: ModelShape,
    free_bytes: int,
    dtype_bytes: int,
    *,
    chunk_overlap_s: float = 10.0,
) -> PassLimits:
    """The longest full-attention and local-attention passes that fit in free memory.

    Rounded down to whole minutes (at least one), so that small changes in free
    memory do not move the limits.
    """
    budget = free_bytes * MEMORY_SHARE

    def longest(cost: Any, cap: float) -> float:
        lo, hi = 0.0, cap
        if cost(hi, dtype_bytes) <= budget:
            return cap
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if cost(mid, dtype_bytes) <= budget else (lo, mid)
        return max(60.0, math.floor(lo / 60) * 60)

    full = longest(shape.full_attention_bytes, FULL_ATTENTION_CAP_S)
    single = max(full, longest(shape.local_attention_bytes, SINGLE_PASS_CAP_S))
    return PassLimits(full_attention_s=full, single_pass_s=single, chunk_overlap_s=chunk_overlap_s)


def describe(limits: PassLimits) -> dict[str, float]:
    """Limits as a plain dict (for the start-up log line and eval's report)."""
    return {
        "full_attention_s": limits.full_attention_s,
        "max_single_pass_s": limits.single_pass_s,
        "chunk_overlap_s": limits.chunk_overlap_s,
    }
