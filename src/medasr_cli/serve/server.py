"""Running the app under uvicorn, with graceful shutdown and fatal start-up errors.

On SIGTERM/SIGINT uvicorn stops accepting connections, waits up to
``shutdown_timeout_s`` for in-flight requests, then the lifespan finishes
queued work. If the model cannot be loaded, the server stops and
:func:`run_server` raises the load error, so ``medasr serve`` exits non-zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import InputError, MedasrError, require
from medasr_cli.serve.settings import ServeSettings

log = logging.getLogger(__name__)


def check_model_path(spec: str) -> None:
    """Fail fast (before binding a port) on a model path that cannot be loaded.

    Anything else (``nvidia/parakeet-tdt-0.6b-v2``) is a hub name that NeMo
    resolves at load time.
    """
    path = Path(spec)
    if path.suffix == ".nemo" and not path.exists():
        raise InputError(f"{path}: model file not found")
    if path.exists() and (path.is_dir() or path.suffix != ".nemo"):
        raise InputError(f"{path}: not a .nemo model file")


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket now, so a busy port is one clear error (exit code 2)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
    sock.set_inheritable(True)
    return sock


def _graceful_server_class(uvicorn: Any) -> Any:
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown, so the process dies by the
    signal; we have already finished in-flight work and stopped cleanly, so exit normally."""

    class GracefulServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    captured = getattr(self, "_captured_signals", None)
                    if isinstance(captured, list) and captured:
                        log.info("stopped on signal %s", ", ".join(map(str, captured)))
                        captured.clear()

    return GracefulServer


def run_server(settings: ServeSettings) -> None:
    """Serve until SIGTERM/SIGINT; raise the model's load error if it never became ready."""
    require("uvicorn", "serve")
    import uvicorn

    from medasr_cli.serve.app import create_app
    from medasr_cli.serve.logs import configure_logging

    configure_logging(settings.log_level, settings.log_json)
    check_model_path(settings.model)
    sock = bind_socket(settings.host, settings.port)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        log_level=settings.log_level,
    )
    server = _graceful_server_class(uvicorn)(config)
    runtime = app.state.runtime

    def fatal(exc: BaseException) -> None:
        server.should_exit = True

    runtime.on_fatal = fatal
    host, port = sock.getsockname()[:2]
    log.info("listening on http://%s:%d (model %s)", host, port, settings.model)
    asyncio.run(server.serve(sockets=[sock]))
    if runtime.load_error is not None:
        err = runtime.load_error
        raise err if isinstance(err, MedasrError) else MedasrError(f"model failed to load: {err}")
