"""WER/CER, term recall/precision, medical WER and breakdowns for reference/hypothesis pairs.

Medical WER (M-WER, ``medical_wer`` in every :class:`TermStats`) is the WER over
the reference words inside medical-term occurrences (see
:mod:`medasr_cli.evaluate.terms`): in ``terms`` and ``per_category`` and in each
breakdown group's ``terms`` a word covered by several terms counts once; in a
``per_term`` row only that term's occurrences count. ``None`` without term words.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jiwer
from pydantic import BaseModel, Field

from medasr_cli.core.records import Term
from medasr_cli.core.spoken import spelling_key, with_spoken_forms
from medasr_cli.core.text import Normalizer, get_normalizer
from medasr_cli.evaluate.terms import (
    PatternIndex,
    TermCounts,
    compile_terms,
    match_terms,
    medical_counts,
    term_spans,
    vocabulary_in,
)


@dataclass
class Pair:
    """One utterance to score."""

    id: str
    reference: str
    hypothesis: str
    metadata: dict[str, Any] = field(default_factory=dict)
    audio_filepath: str | None = None
    duration: float | None = None


class ErrorCounts(BaseModel):
    utterances: int = 0
    ref_words: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_chars: int = 0
    char_errors: int = 0
    wer: float = 0.0
    cer: float = 0.0


class TermStats(BaseModel):
    term: str | None = None
    category: str | None = None
    expected: int = 0
    hits: int = 0
    false_positives: int = 0
    recall: float | None = None
    precision: float | None = None
    missed_as: list[str] = Field(default_factory=list)
    medical_ref_words: int = 0  # reference words inside term occurrences
    medical_errors: int = 0  # their substitutions + deletions + insertions inside a term
    medical_wer: float | None = None  # M-WER = medical_errors / medical_ref_words


class GroupResult(BaseModel):
    value: str
    counts: ErrorCounts
    terms: TermStats


class UtteranceResult(BaseModel):
    id: str
    audio_filepath: str | None = None
    duration: float | None = None
    reference: str
    hypothesis: str
    ref_norm: str
    hyp_norm: str
    wer: float
    substitutions: int
    deletions: int
    insertions: int
    terms_expected: list[str] = Field(default_factory=list)
    terms_missed: list[str] = Field(default_factory=list)
    medical_ref_words: int = 0
    medical_errors: int = 0
    metadata: dict[str, Any] = Field(default_factory=dict)


class EvalReport(BaseModel):
    """Everything ``medasr eval`` measured; ``medasr lexicon --from-eval`` reads ``per_term``."""

    format_version: int = 1
    normalizer: str
    source: dict[str, Any] = Field(default_factory=dict)
    overall: ErrorCounts
    terms: TermStats
    per_term: list[TermStats] = Field(default_factory=list)
    per_category: list[TermStats] = Field(default_factory=list)
    breakdowns: dict[str, list[GroupResult]] = Field(default_factory=dict)
    utterances: list[UtteranceResult] = Field(default_factory=list)


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _finish_counts(c: ErrorCounts) -> ErrorCounts:
    errors = c.substitutions + c.deletions + c.insertions
    c.wer = errors / c.ref_words if c.ref_words else float(errors > 0)
    c.cer = c.char_errors / c.ref_chars if c.ref_chars else float(c.char_errors > 0)
    return c


def _term_stats(
    counts: TermCounts, term: str | None = None, category: str | None = None
) -> TermStats:
    top = sorted(set(counts.missed_as), key=counts.missed_as.count, reverse=True)[:5]
    return TermStats(
        term=term,
        category=category,
        expected=counts.expected,
        hits=counts.hits,
        false_positives=counts.false_positives,
        recall=_ratio(counts.hits, counts.expected),
        precision=_ratio(counts.hits, counts.hits + counts.false_positives),
        missed_as=top,
        medical_ref_words=counts.medical_ref_words,
        medical_errors=counts.medical_errors,
        medical_wer=_ratio(counts.medical_errors, counts.medical_ref_words),
    )


def _add(into: TermCounts, other: TermCounts, medical: bool = True) -> None:
    """Add ``other``'s counts; ``medical=False`` leaves the M-WER counts (set from span unions)."""
    into.expected += other.expected
    into.hits += other.hits
    into.false_positives += other.false_positives
    into.missed_as.extend(other.missed_as)
    if medical:
        into.medical_ref_words += other.medical_ref_words
        into.medical_errors += other.medical_errors


def breakdown_value(metadata: dict[str, Any], field_name: str) -> str:
    """The group an utterance belongs to; ``snr_bucket`` is derived from ``snr_db`` (5 dB bins)."""
    if field_name in metadata:
        return str(metadata[field_name])
    if field_name == "snr_bucket" and isinstance(metadata.get("snr_db"), int | float):
        lo = 5 * math.floor(float(metadata["snr_db"]) / 5)
        return f"{lo}-{lo + 5} dB"
    return "(none)"


def scored_terms(
    terms: Sequence[Term], vocabulary: Sequence[Term], texts: Sequence[str], norm: Normalizer
) -> list[Term]:
    """``terms`` as given, then the ``vocabulary`` terms that can occur in ``texts`` (with
    their derived spoken forms) and that are not one of ``terms`` under another spelling."""
    if not vocabulary:
        return list(terms)
    keys = {spelling_key(t.text) for t in terms}
    out = list(terms)
    for term in vocabulary_in(vocabulary, texts):
        key = spelling_key(term.text)
        if key not in keys:
            keys.add(key)
            out.append(with_spoken_forms(term, norm))
    return out


def evaluate_pairs(
    pairs: Sequence[Pair],
    *,
    normalizer: str = "clinical",
    terms: Sequence[Term] = (),
    vocabulary: Sequence[Term] = (),
    by: Sequence[str] = (),
    source: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Score hypotheses against references with one normaliser for text and terms.

    ``terms`` are matched as given (their own spoken forms); ``vocabulary`` is a large list
    (the bundled one) of which only the terms that occur in the references or hypotheses
    are matched, each with its derived spoken forms (other spellings, possessives,
    abbreviation expansions).
    """
    norm = get_normalizer(normalizer)
    refs = [norm(p.reference) for p in pairs]
    hyps = [norm(p.hypothesis) for p in pairs]
    patterns = compile_terms(scored_terms(terms, vocabulary, [*refs, *hyps], norm), norm)
    index = PatternIndex(patterns)
    category_of = {pat.term: pat.category for pat in patterns}

    overall = ErrorCounts()
    per_term: dict[str, TermCounts] = defaultdict(TermCounts)
    group_counts: dict[str, dict[str, ErrorCounts]] = {f: defaultdict(ErrorCounts) for f in by}
    group_terms: dict[str, dict[str, TermCounts]] = {f: defaultdict(TermCounts) for f in by}
    total_terms = TermCounts()
    per_cat: dict[str, TermCounts] = defaultdict(TermCounts)
    results: list[UtteranceResult] = []
    for i, (pair, ref, hyp) in enumerate(zip(pairs, refs, hyps, strict=True)):
        ref_w, hyp_w = ref.split(), hyp.split()
        words_out = jiwer.process_words(ref, hyp)
        chars_out = jiwer.process_characters(ref, hyp) if ref or hyp else None
        s, d, n_ins = words_out.substitutions, words_out.deletions, words_out.insertions
        char_err = 0 if chars_out is None else (
            chars_out.substitutions + chars_out.deletions + chars_out.insertions
        )  # fmt: skip
        alignment = words_out.alignments[0]
        active = index.select(ref_w, hyp_w)  # the patterns that can occur here
        matched = match_terms(ref_w, hyp_w, alignment, active)
        utt_terms = TermCounts()
        utt_cats: dict[str, TermCounts] = defaultdict(TermCounts)
        for term, c in matched.items():
            _add(per_term[term], c)
            _add(utt_terms, c, medical=False)
            _add(utt_cats[category_of[term]], c, medical=False)
        # M-WER over the union of the spans, so a word inside two terms counts once.
        spans = term_spans(ref_w, active)
        utt_terms.medical_ref_words, utt_terms.medical_errors = medical_counts(
            (sp for term_sp in spans.values() for sp in term_sp), alignment
        )
        for cat, cat_counts in utt_cats.items():
            cat_counts.medical_ref_words, cat_counts.medical_errors = medical_counts(
                (sp for t, term_sp in spans.items() if category_of[t] == cat for sp in term_sp),
                alignment,
            )
            _add(per_cat[cat], cat_counts)
        _add(total_terms, utt_terms)
        targets = [overall]
        for f in by:
            value = breakdown_value(pair.metadata, f)
            targets.append(group_counts[f][value])
            _add(group_terms[f][value], utt_terms)
        for tgt in targets:
            tgt.utterances += 1
            tgt.ref_words += len(ref_w)
            tgt.substitutions += s
            tgt.deletions += d
            tgt.insertions += n_ins
            tgt.ref_chars += len(ref)
            tgt.char_errors += char_err
        results.append(
            UtteranceResult(
                id=pair.id,
                audio_filepath=pair.audio_filepath,
                duration=pair.duration,
                reference=pair.reference,
                hypothesis=pair.hypothesis,
                ref_norm=ref,
                hyp_norm=hyp,
                wer=(s + d + n_ins) / len(ref_w) if ref_w else float(n_ins > 0),
                substitutions=s,
                deletions=d,
                insertions=n_ins,
                terms_expected=[t for t, c in matched.items() if c.expected],
                terms_missed=[t for t, c in matched.items() if c.hits < c.expected],
                medical_ref_words=utt_terms.medical_ref_words,
                medical_errors=utt_terms.medical_errors,
                metadata=pair.metadata,
            )
        )
        if progress is not None:
            progress(i + 1, len(pairs))

    term_rows = [_term_stats(c, t, category_of[t]) for t, c in per_term.items()]
    term_rows.sort(key=lambda r: (r.recall if r.recall is not None else 2.0, r.term or ""))
    return EvalReport(
        normalizer=normalizer,
        source=source or {},
        overall=_finish_counts(overall),
        terms=_term_stats(total_terms),
        per_term=term_rows,
        per_category=[_term_stats(c, category=k) for k, c in sorted(per_cat.items())],
        breakdowns={
            f: [
                GroupResult(
                    value=v,
                    counts=_finish_counts(group_counts[f][v]),
                    terms=_term_stats(group_terms[f][v]),
                )
                for v in sorted(group_counts[f])
            ]
            for f in by
        },
        utterances=results,
    )
