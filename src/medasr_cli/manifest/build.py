"""Build NeMo manifest entries from synth output, audio folders or CSV/TSV tables."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medasr_cli.core.audio import audio_info, convert_to_mono
from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import check_input_file, format_validation_error, iter_jsonl
from medasr_cli.core.records import ManifestEntry, Utterance

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".mp4", ".webm", ".aac"}
# Utterance fields that become manifest metadata (NeMo ignores keys it does not know).
_META_FIELDS = ("id", "script_id", "tts_engine", "voice", "accent", "snr_db", "noise_source")


@dataclass
class _Item:
    """One audio/text pair found in a source, before its audio is read."""

    audio: Path
    text: str
    where: str  # "file:line" for error messages
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildResult:
    entries: list[ManifestEntry]
    skipped: list[str]


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p)


def _items_from_jsonl(path: Path) -> Iterator[_Item]:
    base = path.parent
    empty = True
    for lineno, obj in iter_jsonl(path):
        empty = False
        where = f"{path}:{lineno}"
        try:
            if "id" in obj and "audio_filepath" in obj:
                utt = Utterance.model_validate(obj)
                meta = {k: getattr(utt, k) for k in _META_FIELDS if getattr(utt, k) is not None}
                meta.update(utt.model_extra or {})
                if utt.augmentations:
                    meta["augmentations"] = [a.kind for a in utt.augmentations]
                yield _Item(_resolve(utt.audio_filepath, base), utt.text, where, meta)
            else:
                entry = ManifestEntry.model_validate(obj)
                yield _Item(
                    _resolve(entry.audio_filepath, base), entry.text, where, entry.metadata()
                )
        except ValidationError as exc:
            raise InputError(f"{where}: {format_validation_error(exc)}") from exc
    if empty:
        raise InputError(f"{path}: no records (the file is empty)")


def _items_from_folder(folder: Path) -> Iterator[_Item]:
    audio_files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not audio_files:
        raise InputError(f"{folder}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    for audio in audio_files:
        sidecar = audio.with_suffix(".txt")
        if not sidecar.exists():
            raise InputError(f"{audio}: no transcript (expected {sidecar.name} beside it)")
        try:
            text = sidecar.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as exc:
            raise InputError(f"{sidecar}: not valid UTF-8") from exc
        yield _Item(audio, text, str(sidecar))


def _items_from_table(path: Path) -> Iterator[_Item]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter=delimiter))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8") from exc
    if not rows:
        raise InputError(f"{path}: the table is empty")
    header = [h.strip().lower() for h in rows[0]]
    path_col = next((c for c in ("audio_filepath", "path", "audio") if c in header), None)
    if path_col is None or "text" not in header:
        # No header: the first two columns are path and text.
        header, start = ["path", "text"], 0
        path_col = "path"
    else:
        start = 1
    for lineno, row in enumerate(rows[start:], start=start + 1):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise InputError(f"{path}:{lineno}: expected a path and a text column")
        rec = dict(zip(header, row, strict=False))
        meta = {k: v for k, v in rec.items() if k not in (path_col, "text")}
        yield _Item(_resolve(rec[path_col], path.parent), rec["text"], f"{path}:{lineno}", meta)


def collect_items(source: Path) -> list[_Item]:
    """List the audio/text pairs in one source (JSONL, folder or CSV/TSV)."""
    if not source.exists():
        raise InputError(f"{source}: not found")
    if source.is_dir():
        return list(_items_from_folder(source))
    check_input_file(source)
    suffix = source.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return list(_items_from_table(source))
    if suffix in (".jsonl", ".json"):
        return list(_items_from_jsonl(source))
    raise InputError(f"{source}: unknown source type (expected .jsonl, .csv, .tsv or a folder)")


def _converted_name(item: _Item, index: int) -> str:
    stem = str(item.meta.get("id") or item.audio.stem)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return f"{index:06d}_{safe}.wav"


def build_manifest(
    sources: list[Path],
    *,
    resample: int | None = None,
    audio_out: Path | None = None,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Turn sources into manifest entries with durations read from the audio.

    With ``resample``, every file is converted to mono PCM WAV at that rate in
    ``audio_out`` and the entry points at the converted file. ``progress`` is
    called with ``(done, total)`` after each item. A bad item (missing
    or unreadable audio, empty text) raises InputError, or is skipped with a
    warning when ``skip_bad`` is set.
    """
    if resample is not None and audio_out is None:
        raise InputError("--resample needs --audio-out (the folder for converted audio)")
    items = [item for src in sources for item in collect_items(src)]
    entries: list[ManifestEntry] = []
    skipped: list[str] = []
    for index, item in enumerate(items):
        try:
            if not item.text.strip():
                raise InputError(f"{item.where}: empty transcript")
            if resample is not None and audio_out is not None:
                dst = audio_out / _converted_name(item, index)
                info = convert_to_mono(item.audio, dst, sample_rate=resample)
                audio_path = dst
            else:
                info = audio_info(item.audio)
                audio_path = item.audio
            entries.append(
                ManifestEntry(
                    audio_filepath=str(audio_path.resolve()),
                    duration=round(info.duration, 4),
                    text=item.text.strip(),
                    **item.meta,
                )
            )
        except InputError as exc:
            msg = str(exc) if str(exc).startswith(item.where) else f"{item.where}: {exc}"
            if not skip_bad:
                raise InputError(msg) from exc
            log.warning("skipped %s", msg)
            skipped.append(msg)
        if progress is not None:
            progress(index + 1, len(items))
    if not entries:
        raise InputError("no usable entries in the given sources")
    return BuildResult(entries, skipped)


def relativize(entries: list[ManifestEntry], manifest_dir: Path) -> list[ManifestEntry]:
    """Return copies whose audio paths are relative to ``manifest_dir`` (NeMo resolves them)."""
    out = []
    for e in entries:
        rel = os.path.relpath(e.audio_filepath, manifest_dir.resolve())
        out.append(e.model_copy(update={"audio_filepath": rel}))
    return out
