"""The synth YAML config: TTS prosody jitter and the augmentation chain.

The packaged ``data/synth/default.yaml`` is the base; a user YAML is merged
over it and dotted ``key=value`` overrides (NeMo style, values parsed as YAML)
are applied last. The result is validated so that a typo fails with one line.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import check_input_file, format_validation_error


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
    return resources.files("medasr_cli.data").joinpath("synth/default.yaml").read_text("utf-8")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict."""
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. augment.reverb.p=0.5")
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"--set {item!r}: '{part}' is not a section")
        node[leaf] = yaml.safe_load(raw)
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    p = check_input_file(path, "config file")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{p}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{p}: expected a YAML mapping at the top level")
    return data


def load_config(
    path: Path | None = None,
    overrides: list[str] | None = None,
    snr: tuple[float, float] | None = None,
) -> SynthConfig:
    """Defaults, merged with ``path``, then ``overrides``, then ``snr`` (from ``--snr``)."""
    data = yaml.safe_load(default_config_text())
    if path is not None:
        data = _merge(data, _read_yaml(path))
    data = apply_overrides(data, overrides or [])
    if snr is not None:
        data["augment"]["noise"]["snr_db"] = list(snr)
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
