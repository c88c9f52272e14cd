"""``medasr serve``: run the OpenAI-compatible transcription server for a NeMo model.

The options are generated from :class:`~medasr_cli.serve.settings.ServeSettings`: one per
field, named ``--<field-name>`` unless the field's ``json_schema_extra["cli"]`` lists other
names, with the field's description, default and ``MEDASR_<FIELD>`` variable as help. Every
option defaults to None, so a flag given wins over the environment and a flag not given leaves
the value to the environment or the field's default.
"""

from __future__ import annotations

import importlib.util
import inspect
import types
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

import typer

from medasr_cli.cli.common import state
from medasr_cli.core.errors import require

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

HELP = (
    "Serve a NeMo ASR model as an OpenAI-compatible API (POST /v1/audio/transcriptions, "
    "GET /v1/models, /health, /ready, /metrics). Every option can also be set as "
    "MEDASR_<OPTION> in the environment (e.g. MEDASR_MODEL, MEDASR_API_KEYS=k1,k2); "
    "flags win over the environment."
)


def _cli_type(annotation: Any) -> Any:
    """The type Typer parses a field as; pydantic validates the result (Literal and SecretStr
    fields are read as text, so a bad value gets the same one-line error as from the env)."""
    if get_origin(annotation) in (Union, types.UnionType):
        (annotation,) = (a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is list:
        return list[str]
    return annotation if annotation in (bool, int, float) else str


def _shown_default(field: FieldInfo) -> str | None:
    value = field.get_default(call_default_factory=True)
    if value is None or value == []:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _option(name: str, field: FieldInfo) -> inspect.Parameter:
    """The keyword parameter, defaulting to a ``typer.Option``, for one settings field."""
    from medasr_cli.serve.settings import env_var

    cli_type = _cli_type(field.annotation)
    is_list = get_origin(cli_type) is list
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    names = extra.get("cli") or ["--" + name.replace("_", "-")]
    assert isinstance(names, list), f"{name}: json_schema_extra['cli'] must be a list of flags"
    flags = [str(n) for n in names]
    if cli_type is bool:
        flags = [f"{f}/--no-{f[2:]}" if f.startswith("--") else f for f in flags]
    text = field.description or ""
    if is_list:
        text += " Repeatable."
    default = _shown_default(field)
    if field.is_required():
        text += " Required."
    elif default is not None:
        text += f" (default: {default})"
    text += f" (env: {env_var(name)}{', comma-separated' if is_list else ''})"
    text = text.replace("[", "(").replace("]", ")")  # Rich markup would eat [brackets]
    option = typer.Option(None, *flags, help=text, show_default=False)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=cli_type | None
    )


def _options() -> list[inspect.Parameter]:
    """One option per ServeSettings field; none without pydantic-settings (the 'serve' extra)."""
    if importlib.util.find_spec("pydantic_settings") is None:
        return []
    from medasr_cli.serve.settings import ServeSettings

    return [_option(name, field) for name, field in ServeSettings.model_fields.items()]


def serve_command(**flags: Any) -> None:
    """Load the model, warm it up, and serve until SIGTERM/Ctrl-C (in-flight requests finish)."""
    require("pydantic_settings", "serve")
    require("fastapi", "serve")
    from medasr_cli.serve.server import run_server
    from medasr_cli.serve.settings import load_settings

    given = {k: v for k, v in flags.items() if v is not None and v != []}
    if state.verbose and "log_level" not in given:
        given["log_level"] = "debug"
    run_server(load_settings(**given))


# Typer reads the options from the signature; the keyword names are the settings fields.
_OPTIONS = _options()
serve_command.__signature__ = inspect.Signature(_OPTIONS)  # type: ignore[attr-defined]
if not _OPTIONS:
    HELP += " Needs the 'serve' extra: pip install 'medasr\\[serve]'."
