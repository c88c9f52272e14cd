"""The ``medasr lexicon`` recipe: compile, select and write the target terms."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import atomic_write, dumps
from medasr_cli.core.records import Term, TermCategory
from medasr_cli.core.spoken import with_spoken_forms
from medasr_cli.core.text import get_normalizer
from medasr_cli.lexicon.select import merge, select
from medasr_cli.lexicon.sources import (
    MeasuredTerm,
    load_eval_report,
    load_hunspell,
    load_pronunciations,
    load_seed,
    load_term_file,
)

log = logging.getLogger(__name__)

TERMS_TXT = "terms.txt"
LEXICON_JSONL = "lexicon.jsonl"


@dataclass
class LexiconRequest:
    """What to read and how to select; every field has the CLI's default."""

    terms_files: Sequence[Path] = ()
    seed: bool = False
    from_eval: Path | None = None
    hunspell: Path | None = None
    max_recall: float | None = None
    min_occurrences: int = 1
    categories: Sequence[str] = ()
    exclude_common: bool = False
    limit: int | None = None
    normalizer: str | None = None  # None: the eval report's, else "whisper"
    pronunciations: Path | None = None


@dataclass
class LexiconResult:
    """The selected terms (hardest first) and what happened to the rest."""

    terms: list[Term]
    normalizer: str
    read: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    occurrences: dict[str, int] = field(default_factory=dict)

    def per_category(self) -> dict[str, int]:
        """Selected term counts by category."""
        counts = Counter(t.category.value for t in self.terms)
        return dict(sorted(counts.items()))


def parse_categories(values: Sequence[str]) -> list[TermCategory]:
    """``["drug,anatomy", "condition"]`` -> categories; one clear error for a bad name."""
    out: list[TermCategory] = []
    for value in values:
        for name in filter(None, (v.strip().lower() for v in value.split(","))):
            try:
                out.append(TermCategory(name))
            except ValueError as exc:
                allowed = ", ".join(c.value for c in TermCategory)
                raise InputError(f"--category: unknown category '{name}' (use {allowed})") from exc
    return out


def _check_options(request: LexiconRequest) -> None:
    if not (request.terms_files or request.seed or request.from_eval or request.hunspell):
        raise InputError("no term source: give --terms-file, --seed, --from-eval or --hunspell")
    if request.max_recall is not None and not 0.0 <= request.max_recall <= 1.0:
        raise InputError(f"--max-recall: {request.max_recall} is not between 0 and 1")
    if request.min_occurrences < 1:
        raise InputError("--min-occurrences: must be at least 1")
    if request.limit is not None and request.limit < 1:
        raise InputError("--limit: must be at least 1")


def build_lexicon(request: LexiconRequest) -> LexiconResult:
    """Read every source, merge, select, and attach spoken forms and pronunciations."""
    _check_options(request)
    categories = parse_categories(request.categories)
    listed: list[Term] = []
    for path in request.terms_files:
        listed += load_term_file(path)
    measured: list[MeasuredTerm] = []
    report_normalizer = None
    if request.from_eval is not None:
        report_normalizer, measured = load_eval_report(request.from_eval)
    if request.seed:
        listed += load_seed()
    if request.hunspell is not None:
        listed += load_hunspell(request.hunspell)
    normalizer = request.normalizer or report_normalizer or "whisper"
    normalize = get_normalizer(normalizer)
    defaults = load_pronunciations()
    overrides = load_pronunciations(request.pronunciations) if request.pronunciations else {}
    candidates = merge(listed, measured, request.min_occurrences)
    selection = select(
        candidates.values(),
        max_recall=request.max_recall,
        categories=categories,
        exclude_common=request.exclude_common,
        limit=request.limit,
    )
    terms = []
    occurrences = {}
    for cand in selection.kept:
        term = with_spoken_forms(cand.term, normalize)
        key = term.text.lower()
        respelling = overrides.get(key) or term.pronunciation or defaults.get(key)
        if respelling != term.pronunciation:
            term = term.model_copy(update={"pronunciation": respelling})
        terms.append(term)
        if cand.occurrences is not None:
            occurrences[term.text] = cand.occurrences
    log.debug("lexicon: %d of %d terms selected", len(terms), len(candidates))
    if not terms:
        raise InputError(
            "no terms left after selection (loosen --max-recall, --category or --limit)"
        )
    return LexiconResult(
        terms=terms,
        normalizer=normalizer,
        read=len(candidates),
        dropped=selection.dropped,
        occurrences=occurrences,
    )


def write_lexicon(result: LexiconResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``terms.txt`` (term<TAB>category) and ``lexicon.jsonl``, each atomically."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a directory")
    jsonl_path, txt_path = out_dir / LEXICON_JSONL, out_dir / TERMS_TXT
    with atomic_write(jsonl_path) as fh:
        for term in result.terms:
            fh.write(dumps(term) + "\n")
    with atomic_write(txt_path) as fh:
        fh.write(f"# {len(result.terms)} terms from medasr lexicon; term<TAB>category\n")
        for term in result.terms:
            fh.write(f"{term.text}\t{term.category.value}\n")
    return txt_path, jsonl_path
