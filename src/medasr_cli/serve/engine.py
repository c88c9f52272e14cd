"""Dynamic batching: many concurrent requests, one model, one worker thread.

Requests put audio pieces on a bounded queue and await futures. One asyncio
task forms batches (up to ``max_batch_size`` pieces, waiting at most
``max_wait_ms`` for more once the first arrives, or ``max_hold_ms`` while
other requests are still uploading or decoding, and capping padded audio
per batch) and hands each batch to a single-thread executor that owns the
model. The event loop never blocks on inference, and ``transcribe()`` is never
called from two threads. A full queue is refused at once (the caller answers
503 + Retry-After) instead of growing memory without bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from medasr_cli.infer.files import fits
from medasr_cli.infer.runner import InferItem
from medasr_cli.infer.transcript import Transcript

log = logging.getLogger(__name__)

T = TypeVar("T")


class QueueFull(Exception):
    """The engine cannot take more work right now."""


@dataclass(frozen=True)
class PieceResult:
    """A decoded piece, with the batch it ran in (for logs and metrics)."""

    transcript: Transcript
    batch_size: int
    infer_seconds: float


@dataclass
class _Pending:
    item: InferItem
    future: asyncio.Future[PieceResult]


@dataclass(frozen=True)
class EngineLimits:
    """Batching and queueing limits."""

    max_batch_size: int = 16
    max_wait_s: float = 0.01
    queue_size: int = 64
    max_batch_audio_s: float = 1440.0
    max_hold_s: float = 0.05
    """How long a batch that is not full may wait for requests still being received or decoded."""


BatchHook = Callable[[int, float, float], None]
"""Called after each batch with (pieces, inference seconds, audio seconds)."""


class BatchEngine:
    """Queues pieces of audio and runs them through ``infer`` in dynamic batches."""

    def __init__(
        self,
        infer: Callable[[Sequence[InferItem]], list[Transcript]],
        limits: EngineLimits,
        on_batch: BatchHook | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self._infer = infer
        self.limits = limits
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medasr-model")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._incoming = 0

    @property
    def depth(self) -> int:
        """Pieces waiting for the model (not counting the batch running now)."""
        return len(self._queue)

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Mark a request whose audio is on its way (upload, decoding) until it is submitted.

        While any are, a batch that is not full waits for them up to ``max_hold_s``
        instead of ``max_wait_s``: under load, requests that arrive together then run
        together instead of being split by the time their uploads take to decode.
        """
        self._incoming += 1
        self._wakeup.set()  # a batch already waiting switches to max_hold_s
        try:
            yield
        finally:
            self._incoming -= 1
            self._wakeup.set()

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the model thread (loading and warm-up use this too)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def start(self) -> None:
        """Start forming batches."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="medasr-batcher")

    def submit(self, items: Sequence[InferItem]) -> list[asyncio.Future[PieceResult]]:
        """Queue all pieces of one request, or none of them (raises :class:`QueueFull`).

        A request larger than the whole queue is still taken when the queue is
        empty, so very long audio is never refused for its length alone.
        """
        if self._stopping:
            raise QueueFull("server is shutting down")
        if self._queue and len(self._queue) + len(items) > self.limits.queue_size:
            raise QueueFull(f"queue is full ({len(self._queue)} pieces waiting)")
        loop = asyncio.get_running_loop()
        futures = []
        for item in items:
            fut: asyncio.Future[PieceResult] = loop.create_future()
            self._queue.append(_Pending(item, fut))
            futures.append(fut)
        self._report_depth()
        self._wakeup.set()
        return futures

    async def stop(self) -> None:
        """Finish everything already queued, then stop the worker thread."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            try:
                await self._run_batch(batch)
            except Exception as exc:  # never let one bad batch stop the batcher
                log.exception("batch bookkeeping failed")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)

    async def _next_batch(self) -> list[_Pending] | None:
        """Wait for work, then gather a batch within the size, audio and wait limits."""
        while not self._queue:
            if self._stopping:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        batch: list[_Pending] = []
        started = time.monotonic()
        while len(batch) < self.limits.max_batch_size:
            self._drop_cancelled()
            if self._queue and self._fits(batch, self._queue[0].item):
                batch.append(self._queue.popleft())
                continue
            if self._queue or self._stopping:
                break  # the head does not fit: run what we have
            wait = self.limits.max_hold_s if self._incoming else self.limits.max_wait_s
            remaining = started + wait - time.monotonic()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        self._report_depth()
        return batch

    def _fits(self, batch: list[_Pending], item: InferItem) -> bool:
        lengths = [len(p.item.audio) for p in batch]
        return fits(lengths, len(item.audio), self.limits.max_batch_audio_s)

    def _drop_cancelled(self) -> None:
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()

    async def _run_batch(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]
        if not live:
            return
        items = [p.item for p in live]
        started = time.perf_counter()
        try:
            results = await self.call(lambda: self._infer(items))
        except Exception as exc:
            log.exception("batch of %d failed", len(live))
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        audio_s = sum(it.duration for it in items)
        if self._on_batch is not None:
            self._on_batch(len(live), seconds, audio_s)
        for p, res in zip(live, results, strict=True):
            if not p.future.done():
                p.future.set_result(PieceResult(res, len(live), seconds))

    def _report_depth(self) -> None:
        if self._on_depth is not None:
            self._on_depth(len(self._queue))


def describe(limits: EngineLimits) -> dict[str, Any]:
    """Limits as a plain dict (for the start-up log line)."""
    return {
        "max_batch_size": limits.max_batch_size,
        "max_wait_ms": round(limits.max_wait_s * 1000, 1),
        "max_hold_ms": round(limits.max_hold_s * 1000, 1),
        "queue_size": limits.queue_size,
        "max_batch_audio_s": limits.max_batch_audio_s,
    }
