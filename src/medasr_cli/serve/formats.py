"""Rendering a transcript in each of OpenAI's ``response_format`` values.

json and verbose_json are JSON; text, srt and vtt are plain text bodies with
their own media type (never a JSON-quoted string). verbose_json carries real
segment and word times from the TDT decoder; the Whisper-only fields
(``avg_logprob``, ``no_speech_prob``, ``seek``) have neutral values because a
transducer does not produce them.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from medasr_cli.infer.transcript import Segment, Transcript, Word, split_long_segments

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
MEDIA_TYPES = {
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
LANGUAGE_NAMES = {"en": "english"}

Tokenize = Callable[[str], list[int]]


def usage(duration: float) -> dict[str, Any]:
    """OpenAI's duration usage object (seconds rounded up, as billed)."""
    return {"type": "duration", "seconds": math.ceil(duration)}


def render(
    t: Transcript,
    response_format: str,
    *,
    granularities: Sequence[str] = (),
    language: str = "en",
    temperature: float = 0.0,
    max_segment_s: float = 30.0,
    tokenize: Tokenize | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The HTTP response for ``response_format``."""
    if response_format == "json":
        return JSONResponse({"text": t.text, "usage": usage(t.duration)}, headers=headers)
    segments = split_long_segments(t, max_segment_s)
    if response_format == "verbose_json":
        body = verbose_json(t, segments, granularities, language, temperature, tokenize)
        return JSONResponse(body, headers=headers)
    if response_format == "text":
        content = t.text + "\n" if t.text else ""
    elif response_format == "srt":
        content = srt(segments)
    else:
        content = vtt(segments)
    return PlainTextResponse(content, media_type=MEDIA_TYPES[response_format], headers=headers)


def verbose_json(
    t: Transcript,
    segments: Sequence[Segment],
    granularities: Sequence[str],
    language: str,
    temperature: float,
    tokenize: Tokenize | None,
) -> dict[str, Any]:
    """OpenAI's ``TranscriptionVerbose``: segments by default, words when asked for."""
    wanted = set(granularities) or {"segment"}
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": LANGUAGE_NAMES.get(language, language),
        "duration": round(t.duration, 3),
        "text": t.text,
    }
    if "segment" in wanted:
        body["segments"] = [
            _segment_json(i, s, temperature, tokenize) for i, s in enumerate(segments)
        ]
    if "word" in wanted:
        body["words"] = [_word_json(w) for w in t.words]
    body["usage"] = usage(t.duration)
    return body


def _segment_json(
    i: int, s: Segment, temperature: float, tokenize: Tokenize | None
) -> dict[str, Any]:
    return {
        "id": i,
        "seek": 0,
        "start": s.start,
        "end": s.end,
        "text": s.text,
        "tokens": tokenize(s.text) if tokenize else [],
        "temperature": temperature,
        "avg_logprob": 0.0,
        "compression_ratio": compression_ratio(s.text),
        "no_speech_prob": 0.0,
    }


def _word_json(w: Word) -> dict[str, Any]:
    return {"word": w.text, "start": w.start, "end": w.end}


def compression_ratio(text: str) -> float:
    """Whisper's repetition check: raw bytes / zlib-compressed bytes."""
    raw = text.encode("utf-8")
    return round(len(raw) / len(zlib.compress(raw)), 4) if raw else 0.0


def _clock(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(segments: Sequence[Segment]) -> str:
    """SubRip captions, one cue per segment."""
    cues = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def vtt(segments: Sequence[Segment]) -> str:
    """WebVTT captions, one cue per segment."""
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)


def sse(event: dict[str, Any]) -> bytes:
    """One Server-Sent Event carrying a JSON object."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


def text_pieces(text: str) -> list[str]:
    """Split text into word pieces that concatenate back to exactly ``text``."""
    return re.findall(r"\s*\S+", text)


def delta_events(pieces: Sequence[str]) -> Iterator[bytes]:
    """``transcript.text.delta`` events, one per word piece."""
    for piece in pieces:
        yield sse({"type": "transcript.text.delta", "delta": piece})


def done_event(text: str) -> bytes:
    """The closing ``transcript.text.done`` event with the full text."""
    return sse({"type": "transcript.text.done", "text": text})
