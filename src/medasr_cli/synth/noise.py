"""Background-noise and impulse-response libraries: folders of audio, scanned once.

Noise comes from user folders (``--noise-dir``: MUSAN, DEMAND, hospital
recordings …) and from the procedurally generated hospital noise bank. A
category (the bank's sub-folder, or the user folder's name) is drawn first and
then a file, so one huge folder does not drown the others. Files up to
``WHOLE_FILE_S`` long are decoded once per process and kept in memory (up to
``CACHE_BYTES``); segments of longer files at the right rate are read from disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from medasr_cli.core.audio import decode_audio
from medasr_cli.core.errors import InputError, MedasrError
from medasr_cli.synth.dsp import fit_length, power

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aac", ".webm"}
BANK_MARKER = "bank.json"
WHOLE_FILE_S = 300.0  # files up to this long are decoded whole and cached
CACHE_BYTES = 512 * 2**20  # per process


@dataclass(frozen=True)
class AudioFile:
    """One noise or RIR file and where it came from."""

    path: str
    label: str  # recorded in utterances, e.g. "bank:alarm/alarm_02.wav"
    category: str  # e.g. "babble", "hvac", "musan"
    frames: int  # 0 when the header cannot tell (decoded on use)
    sample_rate: int


@dataclass
class AudioLibrary:
    """A scanned set of audio files grouped by category."""

    files: list[AudioFile]
    by_category: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, f in enumerate(self.files):
            self.by_category.setdefault(f.category, []).append(i)

    def __bool__(self) -> bool:
        return bool(self.files)

    def fingerprint(self) -> str:
        """Changes when files are added, removed or resized (part of the inputs hash)."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f"{f.label}\t{f.frames}\t{f.sample_rate}\n".encode())
        return h.hexdigest()[:16]

    def choose(self, rng: np.random.Generator) -> AudioFile:
        """A category uniformly, then a file of it uniformly."""
        cats = sorted(self.by_category)
        members = self.by_category[cats[int(rng.integers(len(cats)))]]
        return self.files[members[int(rng.integers(len(members)))]]


def _check_dir(folder: Path, what: str) -> None:
    if not folder.exists():
        raise InputError(f"{folder}: {what} not found")
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} is not a directory")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise InputError(f"{folder}: {what} is not readable (permission denied)")


def _scan(folder: Path, prefix: str, category_from_subdir: bool, what: str) -> list[AudioFile]:
    _check_dir(folder, what)
    try:
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    except PermissionError as exc:
        raise InputError(f"{folder}: {what} is not readable ({exc.strerror})") from exc
    if not paths:
        raise InputError(
            f"{folder}: {what} has no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})"
        )
    out = []
    for p in paths:
        rel = p.relative_to(folder).as_posix()
        category = rel.split("/")[0] if category_from_subdir and "/" in rel else folder.name
        try:
            info = sf.info(str(p))
            frames, sr = int(info.frames), int(info.samplerate)
        except (sf.LibsndfileError, RuntimeError):
            frames, sr = 0, 0
        if not os.access(p, os.R_OK):
            raise InputError(f"{p}: not readable (permission denied)")
        out.append(AudioFile(str(p.resolve()), f"{prefix}{rel}", category, frames, sr))
    return out


def scan_noise(dirs: Sequence[Path], bank: Path | None) -> AudioLibrary:
    """Scan ``--noise-dir`` folders and a noise bank (categories = its sub-folders)."""
    files: list[AudioFile] = []
    for d in dirs:
        files += _scan(Path(d), f"{Path(d).name}/", False, "noise dir")
    if bank is not None:
        files += _scan(Path(bank), "bank:", True, "noise bank")
    return AudioLibrary(files)


def scan_rirs(dirs: Sequence[Path]) -> AudioLibrary:
    """Scan ``--rir-dir`` folders of room impulse responses."""
    files: list[AudioFile] = []
    for d in dirs:
        files += _scan(Path(d), f"{Path(d).name}/", False, "RIR dir")
    return AudioLibrary(files)


class _DecodedCache:
    """Least-recently-used decoded audio, bounded by bytes rather than by count."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self.items: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def get(self, path: str, sample_rate: int) -> np.ndarray:
        key = (path, sample_rate)
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        audio = decode_audio(path, sample_rate=sample_rate)
        audio.setflags(write=False)  # shared by every caller: nobody may change it
        if audio.nbytes <= self.budget:
            while self.used + audio.nbytes > self.budget:
                _, old = self.items.popitem(last=False)
                self.used -= old.nbytes
            self.items[key] = audio
            self.used += audio.nbytes
        return audio


_CACHE = _DecodedCache(CACHE_BYTES)


def read_whole(f: AudioFile, sample_rate: int) -> np.ndarray:
    """The whole file, mono at ``sample_rate`` (cached per process; read-only)."""
    return _CACHE.get(f.path, sample_rate)


def read_segment(
    f: AudioFile, n: int, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """``n`` samples from a random offset (looping a short file); returns (audio, offset s).

    The samples are the same whether the file is cached or read in part.
    """
    long_file = f.frames > WHOLE_FILE_S * sample_rate
    if f.sample_rate == sample_rate and f.frames >= n and long_file:
        offset = int(rng.integers(0, f.frames - n + 1))
        data, _ = sf.read(f.path, start=offset, frames=n, dtype="float32", always_2d=True)
        audio = data.mean(axis=1)
    else:
        whole = read_whole(f, sample_rate)
        offset = int(rng.integers(0, max(1, len(whole) - n + 1)))
        # the cache is shared and read-only: callers get their own copy of the slice
        audio = whole[offset : offset + n].copy() if len(whole) >= n else fit_length(whole, n)
    return np.ascontiguousarray(audio, dtype=np.float32), round(offset / sample_rate, 3)


def pick_noise(
    library: AudioLibrary, n: int, sample_rate: int, rng: np.random.Generator, tries: int = 5
) -> tuple[np.ndarray, AudioFile, float]:
    """A non-silent noise segment of ``n`` samples; raises if every try is silent."""
    for _ in range(tries):
        f = library.choose(rng)
        audio, offset = read_segment(f, n, sample_rate, rng)
        if power(audio) > 1e-10:
            return audio, f, offset
        log.debug("silent noise segment in %s at %.2f s; drawing another", f.label, offset)
    raise MedasrError("noise: only silent segments found (check the noise folders)")


def load_rir(f: AudioFile, sample_rate: int) -> np.ndarray:
    """An impulse response at ``sample_rate`` (whole file, cached)."""
    return read_whole(f, sample_rate)
