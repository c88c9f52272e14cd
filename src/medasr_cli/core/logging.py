"""Logging set-up owned by the CLI; library modules use ``logging.getLogger(__name__)``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

# Third-party loggers kept to errors on the terminal unless --verbose (NeMo resets its own level
# when it is imported: :func:`quiet_nemo` puts it back).
NOISY_LOGGERS = (
    "nemo_logger", "nemo", "lightning", "pytorch_lightning", "numba", "httpx", "multipart",
    "nv_one_logger",
)  # fmt: skip
_library_logs_in_file = False  # set while library_logs_to() sends them to a run's log file


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
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def quiet_nemo() -> None:
    """Keep NeMo's own logger (which resets its level on import) to errors unless debugging.

    Called right before a NeMo model is loaded (eval, serve, train --init). Inside
    :func:`library_logs_to` NeMo's logs go to the run's log file instead, whole.
    """
    if _library_logs_in_file or logging.getLogger("medasr_cli").isEnabledFor(logging.DEBUG):
        return
    try:
        from nemo.utils import logging as nemo_logging

        nemo_logging.setLevel(logging.ERROR)
    except Exception:  # NeMo missing or changed: nothing to quieten
        return


# Loggers of the libraries a training run drives; their INFO chatter is for the run's log file.
LIBRARY_LOGGERS = (
    "nemo_logger", "lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning",
    "DeepSpeed", "py.warnings", "mlflow", "alembic", "numba", "nv_one_logger",
)  # fmt: skip


def _to_terminal(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(
        handler, logging.FileHandler
    )


def _import_loggers() -> None:
    """Import the libraries whose import attaches terminal handlers to their loggers, so that
    the handlers exist before they are moved (the training run imports them anyway)."""
    import importlib

    for module in ("nemo.utils", "lightning.pytorch", "pytorch_lightning", "mlflow"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    with contextlib.suppress(ImportError):
        import torch

        if torch.cuda.is_available():  # DeepSpeed is imported only for GPU training
            importlib.import_module("deepspeed")


@contextlib.contextmanager
def native_stderr_to_log(logger: logging.Logger) -> Iterator[None]:
    """Output that native code writes to file descriptor 2 (SentencePiece's trainer, say)
    becomes DEBUG lines of ``logger`` instead of terminal noise."""
    import os
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                logger.debug("%s", line)


@contextlib.contextmanager
def library_logs_to(log_file: Path, *, verbose: bool = False) -> Iterator[None]:
    """NeMo's, Lightning's and DeepSpeed's logs and Python warnings go to ``log_file``.

    The terminal keeps medasr's own messages, progress bar and summaries; the
    libraries' INFO lines (optimizer dumps, "CUDA graphs disabled" at every
    validation, NeMo's "WER reference/predicted" lines) are in the file, which
    every process of the run appends to. With ``verbose`` nothing is moved:
    everything also shows on the terminal.
    """
    if verbose:
        yield
        return
    _import_loggers()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    try:  # NeMo attaches its own stdout/stderr handlers when it is first imported
        from nemo.utils import logging as nemo_logging

        nemo_logging.remove_stream_handlers()
    except ImportError:
        nemo_logging = None
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.level, logger.propagate))
        logger.handlers = [h for h in logger.handlers if not _to_terminal(h)] + [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
    logging.captureWarnings(True)
    global _library_logs_in_file
    _library_logs_in_file = True
    try:
        yield
    finally:
        _library_logs_in_file = False
        logging.captureWarnings(False)
        for logger, handlers, level, propagate in saved:
            logger.handlers, logger.level, logger.propagate = handlers, level, propagate
        if nemo_logging is not None:
            nemo_logging.add_stream_handlers()
        handler.close()
