"""Per-request context: request id, the one log line, transcription metrics, and 500s.

A plain ASGI middleware (not ``BaseHTTPMiddleware``) so streamed responses
pass through untouched and the log line is written when the body has really
been sent. An exception that escapes a route becomes OpenAI's 500 shape with
the request id in the message, and is logged with its traceback. A stream
that fails after its 200 header went out is counted and logged as a 500.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medasr_cli.serve.errors import internal_error
from medasr_cli.serve.logs import log_request
from medasr_cli.serve.metrics import ServeMetrics

log = logging.getLogger(__name__)

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _request_id(scope: Scope) -> str:
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            given = value.decode("latin-1")
            if _SAFE_ID.match(given):
                return given
    return "req_" + uuid.uuid4().hex


class RequestContextMiddleware:
    """Adds ``x-request-id``, logs one line per request, counts transcription requests."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = rid
        started = time.perf_counter()
        status = {"code": 500, "started": False}
        is_asr = scope.get("path") == TRANSCRIPTIONS_PATH
        if is_asr:
            self.metrics.in_flight.inc()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"fields": {"request_id": rid}})
            if not status["started"]:
                await internal_error(rid).response()(scope, receive, send_with_id)
            status["code"] = 500
        finally:
            if is_asr:
                self.metrics.in_flight.dec()
            if state.get("stream_failed"):  # headers said 200, but the body ended in an error
                status["code"] = 500
            self._finish(scope, state, rid, int(status["code"]), time.perf_counter() - started)

    def _finish(
        self, scope: Scope, state: dict[str, Any], rid: str, code: int, seconds: float
    ) -> None:
        fields: dict[str, Any] = {
            "request_id": rid,
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": code,
            "latency_s": round(seconds, 4),
        }
        for key in ("response_format", "audio_s", "batch_size", "chunks", "error_code", "text"):
            if key in state:
                fields[key] = state[key]
        if scope.get("path") == TRANSCRIPTIONS_PATH:
            self.metrics.observe_request(
                code, str(state.get("response_format", "unknown")), seconds
            )
        if scope.get("path") not in ("/health", "/ready", "/metrics") or code == 500:
            log_request(fields, code)
