"""The ``medasr`` command: the root Typer app and error handling."""

from __future__ import annotations

import os
import shlex
import sys

# Idle OpenMP threads sleep instead of spinning. Must be set before torch loads libgomp.
# On a busy or small CPU machine, spinning threads made CPU training 4x slower
# (bench/train_speed.py: 4.5 -> 19.9 utterances/s on 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer
from rich.markup import escape

from medasr_cli import __version__
from medasr_cli.cli import eval as eval_cmd
from medasr_cli.cli import lexicon as lexicon_cmd
from medasr_cli.cli import manifest as manifest_cmd
from medasr_cli.cli import script as script_cmd
from medasr_cli.cli import serve as serve_cmd
from medasr_cli.cli import synth as synth_cmd
from medasr_cli.cli import train as train_cmd
from medasr_cli.cli.common import err_console, state
from medasr_cli.core.errors import MedasrError
from medasr_cli.core.ledger import Interrupted
from medasr_cli.core.logging import setup_logging

app = typer.Typer(
    name="medasr",
    help="Adapt NVIDIA Parakeet TDT to clinical speech with synthetic data, and serve it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medasr {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Debug logs, and full tracebacks on errors."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Only warnings and errors; no progress bars."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """medasr: the clinical speech adaptation loop, one stage per subcommand."""
    state.verbose = verbose
    state.quiet = quiet
    setup_logging(verbose=verbose, quiet=quiet)


app.add_typer(manifest_cmd.app, name="manifest")
app.add_typer(synth_cmd.app, name="synth")
app.command(name="serve", help=serve_cmd.HELP)(serve_cmd.serve_command)
app.command(name="train", help=train_cmd.HELP)(train_cmd.train_command)
app.command(name="eval", help=eval_cmd.HELP, no_args_is_help=True)(eval_cmd.eval_command)
app.command(name="lexicon", help=lexicon_cmd.HELP, no_args_is_help=True)(
    lexicon_cmd.lexicon_command
)
app.command(name="script", help=script_cmd.HELP, no_args_is_help=True)(script_cmd.script_command)


def main() -> None:
    """Console-script entry point: run the app, turning library errors into one line."""
    try:
        app()
    except Interrupted as exc:
        resume = shlex.join(["medasr", *sys.argv[1:]])
        err_console.print(f"[yellow]{escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        err_console.print(f"resume with: {escape(resume)}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except MedasrError as exc:
        if state.verbose:
            err_console.print_exception()
        err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
