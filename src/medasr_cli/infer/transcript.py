"""Timed transcripts: words and segments from the TDT decoder, and long audio in chunks.

NeMo's ``transcribe(..., timestamps=True)`` puts ``hyp.timestamp['word']`` and
``['segment']`` on each Hypothesis, each item with frame offsets and ``start``
/``end`` in seconds (offset x window stride x subsampling factor). This module
turns them into plain dataclasses, cuts audio that is longer than one pass into
overlapping chunks, and stitches the chunk results back together so that no
word is lost or doubled at a boundary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

SAMPLE_RATE = 16000
SEGMENT_END = (".", "?", "!")


@dataclass(frozen=True)
class Word:
    """One decoded word with its start and end in seconds."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Segment:
    """A run of words (a sentence where the model punctuates) with its time span."""

    text: str
    start: float
    end: float


@dataclass
class Transcript:
    """The decoded text of one audio piece, with word and segment times in seconds."""

    text: str
    duration: float
    words: list[Word] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class Chunk:
    """A slice of a longer recording, and the time span whose words it is responsible for."""

    start: float
    end: float
    keep_from: float
    keep_to: float


def _seconds(value: Any) -> float:
    """NeMo gives floats, or 0-d tensors on some paths (e.g. with biasing)."""
    return float(value.item() if hasattr(value, "item") else value)


def from_hypothesis(hyp: Any, duration: float) -> Transcript:
    """Build a :class:`Transcript` from a NeMo Hypothesis decoded with timestamps."""
    text = hyp if isinstance(hyp, str) else str(getattr(hyp, "text", "") or "")
    stamps = getattr(hyp, "timestamp", None)
    stamps = stamps if isinstance(stamps, dict) else {}
    words = [
        Word(str(w["word"]).strip(), _clamp(w["start"], duration), _clamp(w["end"], duration))
        for w in stamps.get("word", [])
        if str(w.get("word", "")).strip()
    ]
    segments = [
        Segment(str(s["segment"]).strip(), _clamp(s["start"], duration), _clamp(s["end"], duration))
        for s in stamps.get("segment", [])
        if str(s.get("segment", "")).strip()
    ]
    return Transcript(text=text.strip(), duration=duration, words=words, segments=segments)


def _clamp(value: Any, duration: float) -> float:
    """Seconds within the audio, to the millisecond (NeMo's last frame may pass the end)."""
    return min(round(max(_seconds(value), 0.0), 3), round(duration, 3))


def plan_chunks(duration: float, max_pass_s: float, overlap_s: float) -> list[Chunk]:
    """One chunk up to ``max_pass_s``; otherwise overlapping chunks of at most that length.

    Neighbouring chunks overlap by ``overlap_s``; each keeps the words whose
    centre lies in its half of the overlap, so a word cut by one chunk's edge
    is taken whole from the other chunk.
    """
    if duration <= max_pass_s:
        return [Chunk(0.0, duration, -math.inf, math.inf)]
    overlap = min(overlap_s, max_pass_s / 2)
    step = max_pass_s - overlap
    count = math.ceil((duration - overlap) / step)
    starts = [i * step for i in range(count)]
    chunks = []
    for i, start in enumerate(starts):
        end = min(start + max_pass_s, duration)
        keep_from = -math.inf if i == 0 else start + overlap / 2
        keep_to = math.inf if i == count - 1 else starts[i + 1] + overlap / 2
        chunks.append(Chunk(start, end, keep_from, keep_to))
    return chunks


def keep_chunk_words(chunk: Chunk, part: Transcript) -> list[Word]:
    """The words of one chunk's transcript that this chunk owns, shifted to recording time."""
    kept = []
    for w in part.words:
        start, end = w.start + chunk.start, w.end + chunk.start
        centre = (start + end) / 2
        if chunk.keep_from <= centre < chunk.keep_to:
            kept.append(Word(w.text, round(start, 3), round(end, 3)))
    return kept


def merge_chunks(
    chunks: Sequence[Chunk], parts: Sequence[Transcript], duration: float
) -> Transcript:
    """Stitch chunk transcripts into one; a single chunk is returned as decoded."""
    if len(parts) == 1:
        return parts[0]
    words: list[Word] = []
    for chunk, part in zip(chunks, parts, strict=True):
        words.extend(keep_chunk_words(chunk, part))
    text = " ".join(w.text for w in words)
    return Transcript(
        text=text, duration=duration, words=words, segments=segments_from_words(words)
    )


def segments_from_words(words: Iterable[Word]) -> list[Segment]:
    """Group words into segments ending at sentence punctuation (NeMo's own rule)."""
    segments: list[Segment] = []
    current: list[Word] = []
    for w in words:
        current.append(w)
        if w.text.endswith(SEGMENT_END):
            segments.append(_segment(current))
            current = []
    if current:
        segments.append(_segment(current))
    return segments


def _segment(words: Sequence[Word]) -> Segment:
    return Segment(" ".join(w.text for w in words), words[0].start, words[-1].end)


def split_long_segments(t: Transcript, max_s: float) -> list[Segment]:
    """Segments no longer than ``max_s`` where words allow (long unpunctuated runs become captions)."""
    out: list[Segment] = []
    for seg in t.segments:
        if seg.end - seg.start <= max_s:
            out.append(seg)
            continue
        inside = [w for w in t.words if w.start >= seg.start - 1e-6 and w.end <= seg.end + 1e-6]
        if not inside:
            out.append(seg)
            continue
        current: list[Word] = []
        for w in inside:
            if current and w.end - current[0].start > max_s:
                out.append(_segment(current))
                current = []
            current.append(w)
        out.append(_segment(current))
    return out
