"""Where hypotheses come from: ``pred_text`` in the manifest, a NeMo model, or an endpoint."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from medasr_cli.core.asr_model import load_asr_model, transcribe_files
from medasr_cli.core.errors import InputError, MedasrError
from medasr_cli.core.jsonl import read_records
from medasr_cli.core.records import ManifestEntry
from medasr_cli.core.urls import openai_base_url
from medasr_cli.evaluate.metrics import Pair

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
    model_spec: str,
    entries: Sequence[tuple[int, ManifestEntry]],
    *,
    batch_size: int = 8,
    device: str = "auto",
    progress: Progress | None = None,
) -> list[Pair]:
    """Transcribe every manifest entry with a NeMo model (batched)."""
    model = load_asr_model(model_spec, device=device)
    texts = transcribe_files(
        model, [e.audio_filepath for _, e in entries], batch_size=batch_size, progress=progress
    )
    return [_pair(ln, e, t, e.metadata()) for (ln, e), t in zip(entries, texts, strict=True)]


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
    """Transcribe through any OpenAI-compatible ``/v1/audio/transcriptions`` server."""
    import openai

    base = openai_base_url(url, "--endpoint")
    client = openai.OpenAI(
        base_url=base, api_key=api_key or "unused", timeout=timeout, max_retries=2
    )
    done = 0

    def one(item: tuple[int, ManifestEntry]) -> str:
        _, e = item
        path = Path(e.audio_filepath)
        try:
            with path.open("rb") as fh:
                result = client.audio.transcriptions.create(model=model, file=fh)
        except openai.APIConnectionError as exc:
            raise InputError(
                f"{base}: cannot connect to the endpoint ({exc.__cause__ or exc})"
            ) from exc
        except openai.AuthenticationError as exc:
            raise InputError(f"{base}: authentication failed (check --api-key)") from exc
        except openai.APIStatusError as exc:
            raise MedasrError(
                f"{base}: {path.name}: HTTP {exc.status_code}: {exc.message}"
            ) from exc
        return str(result.text)

    texts: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for text in pool.map(one, entries):
            texts.append(text)
            done += 1
            if progress is not None:
                progress(done, len(entries))
    return [_pair(ln, e, t, e.metadata()) for (ln, e), t in zip(entries, texts, strict=True)]
