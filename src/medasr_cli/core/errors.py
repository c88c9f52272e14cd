"""Error types that the CLI maps to exit codes.

Library code raises these with one clear, user-facing line; the CLI prints that
line (and the traceback only with ``--verbose``).
"""

from __future__ import annotations


class MedasrError(Exception):
    """A failure while doing the work (exit code 1)."""

    exit_code = 1


class InputError(MedasrError):
    """Bad input from the user: a missing file, a malformed record, a bad option (exit code 2)."""

    exit_code = 2


class MissingExtraError(InputError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this command needs the '{extra}' extra (could not import {module}); "
            f"install it with: pip install 'medasr[{extra}]'"
        )
        self.extra = extra
        self.module = module


def require(module: str, extra: str) -> None:
    """Import ``module`` or raise :class:`MissingExtraError` naming ``extra``."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, module) from exc
