"""Medical-term recall and precision on the word alignment.

A term is a sequence of normalised words (its text and its spoken forms are
all variants). For each reference n-gram equal to a variant the term is
*expected*; it is a *hit* when the hypothesis words aligned to those positions
are exactly that n-gram (no substitution, deletion or insertion inside). A
hypothesis n-gram equal to a variant that is not part of a hit is a *false
positive*.

Medical WER (M-WER) is the WER restricted to the reference words inside term
occurrences (the union of the expected n-grams' spans, each word counted once):
errors are the substitutions and deletions of those words plus the words
inserted inside a span (between two of its words; an insertion just before or
after a span does not count), divided by the number of those reference words.

A large vocabulary (the bundled one has thousands of terms) is first narrowed to
the terms whose words occur in the texts (:func:`vocabulary_in`), and each
utterance is matched only against the patterns whose first word it contains
(:class:`PatternIndex`); both only skip work, never change a count.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from jiwer import AlignmentChunk

from medasr_cli.core.records import Term, TermCategory
from medasr_cli.core.spoken import is_abbreviation, spelling_key
from medasr_cli.core.text import Normalizer


@dataclass
class TermPattern:
    term: str
    category: str
    variants: list[tuple[str, ...]]


Span = tuple[int, int]  # reference word indices [start, end) of one term occurrence


@dataclass
class TermCounts:
    expected: int = 0
    hits: int = 0
    false_positives: int = 0
    missed_as: list[str] = field(default_factory=list)
    medical_ref_words: int = 0  # M-WER denominator: reference words inside term occurrences
    medical_errors: int = 0  # M-WER numerator: S + D of those words + insertions inside a span


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


class PatternIndex:
    """Patterns by the first word of each variant, to match an utterance only against those
    that can occur in it."""

    def __init__(self, patterns: Sequence[TermPattern]) -> None:
        self.patterns = list(patterns)
        self._by_first: dict[str, set[int]] = defaultdict(set)
        for i, pat in enumerate(self.patterns):
            for variant in pat.variants:
                self._by_first[variant[0]].add(i)

    def select(self, *token_lists: Sequence[str]) -> list[TermPattern]:
        """The patterns with a variant starting at some word of ``token_lists``, in order."""
        hits: set[int] = set()
        for tokens in token_lists:
            for word in set(tokens):
                hits |= self._by_first.get(word, set())
        return [self.patterns[i] for i in sorted(hits)]


# Spelled numbers: the normalisers write them as digits, so a term's "two" is no evidence.
_NUMBER_WORDS = frozenset(
    ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
     "twelve", "first", "second", "third")
)  # fmt: skip


@lru_cache(maxsize=65536)
def _key(word: str) -> str:
    return spelling_key(word)


@lru_cache(maxsize=65536)
def _key_words(text: str) -> tuple[str, ...]:
    """The words of ``text`` (spelling key: American, no diacritics or possessive 's) that
    must all occur for it to match; short words and spelled numbers are left out."""
    words = re.findall(r"[a-z]+", spelling_key(text))
    return tuple(w for w in words if len(w) > 2 and w not in _NUMBER_WORDS)


def vocabulary_in(terms: Iterable[Term], texts: Iterable[str]) -> list[Term]:
    """The terms of a large vocabulary that can occur in ``texts`` (normalised text).

    A term is kept when each of its words occurs in the texts under its spelling key
    (so "haematoma" is kept for "hematoma", "Crohn's disease" for "crohn is disease" and
    "crohns disease"),
    and always when it is an abbreviation, whose spoken forms share no word with it
    ("b.i.d." and "twice daily"). This is a cheap superset: matching decides.
    """
    seen = {_key(w) for text in texts for w in set(text.split())}
    seen |= {w[:-1] for w in seen if w.endswith("s")}  # "crohns": a possessive written bare
    kept = []
    for term in terms:
        words = _key_words(term.text)
        abbreviation = term.category is TermCategory.abbreviation or is_abbreviation(term.text)
        if abbreviation or all(w in seen for w in words):
            kept.append(term)
    return kept


def ref_to_hyp(
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


def heard_as(hyp: Sequence[str], r2h: Sequence[int | None], i: int, n: int) -> str:
    """The hypothesis words between the aligned neighbours of reference span ``[i, i+n)``."""
    before = [j for j in r2h[:i] if j is not None]
    after = [j for j in r2h[i + n :] if j is not None]
    lo = before[-1] + 1 if before else 0
    hi = after[0] if after else len(hyp)
    return " ".join(hyp[lo:hi]) or "(deleted)"


def _occurrences(tokens: Sequence[str], variant: tuple[str, ...]) -> list[int]:
    n = len(variant)
    return [i for i in range(len(tokens) - n + 1) if tuple(tokens[i : i + n]) == variant]


def term_spans(ref: Sequence[str], patterns: Sequence[TermPattern]) -> dict[str, list[Span]]:
    """The reference spans of every occurrence of every variant, per term (terms that occur)."""
    out: dict[str, list[Span]] = {}
    for pat in patterns:
        spans = [(i, i + len(v)) for v in pat.variants for i in _occurrences(ref, v)]
        if spans:
            out[pat.term] = spans
    return out


def medical_counts(spans: Iterable[Span], alignment: Sequence[AlignmentChunk]) -> tuple[int, int]:
    """M-WER counts over the union of ``spans``: (reference words, errors)."""
    covered: set[int] = set()
    inside: set[int] = set()  # insertion points strictly between two words of one span
    for start, end in spans:
        covered.update(range(start, end))
        inside.update(range(start + 1, end))
    errors = 0
    for chunk in alignment:
        if chunk.type in ("substitute", "delete"):
            errors += len(covered.intersection(range(chunk.ref_start_idx, chunk.ref_end_idx)))
        elif chunk.type == "insert" and chunk.ref_start_idx in inside:
            errors += chunk.hyp_end_idx - chunk.hyp_start_idx
    return len(covered), errors


def match_terms(
    ref: Sequence[str],
    hyp: Sequence[str],
    alignment: Sequence[AlignmentChunk],
    patterns: Sequence[TermPattern],
) -> dict[str, TermCounts]:
    """Count expected/hit/false-positive and the M-WER counts per term for one utterance."""
    r2h, equal = ref_to_hyp(alignment, len(ref))
    spans = term_spans(ref, patterns)
    out: dict[str, TermCounts] = {}
    for pat in patterns:
        counts = TermCounts()
        hit_spans: set[int] = set()  # hyp start indices of hits
        for i, end in spans.get(pat.term, []):
            n = end - i
            counts.expected += 1
            start = r2h[i]
            exact = start is not None and all(
                equal[i + k] and r2h[i + k] == start + k for k in range(n)
            )
            if exact and start is not None:
                counts.hits += 1
                hit_spans.add(start)
            else:
                counts.missed_as.append(heard_as(hyp, r2h, i, n))
        if pat.term in spans:
            counts.medical_ref_words, counts.medical_errors = medical_counts(
                spans[pat.term], alignment
            )
        for variant in pat.variants:
            for j in _occurrences(hyp, variant):
                if j not in hit_spans:
                    counts.false_positives += 1
        if counts.expected or counts.false_positives:
            out[pat.term] = counts
    return out
