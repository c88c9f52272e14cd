"""Reading the multipart upload without ever holding an unbounded body.

The ``Content-Length`` header is checked before a byte is read; the body is
then streamed through a counter into Starlette's multipart parser (file parts
spool to a temporary file), and reading stops with 413 as soon as the count
passes the limit, so a client sending 10 GB is cut off after the limit, not
after 10 GB. Form fields come from the multipart body only, never from the
query string.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from medasr_cli.serve.errors import APIError, bad_request

FIELD_ALLOWANCE = 64 * 1024  # room for the non-file fields and multipart framing
MAX_FIELD_BYTES = 64 * 1024


def too_large(limit: int) -> APIError:
    """413 in OpenAI's shape."""
    mib = limit / (1024 * 1024)
    return APIError(
        413,
        f"the upload is larger than the limit of {mib:g} MiB",
        param="file",
        code="file_too_large",
    )


@dataclass
class TranscriptionForm:
    """The fields of ``POST /v1/audio/transcriptions`` as sent (strings, lists for ``[]`` fields)."""

    file: UploadFile | None
    fields: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        """A single-valued field, or None when absent."""
        return self.fields.get(name)

    def get_list(self, name: str) -> list[str]:
        """A repeated field, sent as ``name[]`` (OpenAI SDK) or ``name`` (curl)."""
        return self.lists.get(name, [])

    async def close(self) -> None:
        """Release the spooled file."""
        if self.file is not None:
            await self.file.close()


def check_content_type(request: Request) -> None:
    """415 unless the request is ``multipart/form-data`` (what OpenAI's API takes)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise APIError(
            415,
            f"unsupported content type '{ctype or 'none'}': send multipart/form-data "
            "with the audio in the 'file' field",
            code="unsupported_media_type",
        )


async def read_form(request: Request, limit: int) -> TranscriptionForm:
    """Parse the multipart body with a hard byte limit (raises 413/400 as :class:`APIError`)."""
    body_limit = limit + FIELD_ALLOWANCE
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > body_limit:
        raise too_large(limit)
    parser = MultiPartParser(
        request.headers,
        _limited(request.stream(), body_limit, limit),
        max_files=1,
        max_fields=64,
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        data = await parser.parse()
    except MultiPartException as exc:
        raise bad_request(
            f"malformed multipart body: {exc.message}", None, "invalid_multipart"
        ) from exc
    form = _collect(data)
    if form.file is not None and (form.file.size or 0) > limit:
        await form.close()
        raise too_large(limit)
    return form


async def _limited(
    stream: AsyncIterator[bytes], body_limit: int, limit: int
) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > body_limit:
            raise too_large(limit)
        yield chunk


def _collect(data: FormData) -> TranscriptionForm:
    form = TranscriptionForm(file=None)
    for key, value in data.multi_items():
        if isinstance(value, UploadFile):
            if key == "file":
                form.file = value
            continue
        if key.endswith("[]"):
            form.lists.setdefault(key[:-2], []).append(value)
        elif key in ("timestamp_granularities", "keywords", "include", "languages"):
            form.lists.setdefault(key, []).append(value)
        else:
            form.fields[key] = value
    return form
