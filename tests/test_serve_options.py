"""``medasr serve``'s options are generated from ``ServeSettings``: one per field, with the
field's description and ``MEDASR_<FIELD>`` as help, and flags winning over the environment.

The command runs in-process with Typer's CliRunner. ``medasr_cli.serve.server.run_server`` is
replaced by a function that records the settings it is given; that stand-in only keeps uvicorn
and the model from starting. Everything before it (option parsing, the environment,
``load_settings``' validation) is the real code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

pytest.importorskip("pydantic_settings")
pytest.importorskip("fastapi")

from medasr_cli.cli.app import app
from medasr_cli.serve.settings import ServeSettings

# Flags spelt other than --<field-name> (docs, deploy files and scripts use these spellings).
SPELLED = {
    "model": ["--model", "-m"],
    "port": ["--port", "-p"],
    "model_aliases": ["--model-alias"],
    "api_keys": ["--api-key"],
    "cors_origins": ["--cors-origin"],
}


def _serve_params() -> list[Any]:
    return typer.main.get_command(app).commands["serve"].params  # type: ignore[attr-defined]


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``medasr [root args] serve ...`` with an environment of only the given MEDASR_*
    variables; return the ServeSettings that would have been served."""
    for key in [k for k in os.environ if k.startswith("MEDASR_")]:
        monkeypatch.delenv(key)
    served: list[ServeSettings] = []
    monkeypatch.setattr("medasr_cli.serve.server.run_server", served.append)

    def run(*args: str, env: dict[str, str] | None = None, root: tuple[str, ...] = ()) -> Any:
        res = CliRunner().invoke(app, [*root, "serve", *args], env=env)
        assert res.exit_code == 0, (res.output, res.exception)
        return served.pop()

    return run


def test_each_field_is_one_option_with_its_description_and_env_var() -> None:
    params = _serve_params()
    options = {p.name: p for p in params}
    assert len(options) == len(params)  # no two options for one field
    assert set(options) == set(ServeSettings.model_fields)
    for name, field in ServeSettings.model_fields.items():
        opt = options[name]
        assert opt.opts == SPELLED.get(name, ["--" + name.replace("_", "-")]), name
        assert opt.default is None and not opt.required, name  # unset = env or field default
        assert field.description, f"{name}: the description is the option's help"
        shown = field.description.replace("[", "(").replace("]", ")")  # as Rich cannot eat it
        assert shown in opt.help, name
        assert f"MEDASR_{name.upper()}" in opt.help, name
        if field.annotation is bool:
            assert opt.secondary_opts == ["--no-" + opt.opts[0][2:]], name
        assert opt.multiple == (getattr(field.annotation, "__origin__", None) is list), name


def test_help_shows_options_defaults_and_variables() -> None:
    res = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert res.exit_code == 0
    text = " ".join(res.output.split())
    for flag in ("--max-upload-mb", "--api-key", "--no-warmup", "--no-keyword-boosting", "-m"):
        assert flag in text
    assert "(default: 25) (env: MEDASR_MAX_UPLOAD_MB)" in text
    assert "(default: on) (env: MEDASR_WARMUP)" in text
    assert "cuda(:N)" in text  # brackets survive Rich markup, as parentheses
    assert "Repeatable. (env: MEDASR_API_KEYS, comma-separated)" in text


def test_flags_win_over_the_environment(serve: Any) -> None:
    env = {"MEDASR_MODEL": "env.nemo", "MEDASR_PORT": "7000", "MEDASR_API_KEYS": "e1,e2"}
    s = serve("-m", "flag.nemo", "--port", "9000", "--api-key", "f1", env=env)
    assert (s.model, s.port, s.api_key_values()) == ("flag.nemo", 9000, [b"f1"])


def test_unset_flags_leave_the_environment_and_defaults(serve: Any) -> None:
    env = {"MEDASR_MODEL": "env.nemo", "MEDASR_MAX_BATCH_SIZE": "3", "MEDASR_WARMUP": "false"}
    s = serve("--port", "9000", env=env)
    assert (s.model, s.max_batch_size, s.warmup) == ("env.nemo", 3, False)
    assert (s.host, s.max_upload_mb, s.keyword_boosting) == ("127.0.0.1", 25.0, True)
    assert s.model_aliases == [] and s.cpu_threads is None


def test_repeated_list_options_give_lists(serve: Any) -> None:
    s = serve("-m", "x.nemo", "--model-alias", "whisper-1", "--model-alias", "gpt-4o-transcribe",
              "--cors-origin", "https://a.example", "--api-key", "k1", "--api-key", "k2")  # fmt: skip
    assert s.model_aliases == ["whisper-1", "gpt-4o-transcribe"]
    assert s.cors_origins == ["https://a.example"]
    assert s.api_key_values() == [b"k1", b"k2"]


def test_bool_flags_both_ways(serve: Any) -> None:
    assert serve("-m", "x.nemo", "--no-warmup").warmup is False
    env = {"MEDASR_WARMUP": "false", "MEDASR_LOG_JSON": "true"}
    s = serve("-m", "x.nemo", "--warmup", "--no-log-json", env=env)
    assert s.warmup is True and s.log_json is False


def test_verbose_means_debug_unless_a_log_level_is_given(serve: Any) -> None:
    assert serve("-m", "x.nemo").log_level == "info"
    assert serve("-m", "x.nemo", root=("--verbose",)).log_level == "debug"
    assert serve("-m", "x.nemo", "--log-level", "warning", root=("-v",)).log_level == "warning"


def test_a_bad_flag_value_is_a_one_line_settings_error(serve: Any) -> None:
    from medasr_cli.core.errors import InputError

    res = CliRunner().invoke(app, ["serve", "-m", "x.nemo", "--precision", "fp8"])
    assert isinstance(res.exception, InputError)
    assert "MEDASR_PRECISION" in str(res.exception)


def test_without_pydantic_settings_serve_names_the_extra() -> None:
    """A base install (no 'serve' extra) still starts, and ``medasr serve`` says what to install."""
    code = (
        "import sys; sys.modules['pydantic_settings'] = None; sys.argv = ['medasr', *sys.argv[1:]];"
        "from medasr_cli.cli.app import main; main()"
    )
    run = [sys.executable, "-c", code]
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    helped = subprocess.run([*run, "serve", "--help"], capture_output=True, text=True, env=env,
                            check=False, timeout=120)  # fmt: skip
    assert helped.returncode == 0 and "medasr[serve]" in helped.stdout
    proc = subprocess.run([*run, "serve"], capture_output=True, text=True, env=env, check=False,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "'serve' extra" in proc.stderr, proc.stderr
