"""Where hypotheses come from: ``pred_text`` in the manifest, a NeMo model, or an endpoint."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from medasr_cli.core.errors import InputError, MedasrError
from medasr_cli.core.jsonl import read_records
from medasr_cli.core.records import ManifestEntry
from medasr_cli.core.urls import openai_base_url
from medasr_cli.evaluate.metrics import Pair
from medasr_cli.infer.files import BatchLimits, transcribe_paths
from medasr_cli.infer.limits import describe as describe_limits
from medasr_cli.infer.runner import ModelRunner, RunnerOptions

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def check_audio_exists(path: str | Path, entries: Sequence[tuple[int, ManifestEntry]]) -> None:
    """Fail with ``manifest:line`` before any slow work if an audio file is missing."""
    for lineno, e in entries:
        if not Path(e.audio_filepath).is_file():
            raise InputError(f"{path}:{lineno}: audio file not found: {e.audio_filepath}")


def load_manifest(path: str | Path) -> list[tuple[int, ManifestEntry]]:
    """Read a manifest; relative audio paths are resolved against its folder (as NeMo does)."""
    records = read_records(path, ManifestEntry)
    base = Path(path).parent
    out = []
    for lineno, e in records:
        audio = Path(e.audio_filepath)
        if not audio.is_absolute():
            e = e.model_copy(update={"audio_filepath": str(base / audio)})
        out.append((lineno, e))
    return out


def pairs_from_predictions(
    path: str | Path, entries: Sequence[tuple[int, ManifestEntry]]
) -> list[Pair]:
    """Pairs from a manifest whose lines already carry ``pred_text``."""
    pairs = []
    for lineno, e in entries:
        meta = e.metadata()
        if "pred_text" not in meta:
            raise InputError(
                f"{path}:{lineno}: no 'pred_text' (pass --model or --endpoint to transcribe)"
            )
        hyp = meta.pop("pred_text")
        pairs.append(_pair(lineno, e, str(hyp or ""), meta))
    return pairs


def _pair(lineno: int, e: ManifestEntry, hyp: str, meta: dict[str, object]) -> Pair:
    return Pair(
        id=str(meta.get("id", f"line{lineno}")),
        reference=e.text,
        hypothesis=hyp,
        metadata=meta,
        audio_filepath=e.audio_filepath,
        duration=e.duration,
    )


def pairs_from_model(
    options: RunnerOptions,
    entries: Sequence[tuple[int, ManifestEntry]],
    *,
    limits: BatchLimits = BatchLimits(),
    keywords: tuple[str, ...] = (),
    progress: Progress | None = None,
) -> tuple[list[Pair], dict[str, object]]:
    """Transcribe every manifest entry through the serving runner; also returns how it ran."""
    runner = ModelRunner(options)
    runner.load()
    transcripts = transcribe_paths(
        runner,
        [e.audio_filepath for _, e in entries],
        [e.duration for _, e in entries],
        limits=limits,
        keywords=keywords,
        progress=progress,
    )
    how: dict[str, object] = {
        "device": runner.device,
        "precision": runner.precision_name(),
        "max_batch_size": limits.max_batch_size,
        "max_batch_audio_s": limits.max_batch_audio_s,
        **describe_limits(runner.limits),
        "keywords": len(keywords),
        "oom_splits": runner.oom_splits,
    }
    pairs = [
        _pair(ln, e, t.text, e.metadata()) for (ln, e), t in zip(entries, transcripts, strict=True)
    ]
    return pairs, how


def request_timeout(duration: float | None, base: float) -> float:
    """Seconds to wait for one transcription: ``base`` plus twice the audio's length.

    A long recording is still being decoded long after a short one would have
    timed out; giving up on it (and sending it again) only doubles the work.
    """
    return base + 2.0 * (duration or 0.0)


RETRIES = 3
"""Attempts after the first for a request that never reached the model (connection error, 503)."""


def pairs_from_endpoint(
    url: str,
    entries: Sequence[tuple[int, ManifestEntry]],
    *,
    model: str = "parakeet-tdt-0.6b-v2",
    api_key: str | None = None,
    concurrency: int = 4,
    timeout: float = 120.0,
    progress: Progress | None = None,
) -> list[Pair]:
    """Transcribe through any OpenAI-compatible ``/v1/audio/transcriptions`` server.

    Each request waits :func:`request_timeout` (it grows with the audio). Only a
    request the server did not take is sent again: a connection error or a
    503 (busy or still loading; its ``Retry-After`` is honoured), up to
    :data:`RETRIES` times. A timeout is not retried: the server may still be
    decoding it.
    """
    import openai

    base = openai_base_url(url, "--endpoint")
    client = openai.OpenAI(base_url=base, api_key=api_key or "unused", max_retries=0)
    done = 0

    def one(item: tuple[int, ManifestEntry]) -> str:
        _, e = item
        path = Path(e.audio_filepath)
        wait = request_timeout(e.duration, timeout)
        for attempt in range(RETRIES + 1):
            last = attempt == RETRIES
            try:
                with path.open("rb") as fh:
                    result = client.with_options(timeout=wait).audio.transcriptions.create(
                        model=model, file=fh
                    )
                return str(result.text)
            except openai.APITimeoutError as exc:
                raise MedasrError(
                    f"{base}: {path.name}: no answer within {wait:.0f} s (raise --timeout)"
                ) from exc
            except openai.APIConnectionError as exc:
                if last:
                    raise InputError(
                        f"{base}: cannot connect to the endpoint ({exc.__cause__ or exc})"
                    ) from exc
                time.sleep(min(2.0**attempt, 10.0))
            except openai.AuthenticationError as exc:
                raise InputError(f"{base}: authentication failed (check --api-key)") from exc
            except openai.APIStatusError as exc:
                if exc.status_code != 503 or last:
                    raise MedasrError(
                        f"{base}: {path.name}: HTTP {exc.status_code}: {exc.message}"
                    ) from exc
                time.sleep(_retry_after(exc.response, attempt))
        raise AssertionError("unreachable")

    texts: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for text in pool.map(one, entries):
            texts.append(text)
            done += 1
            if progress is not None:
                progress(done, len(entries))
    return [_pair(ln, e, t, e.metadata()) for (ln, e), t in zip(entries, texts, strict=True)]


def _retry_after(response: object, attempt: int) -> float:
    """The server's Retry-After in seconds (at most 30), else a short backoff."""
    headers = getattr(response, "headers", {}) or {}
    try:
        return min(float(headers.get("retry-after", "")), 30.0)
    except ValueError:
        return min(2.0**attempt, 10.0)
