"""Logging set-up owned by the CLI; library modules use ``logging.getLogger(__name__)``."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Route library logs to stderr through Rich; noisy third-party loggers are quietened."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = RichHandler(
        console=Console(stderr=True), show_path=verbose, rich_tracebacks=verbose, markup=False
    )
    root = logging.getLogger("medasr_cli")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if not verbose:
        for name in ("nemo_logger", "nemo", "lightning", "pytorch_lightning", "numba", "httpx"):
            logging.getLogger(name).setLevel(logging.ERROR)
