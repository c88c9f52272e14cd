"""The synth YAML config: TTS prosody jitter and the augmentation chain.

The packaged ``data/synth/default.yaml`` is the base, layered with a user YAML,
``--snr`` and ``--set`` overrides by :mod:`medasr_cli.core.config`. The result
is validated so that a typo fails with one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from medasr_cli.core.config import layer, packaged_text, parse_yaml, read_yaml
from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import format_validation_error


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"range [{value[0]}, {value[1]}] has lo > hi")
    return value


Range = Annotated[tuple[float, float], AfterValidator(_ordered)]


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p: float = Field(ge=0.0, le=1.0)


class SpeedConfig(_Step):
    factor: Range = (0.9, 1.1)


class ReverbConfig(_Step):
    rt60_s: Range = (0.2, 0.7)
    drr_db: Range = (3.0, 12.0)


class NoiseConfig(_Step):
    snr_db: Range = (10.0, 25.0)


class TelephoneConfig(_Step):
    low_hz: Range = (200.0, 400.0)
    high_hz: Range = (3000.0, 3600.0)
    narrowband: float = Field(0.5, ge=0.0, le=1.0)


class GaussianConfig(_Step):
    snr_db: Range = (30.0, 50.0)


class GainConfig(_Step):
    db: Range = (-6.0, 6.0)


class AugmentConfig(BaseModel):
    """One block per augmentation step, each with its probability ``p``."""

    model_config = ConfigDict(extra="forbid")

    speed: SpeedConfig
    reverb: ReverbConfig
    noise: NoiseConfig
    telephone: TelephoneConfig
    gaussian: GaussianConfig
    gain: GainConfig


class SynthConfig(BaseModel):
    """Everything that shapes the audio besides the text, voice and seed."""

    model_config = ConfigDict(extra="forbid")

    sample_rate: int = Field(16000, gt=0)
    speech_level_dbfs: float = -23.0
    peak_dbfs: float = Field(-1.0, le=0.0)
    tts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    augment: AugmentConfig


def default_config_text() -> str:
    """The packaged default YAML (documented, for ``--show-config``-style use)."""
    return packaged_text("medasr_cli.data", "synth/default.yaml")


def load_config(
    path: Path | None = None,
    overrides: list[str] | None = None,
    snr: tuple[float, float] | None = None,
) -> SynthConfig:
    """Defaults < ``path`` < ``snr`` (the ``--snr`` flag) < ``overrides`` (``--set``), validated."""
    data = layer(
        parse_yaml(default_config_text(), "synth default config"),
        read_yaml(path) if path is not None else None,
        {"augment.noise.snr_db": list(snr) if snr is not None else None},
        overrides or [],
        example="augment.reverb.p=0.5",
    )
    try:
        return SynthConfig.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path else "synth config"
        raise InputError(f"{where}: {format_validation_error(exc)}") from exc


def parse_snr(text: str) -> tuple[float, float]:
    """Parse ``--snr LO:HI`` (or one value) in dB; InputError on a bad or reversed range."""
    parts = text.split(":")
    try:
        values = [float(x) for x in parts]
    except ValueError as exc:
        raise InputError(f"--snr {text!r}: expected LO:HI in dB, e.g. 10:25") from exc
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise InputError(f"--snr {text!r}: expected LO:HI in dB, e.g. 10:25")
    lo, hi = values
    if lo > hi:
        raise InputError(f"--snr {text!r}: LO must not exceed HI")
    if not (lo >= -20.0 and hi <= 80.0):
        raise InputError(f"--snr {text!r}: values must lie within -20..80 dB")
    return lo, hi
