"""The explicit engine registry: name -> factory (heavy imports stay inside each factory)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from medasr_cli.core.errors import InputError
from medasr_cli.tts.base import TTSEngine
from medasr_cli.tts.coqui import CoquiOptions


@dataclass(frozen=True)
class EngineOptions:
    """Settings every factory may read: CPU threads per process and Coqui's model choice."""

    threads: int = 1
    coqui: CoquiOptions = field(default_factory=CoquiOptions)


def _espeak(options: EngineOptions) -> TTSEngine:
    from medasr_cli.tts.espeak import EspeakEngine

    return EspeakEngine()


def _piper(options: EngineOptions) -> TTSEngine:
    from medasr_cli.tts.piper import PiperEngine

    return PiperEngine(threads=options.threads)


def _coqui(options: EngineOptions) -> TTSEngine:
    from medasr_cli.tts.coqui import CoquiEngine

    return CoquiEngine(options.coqui, threads=options.threads)


ENGINES: dict[str, Callable[[EngineOptions], TTSEngine]] = {
    "espeak": _espeak,
    "piper": _piper,
    "coqui": _coqui,
}


def create_engine(name: str, options: EngineOptions | None = None) -> TTSEngine:
    """Build the engine registered as ``name`` (InputError naming the known ones otherwise)."""
    factory = ENGINES.get(name)
    if factory is None:
        raise InputError(f"unknown TTS engine '{name}' (known: {', '.join(sorted(ENGINES))})")
    return factory(options or EngineOptions())
