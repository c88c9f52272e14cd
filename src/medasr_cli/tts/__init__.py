"""Text-to-speech backends behind one Protocol and an explicit registry."""

from medasr_cli.tts.base import Synthesis, TTSEngine, VoiceSpec, sample_params
from medasr_cli.tts.coqui import CoquiOptions
from medasr_cli.tts.registry import ENGINES, EngineOptions, create_engine

__all__ = [
    "ENGINES",
    "CoquiOptions",
    "EngineOptions",
    "Synthesis",
    "TTSEngine",
    "VoiceSpec",
    "create_engine",
    "sample_params",
]
