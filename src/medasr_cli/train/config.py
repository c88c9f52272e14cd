"""The training configuration: shipped YAML < user YAML or preset < CLI flags < ``--set``.

The layers are merged by :mod:`medasr_cli.core.config` like every stage's; the
result becomes an OmegaConf ``DictConfig`` with its ``${...}`` interpolations
resolved, which is what NeMo and Lightning take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medasr_cli.core.config import layer, packaged_names, packaged_text, parse_yaml, read_yaml
from medasr_cli.core.errors import InputError, require

PACKAGE = "medasr_cli.data.train"
DEFAULT_CONFIG = "parakeet_tdt.yaml"


def default_config_text() -> str:
    """The shipped default config (package data)."""
    return packaged_text(PACKAGE, DEFAULT_CONFIG)


def presets() -> list[str]:
    """Names of the shipped config presets (``--config NAME``)."""
    return packaged_names(PACKAGE, exclude=(DEFAULT_CONFIG,))


def _user_layer(config: str) -> dict[str, Any]:
    """A YAML file, or a shipped preset by name (a file of that name wins)."""
    path = Path(config)
    if path.is_file():
        return read_yaml(path)
    if config in presets():
        return parse_yaml(packaged_text(PACKAGE, f"{config}.yaml"), f"preset {config}")
    raise InputError(f"--config: {config} is neither a file nor a preset ({', '.join(presets())})")


def load_train_config(
    config: str | None = None,
    flags: dict[str, Any] | None = None,
    dotlist: list[str] | None = None,
) -> Any:
    """Merge the config layers and resolve interpolations; returns an OmegaConf DictConfig."""
    require("omegaconf", "asr")
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    data = layer(
        parse_yaml(default_config_text(), DEFAULT_CONFIG),
        _user_layer(config) if config is not None else None,
        flags,
        dotlist or [],
        example="trainer.max_epochs=5",
    )
    try:
        cfg = OmegaConf.create(data)
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise InputError(f"config: {' '.join(str(exc).split())}") from exc
    return cfg


def to_yaml(cfg: Any) -> str:
    from omegaconf import OmegaConf

    return str(OmegaConf.to_yaml(cfg))
