"""``medasr serve``: an OpenAI-compatible transcription API for NeMo ASR models.

Library entry points: :func:`create_app` (an ASGI app for given settings),
:func:`run_server` (uvicorn with graceful shutdown) and :class:`ServeSettings`.
FastAPI and uvicorn are imported only when these are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medasr_cli.serve.app import create_app
    from medasr_cli.serve.server import run_server
    from medasr_cli.serve.settings import ServeSettings, load_settings

__all__ = ["ServeSettings", "create_app", "load_settings", "run_server"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from medasr_cli.serve.app import create_app

        return create_app
    if name == "run_server":
        from medasr_cli.serve.server import run_server

        return run_server
    if name in ("ServeSettings", "load_settings"):
        from medasr_cli.serve import settings

        return getattr(settings, name)
    raise AttributeError(name)
