"""Loading target-term lists: ``terms.txt`` (term[TAB]category) or ``lexicon.jsonl`` (Term records)."""

from __future__ import annotations

from pathlib import Path

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import check_input_file, read_records
from medasr_cli.core.records import Term, TermCategory


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
