"""The root command: help, version, and one-line errors with exit codes."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

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


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medasr_cli", *args], capture_output=True, text=True, check=False
    )


def test_bad_input_is_one_line_exit_2(tmp_path) -> None:
    proc = _run("manifest", "validate", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "missing.jsonl" in lines[0] and "not found" in lines[0]
    assert "Traceback" not in proc.stderr


def test_verbose_shows_traceback(tmp_path) -> None:
    proc = _run("--verbose", "manifest", "validate", str(tmp_path / "missing.jsonl"))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
