"""Decoding an uploaded file by its content into 16 kHz mono float32.

libsndfile reads WAV/FLAC/OGG headers in-process (fast path when the audio is
already 16 kHz); everything else, and every other rate or channel layout, goes
through ffmpeg, which probes the container by content (the file name and
declared content type are never trusted). Decoding is capped just past
``max_audio_s`` so a tiny, very long upload cannot exhaust memory; longer
audio is refused, never silently cut. An ffmpeg run is killed after
``timeout_s`` (:data:`DECODE_TIMEOUT_S` unless the server sets another), so a
pathological file cannot hold a decode slot for ever.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf

from medasr_cli.core.errors import MedasrError
from medasr_cli.infer.transcript import SAMPLE_RATE

FORMATS = "flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav, webm"
DECODE_TIMEOUT_S = 60.0
"""Default limit on one ffmpeg decode (``--decode-timeout-s``); 2 h of audio takes a few seconds."""


class DecodeError(Exception):
    """The upload is not audio that can be decoded (a client error)."""


class TooLong(DecodeError):
    """The decoded audio is longer than the server accepts."""


class DecodeTimeout(DecodeError):
    """ffmpeg did not finish decoding within the time limit (it has been killed)."""


def decode_upload(
    upload: BinaryIO, max_audio_s: float, timeout_s: float = DECODE_TIMEOUT_S
) -> np.ndarray:
    """Decode an uploaded file to mono float32 at 16 kHz, or raise :class:`DecodeError`.

    Blocking (libsndfile or an ffmpeg subprocess): call it from a worker thread.
    """
    upload.seek(0, 2)
    if upload.tell() == 0:
        raise DecodeError("the uploaded file is empty")
    upload.seek(0)
    audio = _read_soundfile(upload, max_audio_s)
    if audio is None:
        with _as_path(upload) as path:
            audio = _read_ffmpeg(path, max_audio_s, timeout_s)
    if audio.size == 0:
        raise DecodeError("the uploaded audio has no samples")
    if not np.all(np.isfinite(audio)):
        audio = np.nan_to_num(audio, nan=0.0, posinf=0.0, neginf=0.0)
    return audio


def _read_soundfile(upload: BinaryIO, max_audio_s: float) -> np.ndarray | None:
    """In-process decode for 16 kHz files libsndfile knows; None means "use ffmpeg"."""
    try:
        with sf.SoundFile(upload) as snd:
            if snd.samplerate != SAMPLE_RATE or snd.frames <= 0:
                return None
            if snd.frames / snd.samplerate > max_audio_s:
                raise TooLong(_too_long(max_audio_s))
            data = snd.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return None
    finally:
        upload.seek(0)
    if len(data) == 0:
        return None
    return np.ascontiguousarray(data.mean(axis=1), dtype=np.float32)


@contextlib.contextmanager
def _as_path(upload: BinaryIO) -> Iterator[Path]:
    """The upload as a real file path (ffmpeg must seek in MP4/M4A, so no pipe); removed after."""
    with tempfile.NamedTemporaryFile(prefix="medasr-upload-", suffix=".bin") as tmp:
        upload.seek(0)
        shutil.copyfileobj(upload, tmp, length=1024 * 1024)
        tmp.flush()
        yield Path(tmp.name)


def _read_ffmpeg(path: Path, max_audio_s: float, timeout_s: float) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MedasrError("ffmpeg is not installed on the server (apt-get install ffmpeg)")
    cap = max_audio_s + 1.0
    cmd = [
        ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-t", f"{cap:.3f}",
        "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1",
    ]  # fmt: skip
    try:  # on timeout, subprocess.run kills ffmpeg and reaps it before raising
        proc = subprocess.run(cmd, capture_output=True, check=False, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise DecodeTimeout(
            f"decoding the file took longer than this server's limit of {timeout_s:g} s"
        ) from exc
    audio = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    if proc.returncode != 0 or audio.size == 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        reason = _reason(lines[-1] if lines else "no audio stream found")
        raise DecodeError(f"could not decode the file as audio ({reason}); supported: {FORMATS}")
    if audio.size / SAMPLE_RATE > max_audio_s:
        raise TooLong(_too_long(max_audio_s))
    return audio


def _reason(line: str) -> str:
    """ffmpeg's last error line without the temporary path."""
    return line.split(": ", 1)[1] if line.startswith("/") and ": " in line else line


def _too_long(max_audio_s: float) -> str:
    return f"the audio is longer than this server's limit of {max_audio_s:g} s"
