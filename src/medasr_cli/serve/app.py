"""The FastAPI app factory: ``create_app(settings)``.

Nothing is global: each app gets its own :class:`Runtime` (model runner, batch
engine, metrics registry), so tests can start several servers with different
settings in one process. The lifespan starts the engine and loads the model in
the background (``/health`` answers at once; ``/ready`` once warm), and on
shutdown finishes queued work before the model thread stops.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from medasr_cli import __version__
from medasr_cli.infer.runner import ModelRunner
from medasr_cli.serve import ops, routes
from medasr_cli.serve.errors import install_error_handlers
from medasr_cli.serve.middleware import RequestContextMiddleware
from medasr_cli.serve.runtime import Runtime
from medasr_cli.serve.settings import ServeSettings

log = logging.getLogger(__name__)


def create_app(settings: ServeSettings, runner: ModelRunner | None = None) -> FastAPI:
    """Build the server app for ``settings`` (``runner`` replaces the model runner, e.g. in tests)."""
    runtime = Runtime(settings, runner)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _warn_if_open(settings)
        await runtime.start()
        try:
            yield
        finally:
            log.info("shutting down: finishing queued work")
            await runtime.stop()
            log.info("stopped")

    app = FastAPI(
        title="medasr serve",
        version=__version__,
        summary="OpenAI-compatible speech-to-text for NeMo ASR models.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.include_router(ops.router)
    app.include_router(routes.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=runtime.metrics)
    return app


def _warn_if_open(settings: ServeSettings) -> None:
    if not settings.api_key_values():
        log.warning(
            "no API keys configured: the server accepts any client "
            "(set --api-key or MEDASR_API_KEYS to require one)"
        )
