"""Transcribing audio files offline (``eval --model``) through the serving runner.

The same :class:`~medasr_cli.infer.runner.ModelRunner` as ``serve``, the same
cutting of long recordings (:meth:`ModelRunner.plan`) and the same batch
limits (:func:`fits`); files are taken longest first so each batch holds
pieces of similar length (little padding), and decoded only when their batch
is next, so memory holds one batch of audio, not the whole manifest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medasr_cli.core.audio import decode_audio
from medasr_cli.infer.runner import InferItem, ModelRunner
from medasr_cli.infer.transcript import SAMPLE_RATE, Chunk, Transcript, merge_chunks

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BatchLimits:
    """How many pieces, and how much padded audio, one model call may take."""

    max_batch_size: int = 16
    max_batch_audio_s: float = 1440.0


def fits(lengths: Sequence[int], new: int, max_batch_audio_s: float) -> bool:
    """Whether a piece of ``new`` samples joins a batch of ``lengths`` within the padded-audio cap.

    The first piece always fits: a long piece runs alone rather than never.
    """
    if not lengths:
        return True
    longest = max(new, *lengths)
    return longest * (len(lengths) + 1) / SAMPLE_RATE <= max_batch_audio_s


@dataclass
class _File:
    chunks: list[Chunk]
    duration: float
    parts: dict[int, Transcript] = field(default_factory=dict)


def transcribe_paths(
    runner: ModelRunner,
    paths: Sequence[str | Path],
    durations: Sequence[float | None],
    *,
    limits: BatchLimits = BatchLimits(),
    keywords: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> list[Transcript]:
    """Transcribe files (any format ffmpeg reads) in input order; ``durations`` only sort them."""
    order = sorted(range(len(paths)), key=lambda i: -(durations[i] or 0.0))
    results: dict[int, Transcript] = {}
    files: dict[int, _File] = {}
    batch: list[tuple[int, int, InferItem]] = []

    def run_batch() -> None:
        transcripts = runner.infer([item for _, _, item in batch])
        for (i, k, _), t in zip(batch, transcripts, strict=True):
            f = files[i]
            f.parts[k] = t
            if len(f.parts) == len(f.chunks):
                parts = [f.parts[j] for j in range(len(f.chunks))]
                results[i] = merge_chunks(f.chunks, parts, f.duration)
                del files[i]
        batch.clear()
        if progress is not None:
            progress(len(results), len(paths))

    for i in order:
        audio = decode_audio(paths[i])
        duration = len(audio) / SAMPLE_RATE
        chunks = runner.plan(duration)
        files[i] = _File(chunks, duration)
        for k, c in enumerate(chunks):
            piece = audio[round(c.start * SAMPLE_RATE) : round(c.end * SAMPLE_RATE)]
            lengths = [len(it.audio) for _, _, it in batch]
            if len(batch) >= limits.max_batch_size or not fits(
                lengths, len(piece), limits.max_batch_audio_s
            ):
                run_batch()
            batch.append((i, k, InferItem(piece, keywords)))
    if batch:
        run_batch()
    return [results[i] for i in range(len(paths))]
