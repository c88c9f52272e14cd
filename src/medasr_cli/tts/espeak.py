"""espeak-ng (the Debian binary): many English accents, fast, robotic.

Voices are ``ACCENT`` or ``ACCENT+VARIANT`` (``en-gb``, ``en-029``,
``en-us-nyc+f3``). Rate (words per minute) and pitch (0-99) are jittered per
utterance for variety; both are recorded. espeak-ng is deterministic, so the
seed is not needed.

A stress-marked respelling in the text (``uh-PIX-uh-ban``, see
:func:`medasr_cli.core.spoken.respelling_stress`) is spoken from phonemes
(espeak-ng's ``[[...]]`` input, :func:`respelling_phonemes`) with the stress on
the capitalised syllable; read as text, every syllable of it would be a
stressed word of its own, and capitals would be spelled out.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence

import soundfile as sf

from medasr_cli.core.errors import InputError, MedasrError
from medasr_cli.core.spoken import PRIMARY, RESPELLING, SECONDARY, respelling_stress
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
        spoken = with_phonemes(text)
        proc = subprocess.run(cmd, input=spoken.encode("utf-8"), capture_output=True, check=False)
        if proc.returncode != 0 or not proc.stdout:
            err = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
            raise MedasrError(f"espeak-ng failed for voice {full}: {err}")
        audio, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
        audio = check_audio(audio, f"espeak:{full}")
        return Synthesis(audio, int(sr), accent=accent, params={"rate": rate, "pitch": pitch})


# ---- respellings as espeak-ng phonemes --------------------------------------------------------
#
# Respelling units -> espeak-ng's English phoneme mnemonics (the same symbols in every English
# voice; each accent realises them its own way: ``A@`` is rhotic in en-us, not in en-gb).
# Tried longest first at each position of a syllable.
_UNITS: dict[str, str] = {
    # r-coloured vowels
    "air": "e@", "are": "e@", "eer": "i@", "ear": "i@", "ire": "aI@", "oor": "U@", "ure": "U@",
    "our": "aU@", "ore": "O@", "ar": "A@", "or": "O@", "ur": "3:", "ir": "3:",
    # vowels
    "eye": "aI", "igh": "aI", "ay": "eI", "ai": "eI", "ee": "i:", "ea": "i:", "ew": "ju:",
    "oo": "u:", "uu": "U", "oh": "oU", "oa": "oU", "ow": "aU", "ou": "aU", "oy": "OI", "oi": "OI",
    "aw": "O:", "au": "O:", "ah": "A:", "eh": "E", "ih": "I",
    "a": "a", "e": "E", "i": "I", "o": "0",
    # consonants
    "tch": "tS", "ch": "tS", "sh": "S", "zh": "Z", "th": "T", "dh": "D", "ng": "N", "nk": "Nk",
    "ph": "f", "ck": "k", "wh": "w", "qu": "kw", "b": "b", "c": "k", "d": "d", "f": "f", "g": "g",
    "h": "h", "j": "dZ", "k": "k", "l": "l", "m": "m", "n": "n", "p": "p", "q": "k", "r": "r",
    "s": "s", "t": "t", "v": "v", "w": "w", "x": "ks", "z": "z",
}  # fmt: skip
_LONGEST = max(len(u) for u in _UNITS)
_MAGIC_E = re.compile(r"^([^aeiouy]*)([aeiou])([^aeiouyrw]+)e$")  # mide, zole, ate: a long vowel
_LONG = {"a": "eI", "e": "i:", "i": "aI", "o": "oU", "u": "u:"}


def syllable_phonemes(syllable: str, stressed: bool) -> str:
    """One respelling syllable (lower case) as espeak-ng phonemes, without a stress mark.

    ``uh`` (and a bare ``u``) is a schwa when unstressed and the vowel of *strut*
    when stressed, ``er`` likewise (``3`` / ``3:``); a final ``y`` after a
    consonant is the vowel of *fly* (``ly``, ``GLY``), a ``y`` before a vowel
    the consonant of *yes* (``yoo``); a single vowel followed by consonants and a
    final ``e`` is long (``mide``, ``zole``, ``ate``); doubled consonants are one.
    """
    s = re.sub(r"([^aeiou])\1", r"\1", syllable.lower())
    if m := _MAGIC_E.match(s):
        onset, vowel, coda = m.groups()
        return _spell(onset, stressed) + _LONG[vowel] + _spell(coda, stressed)
    return _spell(s, stressed)


def _spell(s: str, stressed: bool) -> str:
    out, i = [], 0
    while i < len(s):
        if s.startswith("er", i) and not s.startswith("err", i):
            out.append("3:" if stressed else "3")
            i += 2
        elif s.startswith("uh", i) or (s[i] == "u" and not s.startswith(("ur", "uu", "ure"), i)):
            out.append("V" if stressed else "@")
            i += 2 if s.startswith("uh", i) else 1
        elif s[i] == "y":
            before_vowel = i + 1 < len(s) and s[i + 1] in "aeiou"
            out.append("j" if before_vowel else "aI")
            i += 1
        else:
            for n in range(min(_LONGEST, len(s) - i), 0, -1):
                unit = _UNITS.get(s[i : i + n])
                if unit is not None:
                    out.append(unit)
                    i += n
                    break
            else:
                i += 1  # a letter with no sound of its own here
    return "".join(out)


def respelling_phonemes(syllables: Sequence[tuple[str, int]]) -> str:
    """espeak-ng phonemes for a respelling's syllables, ``'`` before the primary stress.

    ``[("uh", 0), ("pix", 2), ("uh", 0), ("ban", 0)]`` -> ``@'pIks@ban``; a
    secondary stress is marked ``,``. espeak-ng moves each mark to its vowel.
    """
    marks = {PRIMARY: "'", SECONDARY: ","}
    return "".join(
        marks.get(level, "") + syllable_phonemes(syl, level > 0) for syl, level in syllables
    )


_WITH_POSSESSIVE = re.compile(rf"({RESPELLING.pattern})(['’]s\b)?")
_VOICELESS_END = re.compile(r"(?:[ptkf]|T)$")


def with_phonemes(text: str) -> str:
    """``text`` with every stress-marked respelling replaced by ``[[phonemes]]`` for espeak-ng.

    A possessive ``'s`` after one becomes part of the phonemes (read as text
    after them, espeak-ng would say it as a pause and the letter *s*).
    """

    def one(m: re.Match[str]) -> str:
        syllables = respelling_stress(m.group(1))
        if syllables is None:
            return m.group()
        phonemes = respelling_phonemes(syllables)
        if m.group(2):
            phonemes += "s" if _VOICELESS_END.search(phonemes) else "z"
        return f"[[{phonemes}]]"

    return _WITH_POSSESSIVE.sub(one, text)
