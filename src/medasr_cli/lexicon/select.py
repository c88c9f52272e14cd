"""Merge term sources and keep the ones worth training on.

Terms from several sources meet under one spelling key (so "anaemia" from a
term file and "anemia" from an eval report are one term). The eval report's
recall decides which measured terms the model already gets right; the other
filters narrow by category and drop ordinary English; the ranking puts the
lowest recall first, then the rarest words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from medasr_cli.core.records import Term, TermCategory
from medasr_cli.core.shard import stable_hash
from medasr_cli.core.spoken import american, british, spelling_key
from medasr_cli.lexicon.sources import MeasuredTerm, common_words


@dataclass
class Candidate:
    """One merged term with what the sources said about it."""

    term: Term
    origins: list[str] = field(default_factory=list)
    occurrences: int | None = None  # times eval expected it (None: not measured)
    measured: bool = False  # measured often enough to trust its recall


def merge(
    listed: Iterable[Term], measured: Sequence[MeasuredTerm], min_occurrences: int
) -> dict[str, Candidate]:
    """Merge terms by spelling key; eval rows attach recall and occurrence counts.

    ``listed`` comes first and wins the spelling shown; a category other than
    ``other`` wins over ``other``; spoken forms are unioned.
    """
    merged: dict[str, Candidate] = {}
    for term in listed:
        _add(merged, term)
    for row in measured:
        cand = _add(merged, row.term, from_eval=True)
        cand.occurrences = row.expected
        cand.measured = row.expected >= max(1, min_occurrences) and row.recall is not None
        cand.term = cand.term.model_copy(update={"prior_recall": row.recall})
    return merged


def _add(merged: dict[str, Candidate], term: Term, from_eval: bool = False) -> Candidate:
    key = spelling_key(term.text)
    cand = merged.get(key)
    if cand is None:
        cand = merged[key] = Candidate(term=term)
    else:
        update: dict[str, object] = {}
        if cand.term.category is TermCategory.other and term.category is not TermCategory.other:
            update["category"] = term.category
        forms = list(dict.fromkeys([*cand.term.spoken_forms, *term.spoken_forms]))
        if forms != cand.term.spoken_forms:
            update["spoken_forms"] = forms
        if cand.term.pronunciation is None and term.pronunciation:
            update["pronunciation"] = term.pronunciation
            update["pronunciation_source"] = term.pronunciation_source
        if term.source not in cand.term.source.split("+"):
            update["source"] = f"{cand.term.source}+{term.source}"
        if update:
            cand.term = cand.term.model_copy(update=update)
    cand.origins.append("eval" if from_eval else term.source)
    return cand


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def is_common(text: str) -> bool:
    """True when every word of ``text`` is ordinary English (in either spelling)."""
    common = common_words()
    words = _words(text)
    return bool(words) and all(
        w in common or american(w) in common or british(w) in common for w in words
    )


def rarity(text: str) -> float:
    """Share of the term's words that are not ordinary English, in tenths (1.0: all rare)."""
    common = common_words()
    words = _words(text)
    rare = [w for w in words if w not in common and american(w) not in common]
    return round(len(rare) / len(words), 1) if words else 0.0


def rank_key(cand: Candidate) -> tuple[int, float, float, int]:
    """Lowest measured recall first; unmeasured after; then rarest; then a stable spread.

    The last key is a hash of the text, so ties do not favour one letter of the
    alphabet or one category.
    """
    recall = cand.term.prior_recall if cand.measured else None
    return (
        0 if recall is not None else 1,
        recall if recall is not None else 0.0,
        -rarity(cand.term.text),
        stable_hash(cand.term.text.lower()),
    )


@dataclass
class Selection:
    """The kept candidates in rank order and how many were dropped, by reason."""

    kept: list[Candidate]
    dropped: Counter[str]


def select(
    candidates: Iterable[Candidate],
    *,
    max_recall: float | None = None,
    categories: Sequence[TermCategory] = (),
    exclude_common: bool = False,
    limit: int | None = None,
) -> Selection:
    """Apply the filters in a fixed order and rank what is left."""
    dropped: Counter[str] = Counter()
    kept: list[Candidate] = []
    for cand in candidates:
        reason = _drop_reason(cand, max_recall, categories, exclude_common)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(cand)
    kept.sort(key=rank_key)
    if limit is not None and len(kept) > limit:
        dropped["over --limit"] += len(kept) - limit
        kept = kept[:limit]
    return Selection(kept=kept, dropped=dropped)


def _drop_reason(
    cand: Candidate,
    max_recall: float | None,
    categories: Sequence[TermCategory],
    exclude_common: bool,
) -> str | None:
    recall = cand.term.prior_recall
    only_eval = all(o == "eval" for o in cand.origins)
    if only_eval and not cand.measured:
        return "too few occurrences in the eval report"
    if cand.measured and max_recall is not None and recall is not None and recall > max_recall:
        return "recall above --max-recall"
    if categories and cand.term.category not in categories:
        return "category not selected"
    if exclude_common and is_common(cand.term.text):
        return "ordinary English word"
    return None
