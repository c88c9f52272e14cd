"""Check a NeMo manifest line by line against its audio and the model's constraints."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medasr_cli.core.audio import audio_info
from medasr_cli.core.errors import InputError, require
from medasr_cli.core.jsonl import check_input_file, format_validation_error
from medasr_cli.core.records import ManifestEntry

log = logging.getLogger(__name__)

PARAKEET_MAX_DURATION_S = 24 * 60  # Parakeet TDT 0.6B v2 transcribes up to 24 min in one pass


@dataclass
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ValidationReport:
    path: str
    lines: int = 0
    ok: int = 0
    hours: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    entries: list[ManifestEntry] = field(default_factory=list)  # the lines without problems


def load_charset(charset: str | None, tokenizer: str | None) -> set[str] | None:
    """The characters a transcript may use: from a literal/file, or from a tokenizer.

    ``tokenizer``: a SentencePiece ``.model``, a NeMo tokenizer folder, a ``.nemo`` model
    (its tokenizer is read from the archive) or a hub model name (loaded with NeMo).
    """
    if charset is None and tokenizer is None:
        return None
    chars: set[str] = set()
    if charset is not None:
        p = Path(charset)
        text = p.read_text(encoding="utf-8") if p.is_file() else charset
        chars |= set(text.replace("\n", ""))
    if tokenizer is not None:
        chars |= tokenizer_charset(_load_sentencepiece(tokenizer))
    chars.add(" ")
    return chars


def tokenizer_charset(sp: Any) -> set[str]:
    """The characters a SentencePiece model can produce (those of its pieces), and the space."""
    chars: set[str] = {" "}
    for i in range(sp.GetPieceSize()):
        if sp.IsUnknown(i) or sp.IsControl(i):
            continue
        chars |= set(sp.IdToPiece(i).replace("\u2581", ""))
    return chars


def _load_sentencepiece(spec: str) -> Any:
    """A SentencePieceProcessor from a .model, a tokenizer folder, a .nemo or a hub name."""
    require("sentencepiece", "asr")
    import sentencepiece as spm

    path = Path(spec)
    if path.suffix == ".nemo":
        return _sentencepiece_in_nemo(check_input_file(path, "model"))
    if not path.exists() and "/" in spec and not spec.startswith((".", "/")):
        from medasr_cli.core.asr_model import load_asr_model  # a hub name: NeMo downloads it

        tokenizer = getattr(load_asr_model(spec, device="cpu"), "tokenizer", None)
        sp = getattr(tokenizer, "tokenizer", None)
        if sp is None or not hasattr(sp, "GetPieceSize"):
            raise InputError(f"{spec}: the model has no SentencePiece tokenizer")
        return sp
    model = path / "tokenizer.model" if path.is_dir() else path
    if not model.is_file():
        raise InputError(f"{path}: no SentencePiece tokenizer.model found")
    sp = spm.SentencePieceProcessor()
    try:
        sp.Load(str(model))
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{model}: not a SentencePiece model") from exc
    return sp


def _sentencepiece_in_nemo(path: Path) -> Any:
    """The tokenizer inside a ``.nemo`` archive (a tar holding ``*tokenizer.model``)."""
    import tarfile

    import sentencepiece as spm

    try:
        with tarfile.open(path) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("tokenizer.model")), None)
            data = tar.extractfile(member).read() if member else None  # type: ignore[union-attr]
    except (tarfile.TarError, OSError) as exc:
        raise InputError(f"{path}: not a readable .nemo archive ({exc})") from exc
    if not data:
        raise InputError(f"{path}: the model has no SentencePiece tokenizer.model")
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(data)
    return sp


def untokenizable(entries: Iterable[ManifestEntry], charset: set[str]) -> list[str]:
    """``file:line: 'c', 'd'`` for each transcript with characters outside ``charset``.

    Such characters become unknown-token targets when training (a pretrained tokenizer
    cannot produce °C, µg or curly quotes unless its pieces contain them).
    """
    out = []
    for entry in entries:
        outside = sorted({c for c in entry.text if c not in charset})
        if outside:
            where = entry.where or entry.audio_filepath
            out.append(f"{where}: {', '.join(repr(c) for c in outside)}")
    return out


def validate_manifest(
    path: str | Path,
    *,
    sample_rate: int | None = 16000,
    channels: int | None = 1,
    charset: set[str] | None = None,
    max_duration: float = PARAKEET_MAX_DURATION_S,
    duration_tolerance: float = 0.1,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationReport:
    """Return every problem in the manifest with ``file:line``; never stops at the first."""
    p = check_input_file(path, "manifest")
    report = ValidationReport(path=str(p))
    try:
        raw_lines = p.read_bytes().splitlines()
    except OSError as exc:
        raise InputError(f"{p}: cannot read ({exc})") from exc
    total = len(raw_lines)

    def bad(lineno: int, msg: str) -> None:
        report.problems.append(Problem(str(p), lineno, msg))

    for lineno, raw in enumerate(raw_lines, start=1):
        if progress is not None:
            progress(lineno, total)
        if not raw.strip():
            continue
        report.lines += 1
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad(lineno, "not valid UTF-8")
            continue
        except json.JSONDecodeError as exc:
            bad(lineno, f"not valid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            bad(lineno, f"expected a JSON object, got {type(obj).__name__}")
            continue
        try:
            entry = ManifestEntry.model_validate(obj)
        except ValidationError as exc:
            bad(lineno, format_validation_error(exc))
            continue
        entry._where = f"{p}:{lineno}"
        before = len(report.problems)
        _check_entry(entry, p.parent, lineno, bad, sample_rate, channels, charset, max_duration,
                     duration_tolerance)  # fmt: skip
        if len(report.problems) == before:
            report.ok += 1
            report.hours += entry.duration / 3600
            report.entries.append(entry)
    if report.lines == 0:
        bad(0, "the manifest is empty")
    return report


def _check_entry(
    entry: ManifestEntry,
    base: Path,
    lineno: int,
    bad: Callable[[int, str], None],
    sample_rate: int | None,
    channels: int | None,
    charset: set[str] | None,
    max_duration: float,
    tolerance: float,
) -> None:
    text = entry.text.strip()
    if not text:
        bad(lineno, "empty text")
    elif charset is not None:
        outside = sorted({c for c in text if c not in charset})
        if outside:
            bad(lineno, f"text has characters outside the charset: {''.join(outside)!r}")
    if entry.duration <= 0:
        bad(lineno, f"duration must be positive, got {entry.duration}")
    elif entry.duration > max_duration:
        bad(lineno, f"duration {entry.duration:.1f} s is over --max-duration {max_duration:.0f} s")
    audio = Path(entry.audio_filepath)
    if not audio.is_absolute():
        audio = base / audio
    try:
        info = audio_info(audio)
    except InputError as exc:
        bad(lineno, str(exc))
        return
    if sample_rate is not None and info.sample_rate != sample_rate:
        bad(lineno, f"{audio}: sample rate {info.sample_rate} Hz, expected {sample_rate} Hz")
    if channels is not None and info.channels != channels:
        bad(lineno, f"{audio}: {info.channels} channels, expected {channels}")
    if entry.duration > 0 and abs(info.duration - entry.duration) > tolerance:
        bad(lineno, f"duration {entry.duration} s differs from the audio ({info.duration:.3f} s)")
