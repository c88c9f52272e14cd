"""Server logging: plain or JSON lines, and one structured line per request.

The request line carries id, method, path, status, response_format, audio
duration, latency and batch size. It never carries audio or transcript text
unless ``log_transcripts`` is on: the audio is clinical speech.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from medasr_cli.core.logging import NOISY_LOGGERS

ACCESS_LOGGER = "medasr_cli.serve.access"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and any structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        return line


def configure_logging(level: str = "info", json_logs: bool = False) -> None:
    """Send medasr and uvicorn logs to stderr in one format; quieten third-party chatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else TextFormatter())
    lvl = getattr(logging, level.upper(), logging.INFO)
    for name in ("medasr_cli", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(lvl)
        lg.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # our own request line replaces it
    if lvl > logging.DEBUG:
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


def log_request(fields: dict[str, Any], status: int) -> None:
    """The one line per request (error level for 500s, warning for 503)."""
    level = logging.INFO
    if status >= 500:
        level = logging.WARNING if status == 503 else logging.ERROR
    logging.getLogger(ACCESS_LOGGER).log(level, "request", extra={"fields": fields})
