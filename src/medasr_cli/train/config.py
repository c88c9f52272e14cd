"""The training configuration: shipped YAML < user YAML < CLI flags < ``--set`` dotlist."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import InputError, require

DEFAULT_CONFIG = "parakeet_tdt.yaml"


def default_config_text() -> str:
    """The shipped default config (package data)."""
    return resources.files("medasr_cli.data.train").joinpath(DEFAULT_CONFIG).read_text("utf-8")


def presets() -> list[str]:
    """Names of the shipped config presets (``--config NAME``)."""
    files = resources.files("medasr_cli.data.train").iterdir()
    return sorted(
        f.name[:-5] for f in files if f.name.endswith(".yaml") and f.name != DEFAULT_CONFIG
    )


def _config_layer(config: str) -> Any:
    from omegaconf import OmegaConf

    path = Path(config)
    if not path.is_file() and config in presets():
        text = (
            resources.files("medasr_cli.data.train").joinpath(f"{config}.yaml").read_text("utf-8")
        )
        return OmegaConf.create(text)
    if not path.is_file():
        raise InputError(
            f"--config: {config} is neither a file nor a preset ({', '.join(presets())})"
        )
    try:
        return OmegaConf.load(path)
    except Exception as exc:
        raise InputError(f"{config}: not a valid YAML config ({exc})") from exc


def load_train_config(
    config: str | None = None,
    flags: dict[str, Any] | None = None,
    dotlist: list[str] | None = None,
) -> Any:
    """Merge the config layers and resolve interpolations; returns an OmegaConf DictConfig."""
    require("omegaconf", "asr")
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    layers = [OmegaConf.create(default_config_text())]
    if config is not None:
        layers.append(_config_layer(config))
    if flags:
        layers.append(OmegaConf.create(_nest({k: v for k, v in flags.items() if v is not None})))
    if dotlist:
        for item in dotlist:
            if "=" not in item:
                raise InputError(f"--set: expected key.path=value, got '{item}'")
        try:
            layers.append(OmegaConf.from_dotlist(dotlist))
        except OmegaConfBaseException as exc:
            raise InputError(f"--set: {exc}") from exc
    try:
        cfg = OmegaConf.merge(*layers)
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise InputError(f"config: {exc}") from exc
    return cfg


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"trainer.devices": 2}`` -> ``{"trainer": {"devices": 2}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def to_yaml(cfg: Any) -> str:
    from omegaconf import OmegaConf

    return str(OmegaConf.to_yaml(cfg))
