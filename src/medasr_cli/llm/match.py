"""Does a dictation contain its target terms?

A term counts as present when its text or one of its spoken forms occurs as
whole words, either literally (case-insensitive) or after the ``eval``
normaliser has been applied to both sides, so "Crohn's disease" is found in
"crohns disease" only if that form is listed, and "haemoglobin" is found in
"hemoglobin" because the normaliser maps one to the other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from medasr_cli.core.records import Term
from medasr_cli.core.text import get_normalizer


@lru_cache(maxsize=4096)
def _literal(form: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(form.lower()) + r"(?!\w)")


def _forms(term: Term) -> list[str]:
    return [f for f in [term.text, *term.spoken_forms] if f.strip()]


def term_present(text: str, term: Term, normalizer: str = "whisper") -> bool:
    """True when ``term`` (or a spoken form) occurs in ``text`` as whole words."""
    lowered = text.lower()
    if any(_literal(form).search(lowered) for form in _forms(term)):
        return True
    normalize = get_normalizer(normalizer)
    padded = f" {normalize(text)} "
    for form in _forms(term):
        norm = normalize(form)
        if norm and f" {norm} " in padded:
            return True
    return False


def missing_terms(text: str, terms: Iterable[Term], normalizer: str = "whisper") -> list[str]:
    """The texts of the ``terms`` that ``text`` does not contain."""
    return [t.text for t in terms if not term_present(text, t, normalizer)]
