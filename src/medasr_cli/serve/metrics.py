"""Prometheus metrics, one registry per app (so tests can run several servers in one process).

``nemo_asr_request_latency_seconds_avg`` is the gauge the reference KEDA
ScaledObject queries: the mean latency of requests finished in the last
``window_s`` seconds (0 when idle, so the deployment can scale back down).
"""

from __future__ import annotations

import collections
import threading
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
RTF_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)


class MovingAverage:
    """Mean of the values observed in the last ``window_s`` seconds (thread-safe)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._items: collections.deque[tuple[float, float]] = collections.deque()
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Add one value, stamped now."""
        with self._lock:
            self._items.append((time.monotonic(), value))
            self._expire()

    def value(self) -> float:
        """The current mean (0.0 when nothing happened within the window)."""
        with self._lock:
            self._expire()
            if not self._items:
                return 0.0
            return sum(v for _, v in self._items) / len(self._items)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.window_s
        while self._items and self._items[0][0] < cutoff:
            self._items.popleft()


class ServeMetrics:
    """All metrics of one server."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, latency_window_s: float = 60.0) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        ProcessCollector(registry=reg)  # RSS, CPU, open fds: memory stability is visible
        self.requests = Counter(
            "medasr_requests", "Transcription requests by HTTP status and response_format.",
            ["status", "response_format"], registry=reg,
        )  # fmt: skip
        self.latency = Histogram(
            "medasr_request_latency_seconds", "Transcription request latency (receipt to response).",
            ["response_format"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.audio_seconds = Counter(
            "medasr_audio_seconds", "Seconds of audio transcribed.", registry=reg
        )
        self.rtf = Histogram(
            "medasr_real_time_factor", "Model time / audio time, per batch (lower is faster).",
            buckets=RTF_BUCKETS, registry=reg,
        )  # fmt: skip
        self.batch_size = Histogram(
            "medasr_batch_size", "Audio pieces per model call.", buckets=BATCH_BUCKETS, registry=reg
        )
        self.oom_splits = Counter(
            "medasr_oom_splits",
            "Model calls that ran out of GPU memory and were retried as halves (or alone).",
            registry=reg,
        )
        self.queue_depth = Gauge(
            "medasr_queue_depth", "Audio pieces waiting for the model.", registry=reg
        )
        self.in_flight = Gauge(
            "medasr_requests_in_flight", "Transcription requests being handled.", registry=reg
        )
        self.model_load_seconds = Gauge(
            "medasr_model_load_seconds", "Time to load the model at start-up.", registry=reg
        )
        self.ready = Gauge("medasr_ready", "1 once the model is loaded and warm.", registry=reg)
        self._avg = MovingAverage(latency_window_s)
        avg = Gauge(
            "nemo_asr_request_latency_seconds_avg",
            f"Mean transcription latency over the last {latency_window_s:g} s (KEDA scaling).",
            registry=reg,
        )
        avg.set_function(self._avg.value)

    def observe_request(self, status: int, response_format: str, seconds: float) -> None:
        """Count one finished transcription request."""
        fmt = response_format or "unknown"
        self.requests.labels(status=str(status), response_format=fmt).inc()
        self.latency.labels(response_format=fmt).observe(seconds)
        self._avg.observe(seconds)

    def observe_batch(self, size: int, infer_seconds: float, audio_seconds: float) -> None:
        """Record one model call."""
        self.batch_size.observe(size)
        self.audio_seconds.inc(audio_seconds)
        if audio_seconds > 0:
            self.rtf.observe(infer_seconds / audio_seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
