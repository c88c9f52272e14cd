"""The ``medasr lexicon`` recipe: compile, select and write the target terms."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import atomic_write, dumps
from medasr_cli.core.records import Term, TermCategory
from medasr_cli.core.spoken import with_spoken_forms
from medasr_cli.core.terms import bundled_rows
from medasr_cli.core.text import get_normalizer
from medasr_cli.lexicon.rare import DEFAULT_MAX_ZIPF, RARE_SOURCE, rare_words
from medasr_cli.lexicon.respell import RespellStats, respell_missing
from medasr_cli.lexicon.select import Candidate, merge, select
from medasr_cli.lexicon.sources import (
    MeasuredTerm,
    load_hunspell,
    load_pronunciations,
    load_seed,
    load_term_file,
    measured_terms,
    read_eval_report,
)
from medasr_cli.llm import BackendOptions, chat_options

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
    rare_words: bool = False  # propose rare words the model missed (needs from_eval)
    rare_max_zipf: float = DEFAULT_MAX_ZIPF
    respell: BackendOptions | None = None  # ask this chat endpoint for missing respellings
    respell_cache: Path | None = None  # a previous lexicon.jsonl whose LLM respellings are reused


@dataclass
class LexiconResult:
    """The selected terms (hardest first) and what happened to the rest."""

    terms: list[Term]
    normalizer: str
    read: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    occurrences: dict[str, int] = field(default_factory=dict)
    missed_as: dict[str, list[str]] = field(default_factory=dict)  # what eval heard instead
    respell: RespellStats | None = None

    def per_category(self) -> dict[str, int]:
        """Selected term counts by category."""
        counts = Counter(t.category.value for t in self.terms)
        return dict(sorted(counts.items()))

    @property
    def proposed(self) -> list[Term]:
        """The selected rare words that no vocabulary lists (to review before use)."""
        return [t for t in self.terms if is_proposed(t)]


def is_proposed(term: Term) -> bool:
    """True for a rare-word proposal that no other source confirmed."""
    return all(s.startswith(f"{RARE_SOURCE}:") for s in term.source.split("+"))


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
    if request.rare_words and request.from_eval is None:
        raise InputError("--rare-words: needs --from-eval (the words come from its utterances)")
    if not 0.0 < request.rare_max_zipf <= 8.0:
        raise InputError(f"--rare-max-zipf: {request.rare_max_zipf} is not in (0, 8]")


def build_lexicon(
    request: LexiconRequest, progress: Callable[[int, int], None] | None = None
) -> LexiconResult:
    """Read every source, merge, select, and attach spoken forms and pronunciations.

    With ``request.respell``, terms still without a respelling get one from the chat
    endpoint (``progress(done, total)`` follows those requests).
    """
    _check_options(request)
    chat = chat_options(request.respell, "--respell llm") if request.respell else None
    categories = parse_categories(request.categories)
    listed: list[Term] = []
    for path in request.terms_files:
        listed += load_term_file(path)
    if request.seed:
        listed += load_seed()
    if request.hunspell is not None:
        listed += load_hunspell(request.hunspell)
    report_normalizer, measured = _from_eval(request, listed)
    normalizer = request.normalizer or report_normalizer or "whisper"
    candidates = merge(listed, measured, request.min_occurrences)
    selection = select(
        candidates.values(),
        max_recall=request.max_recall,
        categories=categories,
        exclude_common=request.exclude_common,
        limit=request.limit,
    )
    terms = _finish(selection.kept, normalizer, request.pronunciations)
    log.debug("lexicon: %d of %d terms selected", len(terms), len(candidates))
    if not terms:
        raise InputError(
            "no terms left after selection (loosen --max-recall, --category or --limit)"
        )
    stats = None
    if chat is not None:
        terms, stats = respell_missing(terms, chat, request.respell_cache, progress)
    return LexiconResult(
        terms=terms,
        normalizer=normalizer,
        read=len(candidates),
        dropped=selection.dropped,
        occurrences={
            c.term.text: c.occurrences for c in selection.kept if c.occurrences is not None
        },
        missed_as={m.term.text: m.missed_as for m in measured if m.missed_as},
        respell=stats,
    )


def _from_eval(
    request: LexiconRequest, listed: Sequence[Term]
) -> tuple[str | None, list[MeasuredTerm]]:
    """The report's normaliser and measured rows: its per-term recall, then rare words."""
    if request.from_eval is None:
        return None, []
    path = request.from_eval
    report = read_eval_report(path)
    measured = measured_terms(report, path.name)
    if request.rare_words:
        vocabulary = [
            *(t.text for t in listed),
            *(m.term.text for m in measured),
            *(text for text, _, _ in bundled_rows()),
        ]
        measured += rare_words(report.utterances, vocabulary, path.name, request.rare_max_zipf)
    if not measured:
        rare = " and no rare word the model missed" if request.rare_words else ""
        raise InputError(
            f"{path}: the report has no per-term results{rare} (no term of eval's vocabulary "
            "occurs in its references: give eval --terms, or lexicon --rare-words)"
        )
    log.debug("%s: %d measured rows", path, len(measured))
    return report.normalizer, measured


def _finish(kept: Sequence[Candidate], normalizer: str, pronunciations: Path | None) -> list[Term]:
    """Spoken forms and respellings: your file, then the term's own, then the bundled table."""
    normalize = get_normalizer(normalizer)
    defaults = load_pronunciations()
    overrides = load_pronunciations(pronunciations) if pronunciations else {}
    terms = []
    for cand in kept:
        term = with_spoken_forms(cand.term, normalize)
        key = term.text.lower()
        if key in overrides or (term.pronunciation is None and key in defaults):
            respelling = overrides.get(key) or defaults[key]
            update = {"pronunciation": respelling, "pronunciation_source": None}
            term = term.model_copy(update=update)
        terms.append(term)
    return terms


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
