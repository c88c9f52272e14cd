"""Audio I/O helpers: header probing, decoding to mono float32, conversion.

soundfile (libsndfile) handles WAV/FLAC/OGG (and MP3 on recent builds) without
decoding the whole file; ffmpeg is the fallback for everything else (m4a, webm,
mp4 …). Both are used by content, not by file extension.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from medasr_cli.core.errors import InputError, MedasrError

TARGET_SR = 16000


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says."""

    duration: float
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str | None


def _ffmpeg_bin(name: str = "ffmpeg") -> str:
    path = shutil.which(name)
    if path is None:
        raise MedasrError(f"{name} is not installed (apt-get install ffmpeg)")
    return path


def audio_info(path: str | Path) -> AudioInfo:
    """Read duration, rate and channels from the file header (ffprobe as fallback)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: audio file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected an audio file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: audio file is empty (0 bytes)")
    try:
        info = sf.info(str(p))
        if info.frames > 0 and info.samplerate > 0:
            return AudioInfo(
                duration=info.frames / info.samplerate,
                sample_rate=int(info.samplerate),
                channels=int(info.channels),
                frames=int(info.frames),
                format=str(info.format),
                subtype=str(info.subtype),
            )
        if info.frames == 0:
            raise InputError(f"{p}: audio has no samples (zero length)")
    except (sf.LibsndfileError, RuntimeError):
        pass
    return _ffprobe_info(p)


def _ffprobe_info(p: Path) -> AudioInfo:
    cmd = [
        _ffmpeg_bin("ffprobe"),
        "-v", "error", "-select_streams", "a:0",
        "-show_entries", "stream=sample_rate,channels,duration,codec_name:format=duration,format_name",
        "-of", "json", str(p),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise InputError(f"{p}: not a readable audio file")
    data = json.loads(proc.stdout or "{}")
    streams = data.get("streams") or []
    if not streams:
        raise InputError(f"{p}: not a readable audio file (no audio stream)")
    st = streams[0]
    fmt = data.get("format") or {}
    dur_s = st.get("duration") or fmt.get("duration")
    try:
        duration = float(str(dur_s))
    except (TypeError, ValueError):
        duration = float(len(decode_audio(p)) / TARGET_SR)
    if duration <= 0:
        raise InputError(f"{p}: audio has no samples (zero length)")
    sr = int(st.get("sample_rate") or 0)
    return AudioInfo(
        duration=duration,
        sample_rate=sr,
        channels=int(st.get("channels") or 0),
        frames=round(duration * sr),
        format=str(fmt.get("format_name", "unknown")),
        subtype=st.get("codec_name"),
    )


def decode_audio(path: str | Path, sample_rate: int = TARGET_SR) -> np.ndarray:
    """Decode any audio file to mono float32 at ``sample_rate``.

    Uses soundfile when the file is already at the target rate, ffmpeg otherwise.
    """
    p = Path(path)
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
        if sr == sample_rate and len(data):
            return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)
    except (sf.LibsndfileError, RuntimeError):
        pass
    return decode_bytes_ffmpeg(str(p), sample_rate=sample_rate, source=str(p))


def decode_bytes_ffmpeg(
    src: str | bytes, sample_rate: int = TARGET_SR, source: str = "<upload>"
) -> np.ndarray:
    """Decode a path or in-memory bytes with ffmpeg to mono float32 at ``sample_rate``."""
    inp = "pipe:0" if isinstance(src, bytes) else src
    cmd = [
        _ffmpeg_bin(), "-nostdin", "-v", "error", "-i", inp,
        "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "pipe:1",
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, input=src if isinstance(src, bytes) else None, capture_output=True, check=False
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = err[-1] if err else "ffmpeg failed"
        raise InputError(f"{source}: cannot decode audio ({reason})")
    audio = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if audio.size == 0:
        raise InputError(f"{source}: audio has no samples (zero length)")
    return audio


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = TARGET_SR) -> None:
    """Write mono float audio as 16-bit PCM WAV (or FLAC by extension)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    subtype = "PCM_16"
    sf.write(str(p), np.clip(audio, -1.0, 1.0), sample_rate, subtype=subtype)


def convert_to_mono(src: str | Path, dst: str | Path, sample_rate: int = TARGET_SR) -> AudioInfo:
    """Convert any audio file to mono PCM at ``sample_rate`` (WAV or FLAC by ``dst``'s suffix)."""
    audio = decode_audio(src, sample_rate=sample_rate)
    write_wav(dst, audio, sample_rate)
    return audio_info(dst)
