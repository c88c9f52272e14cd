"""Configuration layering, once for every stage.

Every configurable stage builds its configuration the same way, lowest first::

    package defaults (YAML in medasr_cli/data)
      < a user YAML file (or a shipped preset by name)
        < CLI flags (dotted keys; ``None`` means "not given")
          < dotted ``--set a.b.c=value`` overrides (values parsed as YAML)

Mappings merge key by key; anything else (lists, scalars, ``null``) replaces.
The result is a plain ``dict``: a stage validates it (synth with pydantic) or
hands it to OmegaConf for interpolation (train). Errors are one line naming the
file or the ``--set`` item, with the same wording in every stage.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import check_input_file


class _Loader(yaml.SafeLoader):
    """YAML 1.1's safe loader, but ``1e-3`` is a float (as in YAML 1.2, OmegaConf and NeMo)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.VERBOSE,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """A YAML mapping from ``text``; ``source`` names it in errors. Empty text is ``{}``."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML ({_one_line(exc)})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a YAML mapping at the top level")
    return data


def parse_value(raw: str) -> Any:
    """A ``--set`` value: YAML scalar or flow collection (``0.5``, ``1e-3``, ``[1, 2]``, ``null``)."""
    try:
        return yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError:
        return raw  # not YAML: keep the text as typed


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A user's YAML file as a mapping, or one clear :class:`InputError`."""
    p = check_input_file(path, "config file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not valid UTF-8") from exc
    return parse_yaml(text, str(p))


def packaged_text(package: str, name: str) -> str:
    """The text of a YAML file shipped in ``package`` (e.g. ``medasr_cli.data.train``)."""
    return resources.files(package).joinpath(name).read_text("utf-8")


def packaged_yaml(package: str, name: str) -> dict[str, Any]:
    """A YAML mapping shipped in ``package``."""
    return parse_yaml(packaged_text(package, name), f"{package}:{name}")


def packaged_names(package: str, exclude: Sequence[str] = ()) -> list[str]:
    """Names (without ``.yaml``) of the YAML files shipped in ``package``: its presets."""
    return sorted(
        f.name[: -len(".yaml")]
        for f in resources.files(package).iterdir()
        if f.name.endswith(".yaml") and f.name not in exclude
    )


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: mappings key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_dotted(data: dict[str, Any], key: str, value: Any, *, source: str) -> None:
    """Set ``a.b.c`` in ``data`` in place, creating sections; ``source`` names the item in errors."""
    node = data
    *parents, leaf = key.split(".")
    if not leaf or not all(parents):
        raise InputError(f"{source}: '{key}' is not a dotted key such as a.b.c")
    for part in parents:
        child = node.setdefault(part, {})
        if child is None:  # a section switched off with null gets its keys back
            child = node[part] = {}
        if not isinstance(child, dict):
            raise InputError(f"{source}: '{part}' is not a section (it is {child!r})")
        node = child
    node[leaf] = value


def nest(flat: Mapping[str, Any], *, source: str = "flags") -> dict[str, Any]:
    """``{"trainer.devices": 2, "seed": None}`` -> ``{"trainer": {"devices": 2}}`` (``None`` = not given)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is not None:
            set_dotted(out, key, value, source=source)
    return out


def parse_overrides(items: Sequence[str], example: str = "a.b.c=0.5") -> dict[str, Any]:
    """``--set KEY=VALUE`` items as one nested mapping (later items win)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--set {item!r}: expected KEY=VALUE, e.g. {example}")
        set_dotted(out, key, parse_value(raw.strip()), source=f"--set {item!r}")
    return out


def layer(
    defaults: Mapping[str, Any],
    user: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    *,
    example: str = "a.b.c=0.5",
) -> dict[str, Any]:
    """defaults < user < flags (dotted keys, ``None`` skipped) < ``--set`` overrides."""
    data = merge(defaults, user or {})
    data = merge(data, nest(flags or {}))
    return merge(data, parse_overrides(overrides, example))


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
