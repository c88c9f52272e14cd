"""The TTS engine contract: a Protocol, the synthesis result, and voice specs.

Every engine turns (text, voice, prosody parameters, seed) into mono float32
audio. Engines are created lazily (heavy imports and model loads happen on the
first synthesis), so the CLI can validate a voice plan before any work starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from medasr_cli.core.errors import InputError


@dataclass(frozen=True)
class VoiceSpec:
    """One voice of a voice plan: ``engine:voice`` with a sampling weight."""

    engine: str
    voice: str
    weight: float = 1.0

    @property
    def label(self) -> str:
        """The ``engine:voice`` form recorded in every utterance."""
        return f"{self.engine}:{self.voice}"

    @classmethod
    def parse(cls, spec: str, weight: float = 1.0) -> VoiceSpec:
        """Parse ``engine:voice`` (or a bare ``engine`` for its default voice)."""
        spec = spec.strip()
        if not spec:
            raise InputError("empty voice spec (expected engine:voice, e.g. espeak:en-gb)")
        engine, _, voice = spec.partition(":")
        if weight <= 0:
            raise InputError(f"voice '{spec}': weight must be > 0, got {weight}")
        return cls(engine=engine.strip().lower(), voice=voice.strip() or "default", weight=weight)


@dataclass
class Synthesis:
    """What an engine produced for one text: audio and the parameters it used."""

    audio: np.ndarray  # mono float32 in [-1, 1]
    sample_rate: int
    accent: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class TTSEngine(Protocol):
    """A text-to-speech backend (espeak, piper, coqui …)."""

    name: str

    def check_voice(self, voice: str) -> None:
        """Raise InputError if ``voice`` cannot be used (unknown, missing model, offline)."""
        ...

    def list_voices(self) -> list[str]:
        """Voice names this engine offers here (for help and error messages)."""
        ...

    def synthesize(
        self, text: str, voice: str, params: Mapping[str, float], seed: int
    ) -> Synthesis:
        """Speak ``text``; ``params`` are jittered prosody settings, ``seed`` fixes randomness."""
        ...


def sample_params(ranges: Mapping[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """Draw each ``name: [lo, hi]`` uniformly (a scalar is used as is); rounded for the record."""
    out: dict[str, float] = {}
    for name, spec in sorted(ranges.items()):
        if isinstance(spec, (list, tuple)) and len(spec) == 2:
            lo, hi = float(spec[0]), float(spec[1])
            out[name] = round(float(rng.uniform(lo, hi)), 4)
        elif isinstance(spec, (int, float)):
            out[name] = float(spec)
        else:
            raise InputError(f"tts parameter '{name}': expected a number or [lo, hi], got {spec!r}")
    return out


def check_audio(audio: np.ndarray, what: str) -> np.ndarray:
    """Return ``audio`` as contiguous float32, or raise if it is empty, silent or not finite."""
    arr = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).reshape(-1))
    if arr.size == 0:
        raise RuntimeError(f"{what}: the engine returned empty audio")
    if not np.isfinite(arr).all():
        raise RuntimeError(f"{what}: the engine returned NaN/inf samples")
    if float(np.max(np.abs(arr))) < 1e-4:
        raise RuntimeError(f"{what}: the engine returned silence")
    return arr
