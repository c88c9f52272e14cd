"""``medasr synth``: multi-voice TTS with hospital-noise augmentation, as a library."""

from medasr_cli.synth.config import SynthConfig, load_config, parse_snr
from medasr_cli.synth.noisebank import build_noise_bank
from medasr_cli.synth.run import SynthRequest, run_synth
from medasr_cli.synth.summary import SynthSummary

__all__ = [
    "SynthConfig",
    "SynthRequest",
    "SynthSummary",
    "build_noise_bank",
    "load_config",
    "parse_snr",
    "run_synth",
]
