"""Text normalisers, applied identically to references, hypotheses and term lists.

One place for every stage that compares text: ``eval`` (WER, term recall),
``lexicon`` (spoken forms from an eval report) and the ``script`` backends
(checking that a dictation uses its terms).

``whisper`` is the English normaliser used by the Hugging Face Open ASR
Leaderboard (Whisper's EnglishTextNormalizer): it lower-cases, strips
punctuation, spells numbers as digits and maps British to American spelling.
Note it also rewrites some terms ("haemoglobin" -> "hemoglobin", "Crohn's" ->
"crohn is"), which is why terms must go through the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from medasr_cli.core.errors import InputError

Normalizer = Callable[[str], str]
NORMALIZERS = ("whisper", "basic", "none")


def _collapse(text: str) -> str:
    return " ".join(text.split())


@cache
def get_normalizer(name: str) -> Normalizer:
    """Return the normaliser called ``name`` (whisper | basic | none)."""
    if name == "none":
        return _collapse
    if name == "basic":
        from whisper_normalizer.basic import BasicTextNormalizer

        basic = BasicTextNormalizer()
        return lambda text: _collapse(basic(text))
    if name == "whisper":
        from whisper_normalizer.english import EnglishTextNormalizer

        english = EnglishTextNormalizer()
        return lambda text: _collapse(english(text))
    raise InputError(f"--normalize: unknown normaliser '{name}' (use {', '.join(NORMALIZERS)})")


def words(text: str) -> list[str]:
    """Whitespace tokens of already-normalised text."""
    return text.split()
