"""Target-term lists: ``terms.txt`` (term[TAB]category), ``lexicon.jsonl`` (Term records) and
the bundled vocabulary (``data/lexicon/seed_terms.tsv``), read by ``eval`` and ``lexicon``."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import check_input_file, read_records
from medasr_cli.core.records import Term, TermCategory

BUNDLED_NAME = "seed"
"""The bundled vocabulary's name in ``source`` fields (``seed:<origin>``, ``bundled:seed``)."""


@lru_cache(maxsize=1)
def bundled_rows() -> tuple[tuple[str, str, str], ...]:
    """``(text, category, origin)`` of every term of the bundled vocabulary, in file order."""
    data = resources.files("medasr_cli").joinpath("data", "lexicon", "seed_terms.tsv")
    rows = []
    for line in data.read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            text, category, origin = [*line.split("\t"), "", ""][:3]
            rows.append((text, category, origin))
    return tuple(rows)


def category_of(value: str | None) -> TermCategory:
    """The category named ``value``; ``other`` for a missing or unknown name."""
    try:
        return TermCategory((value or "other").strip().lower())
    except ValueError:
        return TermCategory.other


def bundled_terms() -> list[Term]:
    """The bundled offline vocabulary (drugs, conditions, anatomy, procedures, abbreviations).

    ``source`` is ``seed:<origin>`` (``drugbank-open``, ``icd10cm`` or ``curated``) so
    that each term's provenance stays visible in ``lexicon.jsonl`` and eval reports.
    """
    return [
        Term(text=text, category=category_of(category), source=f"{BUNDLED_NAME}:{origin}")
        for text, category, origin in bundled_rows()
    ]


def load_terms(path: str | Path) -> list[Term]:
    """Read terms from a text file or a lexicon JSONL; one clear error for a bad file."""
    p = check_input_file(path, "term file")
    if p.suffix.lower() == ".jsonl":
        return [t for _, t in read_records(p, Term)]
    raw = p.read_bytes()
    if b"\x00" in raw:
        raise InputError(f"{p}: looks like a binary file, expected one term per line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not valid UTF-8") from exc
    terms: list[Term] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        term, _, category = line.partition("\t")
        term = term.strip()
        cat = category.strip().lower() or "other"
        try:
            category_enum = TermCategory(cat)
        except ValueError as exc:
            allowed = ", ".join(c.value for c in TermCategory)
            raise InputError(f"{p}:{lineno}: unknown category '{cat}' (use {allowed})") from exc
        if term.lower() in seen:
            continue
        seen.add(term.lower())
        terms.append(Term(text=term, category=category_enum, source=str(p.name)))
    if not terms:
        raise InputError(f"{p}: no terms (the file is empty)")
    return terms
