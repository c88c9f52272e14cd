"""The root command: help, version, and one-line errors with exit codes."""

from __future__ import annotations

from typer.testing import CliRunner

from helpers import error_lines, run_cli
from medasr_cli import __version__
from medasr_cli.cli.app import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("manifest", "eval"):
        assert name in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_bad_input_is_one_line_exit_2(tmp_path) -> None:
    proc = run_cli("manifest", "validate", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert "missing.jsonl" in lines[0] and "not found" in lines[0]
    assert "Traceback" not in proc.stderr


def test_verbose_shows_traceback(tmp_path) -> None:
    proc = run_cli("--verbose", "manifest", "validate", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
