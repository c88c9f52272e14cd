"""URL helpers shared by the OpenAI-compatible clients (``eval --endpoint``, ``script --base-url``)."""

from __future__ import annotations

from urllib.parse import urlparse

from medasr_cli.core.errors import InputError


def openai_base_url(url: str, option: str) -> str:
    """Accept ``http://host:port`` or ``http://host:port/v1``; the SDK wants the ``/v1`` base.

    ``option`` names the flag the URL came from, for the error line.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InputError(f"{option}: '{url}' is not an http(s) URL")
    return url.rstrip("/") + "/v1" if parsed.path in ("", "/") else url.rstrip("/")
