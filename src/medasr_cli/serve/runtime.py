"""Everything one server process owns: settings, metrics, the model runner and the batch engine.

Created by :func:`medasr_cli.serve.app.create_app` and started by its
lifespan. The model loads in the background on the model thread, so
``/health`` answers at once while ``/ready`` (and transcription, with 503 +
Retry-After) wait for load and warm-up to finish.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np
from starlette.datastructures import UploadFile

from medasr_cli.infer.limits import describe as describe_limits
from medasr_cli.infer.runner import ModelRunner
from medasr_cli.serve.decode import DecodeError, DecodeTimeout, TooLong, decode_upload
from medasr_cli.serve.engine import BatchEngine, EngineLimits, describe
from medasr_cli.serve.errors import APIError, bad_request, unavailable
from medasr_cli.serve.metrics import ServeMetrics
from medasr_cli.serve.settings import ServeSettings

log = logging.getLogger(__name__)


class Runtime:
    """The state of one running server (one per app; nothing global)."""

    def __init__(self, settings: ServeSettings, runner: ModelRunner | None = None) -> None:
        self.settings = settings
        self.metrics = ServeMetrics(settings.latency_window_s)
        self.runner = runner or ModelRunner(settings.runner_options())
        self.limits = EngineLimits(
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.max_wait_ms / 1000,
            queue_size=settings.queue_size,
            max_batch_audio_s=settings.max_batch_audio_s,
            max_hold_s=settings.max_hold_ms / 1000,
        )
        self.engine: BatchEngine | None = None
        self.ready = False
        self.load_error: BaseException | None = None
        self.on_fatal: Callable[[BaseException], None] | None = None
        self._load_task: asyncio.Task[None] | None = None
        self._decode_slots: asyncio.Semaphore | None = None

    async def start(self) -> None:
        """Start the batch engine and begin loading the model in the background."""
        self._decode_slots = asyncio.Semaphore(self.settings.decode_concurrency)
        self.engine = BatchEngine(
            self.runner.infer,
            self.limits,
            on_batch=self.metrics.observe_batch,
            on_depth=self.metrics.queue_depth.set,
        )
        self.engine.start()
        self.runner.on_oom = self.metrics.oom_splits.inc
        self._load_task = asyncio.create_task(self._load(), name="medasr-load")

    async def stop(self) -> None:
        """Finish queued work and stop the model thread."""
        self.ready = False
        if self._load_task is not None and not self._load_task.done():
            await asyncio.wait({self._load_task})
        if self.engine is not None:
            await self.engine.stop()

    async def _load(self) -> None:
        assert self.engine is not None
        try:
            seconds = await self.engine.call(self.runner.load)
            self.metrics.model_load_seconds.set(seconds)
            if self.settings.warmup:
                await self.engine.call(self.runner.warmup)
        except Exception as exc:
            self.load_error = exc
            log.error("model %s failed to load: %s", self.settings.model, exc)
            if self.on_fatal is not None:
                self.on_fatal(exc)
            return
        self.ready = True
        self.metrics.ready.set(1)
        log.info(
            "ready: serving %s as %r on %s (load %.1f s)",
            self.settings.model, self.settings.model_id, self.runner.device, seconds,
            extra={"fields": describe(self.limits) | describe_limits(self.runner.limits)},
        )  # fmt: skip

    def require_ready(self) -> BatchEngine:
        """The engine, or 503 while the model loads (or after it failed to)."""
        if self.load_error is not None:
            raise APIError(503, "the model failed to load; see the server log", type="server_error",
                           code="model_unavailable")  # fmt: skip
        if not self.ready or self.engine is None:
            raise unavailable(
                "the model is still loading; retry shortly",
                self.settings.retry_after_s,
                "model_loading",
            )
        return self.engine

    async def decode(self, upload: UploadFile) -> np.ndarray:
        """Decode an upload off the event loop (400 naming ``file`` when it is not audio)."""
        assert self._decode_slots is not None
        limit, timeout = self.settings.max_audio_s, self.settings.decode_timeout_s

        def work() -> np.ndarray:
            return decode_upload(upload.file, limit, timeout)

        async with self._decode_slots:
            try:
                return await asyncio.to_thread(work)
            except TooLong as exc:
                raise bad_request(str(exc), "file", "audio_too_long") from exc
            except DecodeTimeout as exc:
                raise bad_request(str(exc), "file", "decode_timeout") from exc
            except DecodeError as exc:
                raise bad_request(str(exc), "file", "invalid_file_format") from exc
