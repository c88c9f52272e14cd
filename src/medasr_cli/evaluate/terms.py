"""Medical-term recall and precision on the word alignment.

A term is a sequence of normalised words (its text and its spoken forms are
all variants). For each reference n-gram equal to a variant the term is
*expected*; it is a *hit* when the hypothesis words aligned to those positions
are exactly that n-gram (no substitution, deletion or insertion inside). A
hypothesis n-gram equal to a variant that is not part of a hit is a *false
positive*.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jiwer import AlignmentChunk

from medasr_cli.core.records import Term
from medasr_cli.core.text import Normalizer


@dataclass
class TermPattern:
    term: str
    category: str
    variants: list[tuple[str, ...]]


@dataclass
class TermCounts:
    expected: int = 0
    hits: int = 0
    false_positives: int = 0
    missed_as: list[str] = field(default_factory=list)


def compile_terms(terms: Sequence[Term], normalize: Normalizer) -> list[TermPattern]:
    """Normalise each term and its spoken forms into word-tuple variants."""
    patterns = []
    for t in terms:
        variants = []
        for form in [t.text, *t.spoken_forms]:
            v = tuple(normalize(form).split())
            if v and v not in variants:
                variants.append(v)
        if variants:
            patterns.append(TermPattern(t.text, t.category.value, variants))
    return patterns


def _ref_to_hyp(
    alignment: Sequence[AlignmentChunk], n_ref: int
) -> tuple[list[int | None], list[bool]]:
    """For each reference word: the aligned hypothesis index (None if deleted), and whether equal."""
    mapping: list[int | None] = [None] * n_ref
    equal = [False] * n_ref
    for chunk in alignment:
        if chunk.type in ("equal", "substitute"):
            for k in range(chunk.ref_end_idx - chunk.ref_start_idx):
                mapping[chunk.ref_start_idx + k] = chunk.hyp_start_idx + k
                equal[chunk.ref_start_idx + k] = chunk.type == "equal"
    return mapping, equal


def _heard_as(hyp: Sequence[str], r2h: Sequence[int | None], i: int, n: int) -> str:
    """The hypothesis words between the aligned neighbours of reference span ``[i, i+n)``."""
    before = [j for j in r2h[:i] if j is not None]
    after = [j for j in r2h[i + n :] if j is not None]
    lo = before[-1] + 1 if before else 0
    hi = after[0] if after else len(hyp)
    return " ".join(hyp[lo:hi]) or "(deleted)"


def _occurrences(tokens: Sequence[str], variant: tuple[str, ...]) -> list[int]:
    n = len(variant)
    return [i for i in range(len(tokens) - n + 1) if tuple(tokens[i : i + n]) == variant]


def match_terms(
    ref: Sequence[str],
    hyp: Sequence[str],
    alignment: Sequence[AlignmentChunk],
    patterns: Sequence[TermPattern],
) -> dict[str, TermCounts]:
    """Count expected/hit/false-positive per term for one utterance."""
    r2h, equal = _ref_to_hyp(alignment, len(ref))
    out: dict[str, TermCounts] = {}
    for pat in patterns:
        counts = TermCounts()
        hit_spans: set[int] = set()  # hyp start indices of hits
        for variant in pat.variants:
            n = len(variant)
            for i in _occurrences(ref, variant):
                counts.expected += 1
                start = r2h[i]
                exact = start is not None and all(
                    equal[i + k] and r2h[i + k] == start + k for k in range(n)
                )
                if exact and start is not None:
                    counts.hits += 1
                    hit_spans.add(start)
                else:
                    counts.missed_as.append(_heard_as(hyp, r2h, i, n))
        for variant in pat.variants:
            for j in _occurrences(hyp, variant):
                if j not in hit_spans:
                    counts.false_positives += 1
        if counts.expected or counts.false_positives:
            out[pat.term] = counts
    return out
