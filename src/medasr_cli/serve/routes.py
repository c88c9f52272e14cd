"""``POST /v1/audio/transcriptions``: OpenAI's transcription endpoint over the batch engine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from medasr_cli.infer.runner import InferItem, PieceTooLarge
from medasr_cli.infer.transcript import (
    SAMPLE_RATE,
    Chunk,
    Transcript,
    keep_chunk_words,
    merge_chunks,
)
from medasr_cli.serve.engine import PieceResult, QueueFull
from medasr_cli.serve.errors import APIError, unavailable
from medasr_cli.serve.formats import delta_events, done_event, render, sse, text_pieces
from medasr_cli.serve.ops import get_runtime, require_api_key
from medasr_cli.serve.params import parse_params
from medasr_cli.serve.runtime import Runtime
from medasr_cli.serve.upload import check_content_type, read_form

log = logging.getLogger(__name__)
router = APIRouter()

Futures = list["asyncio.Future[PieceResult]"]


@router.post("/v1/audio/transcriptions")
async def create_transcription(request: Request) -> Response:
    """Transcribe one uploaded file (multipart form, as OpenAI's API and SDKs send it)."""
    rt = get_runtime(request)
    require_api_key(request)
    engine = rt.require_ready()
    check_content_type(request)
    with engine.incoming():  # a batch forming now may wait for this request's audio
        form = await read_form(request, rt.settings.max_upload_bytes)
        try:
            params = parse_params(form, rt.settings)
            request.state.response_format = params.response_format
            assert form.file is not None
            audio = await rt.decode(form.file)
        finally:
            await form.close()
        duration = len(audio) / SAMPLE_RATE
        request.state.audio_s = round(duration, 3)
        chunks = rt.runner.plan(duration, rt.settings.stream_chunk_s if params.stream else None)
        request.state.chunks = len(chunks)
        try:
            futures = engine.submit(_pieces(audio, chunks, params.keywords))
        except QueueFull as exc:
            raise unavailable(f"server is busy: {exc}; retry shortly", rt.settings.retry_after_s,
                              "server_overloaded") from exc  # fmt: skip
    if params.stream:
        body = _stream(request, rt, chunks, futures, duration)
        return StreamingResponse(body, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})  # fmt: skip
    results = await _gather(futures)
    transcript = merge_chunks(chunks, [r.transcript for r in results], duration)
    _note_result(request, rt, results, transcript.text)
    return render(
        transcript,
        params.response_format,
        granularities=params.granularities,
        language=params.language,
        temperature=params.temperature,
        max_segment_s=rt.settings.max_segment_s,
        tokenize=rt.runner.tokenize,
    )


def _pieces(
    audio: np.ndarray, chunks: Sequence[Chunk], keywords: tuple[str, ...]
) -> list[InferItem]:
    return [
        InferItem(audio[round(c.start * SAMPLE_RATE) : round(c.end * SAMPLE_RATE)], keywords)
        for c in chunks
    ]


async def _gather(futures: Futures) -> list[PieceResult]:
    """All chunk results; if one fails or the request is cancelled, drop the rest."""
    try:
        return list(await asyncio.gather(*futures))
    except PieceTooLarge as exc:
        raise too_large(exc) from exc
    finally:  # a no-op on finished futures
        for f in futures:
            f.cancel()


def too_large(exc: PieceTooLarge) -> APIError:
    """413: the audio cannot be decoded in this server's free memory, however it is split."""
    return APIError(413, str(exc), param="file", code="audio_too_long")


def _note_result(request: Request, rt: Runtime, results: Sequence[PieceResult], text: str) -> None:
    """Fields for the request's log line (text only with ``log_transcripts``)."""
    request.state.batch_size = max(r.batch_size for r in results)
    if rt.settings.log_transcripts:
        request.state.text = text


async def _stream(
    request: Request, rt: Runtime, chunks: Sequence[Chunk], futures: Futures, duration: float
) -> AsyncIterator[bytes]:
    """SSE: ``transcript.text.delta`` events as each chunk finishes, then ``transcript.text.done``."""
    results: list[PieceResult] = []
    pieces: list[str] = []
    try:
        for chunk, fut in zip(chunks, futures, strict=True):
            res = await fut
            results.append(res)
            new = _chunk_pieces(chunk, res.transcript, len(chunks) == 1, first=not pieces)
            pieces.extend(new)
            for event in delta_events(new):
                yield event
        text = "".join(pieces)
        _note_result(request, rt, results, text)
        yield done_event(text)
    except PieceTooLarge as exc:
        request.state.error_code = "audio_too_long"
        yield sse(too_large(exc).body())
    except Exception:
        rid = getattr(request.state, "request_id", "?")
        log.exception("stream failed", extra={"fields": {"request_id": rid}})
        request.state.stream_failed = True  # the 200 went out first: count and log it as a 500
        request.state.error_code = "internal_error"
        yield sse({"error": {"message": f"transcription failed (request id {rid})",
                             "type": "server_error", "param": None, "code": "internal_error"}})  # fmt: skip
    finally:
        for f in futures:
            f.cancel()


def _chunk_pieces(chunk: Chunk, part: Transcript, single: bool, first: bool) -> list[str]:
    if single:
        return text_pieces(part.text)
    words = keep_chunk_words(chunk, part)
    return [w.text if first and i == 0 else " " + w.text for i, w in enumerate(words)]
