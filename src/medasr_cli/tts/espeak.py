"""espeak-ng (the Debian binary): many English accents, fast, robotic.

Voices are ``ACCENT`` or ``ACCENT+VARIANT`` (``en-gb``, ``en-029``,
``en-us-nyc+f3``). Rate (words per minute) and pitch (0-99) are jittered per
utterance for variety; both are recorded. espeak-ng is deterministic, so the
seed is not needed.
"""

from __future__ import annotations

import functools
import io
import logging
import shutil
import subprocess
from collections.abc import Mapping

import soundfile as sf

from medasr_cli.core.errors import InputError, MedasrError
from medasr_cli.tts.base import Synthesis, check_audio

log = logging.getLogger(__name__)

#: The accents the issue asks for; any other installed English voice works too.
ENGLISH_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc")
DEFAULT_VOICE = "en-us"


def espeak_binary() -> str:
    """Path of espeak-ng, or a one-line error telling how to install it."""
    path = shutil.which("espeak-ng")
    if path is None:
        raise InputError("espeak-ng is not installed (apt-get install espeak-ng)")
    return path


def _list(kind: str) -> list[tuple[str, str]]:
    proc = subprocess.run(
        [espeak_binary(), f"--voices={kind}"], capture_output=True, text=True, check=False
    )
    rows = []
    for line in proc.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            rows.append((cols[1], cols[4]))  # (language, file)
    return rows


@functools.lru_cache(maxsize=1)
def installed_accents() -> frozenset[str]:
    """English espeak-ng voices that need no extra data (mbrola voices are left out)."""
    return frozenset(
        lang
        for lang, file in _list("en")
        if not file.startswith(("mb/", "!v/")) and lang != "variant"
    )


@functools.lru_cache(maxsize=1)
def installed_variants() -> frozenset[str]:
    """Voice variants usable as ``ACCENT+VARIANT`` (f1…f5, m1…m8, klatt, whisper …)."""
    return frozenset(file.removeprefix("!v/") for _, file in _list("variant"))


class EspeakEngine:
    """Speak with the espeak-ng binary, one process per utterance."""

    name = "espeak"

    def list_voices(self) -> list[str]:
        return sorted(installed_accents())

    def check_voice(self, voice: str) -> None:
        accent, variant = self._split(voice)
        if accent not in installed_accents():
            known = ", ".join(sorted(installed_accents()))
            raise InputError(f"unknown espeak voice '{voice}' (accents here: {known})")
        if variant and variant not in installed_variants():
            raise InputError(
                f"unknown espeak variant '+{variant}' in '{voice}' "
                "(see `espeak-ng --voices=variant`, e.g. f3, m3, klatt)"
            )

    @staticmethod
    def _split(voice: str) -> tuple[str, str | None]:
        voice = DEFAULT_VOICE if voice in ("", "default") else voice
        accent, _, variant = voice.partition("+")
        return accent, variant or None

    def synthesize(
        self, text: str, voice: str, params: Mapping[str, float], seed: int
    ) -> Synthesis:
        """Run espeak-ng with the jittered ``rate`` (wpm) and ``pitch`` (0-99)."""
        accent, variant = self._split(voice)
        full = f"{accent}+{variant}" if variant else accent
        rate = round(params.get("rate", 175))
        pitch = min(99, max(0, round(params.get("pitch", 50))))
        cmd = [
            espeak_binary(),
            "-v",
            full,
            "-s",
            str(rate),
            "-p",
            str(pitch),
            "--stdout",
            "--stdin",
        ]
        proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, check=False)
        if proc.returncode != 0 or not proc.stdout:
            err = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
            raise MedasrError(f"espeak-ng failed for voice {full}: {err}")
        audio, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
        audio = check_audio(audio, f"espeak:{full}")
        return Synthesis(audio, int(sr), accent=accent, params={"rate": rate, "pitch": pitch})
