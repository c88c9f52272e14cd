"""Rare words the model got wrong that no vocabulary lists: proposals for a person to review.

An eval report keeps each utterance's normalised reference and hypothesis; their word
alignment (jiwer, as ``eval`` computed it) gives every reference word's recall. A word
is proposed when it is letters only, rare in English (its Zipf frequency in the English
list of the maintained ``wordfreq`` package is below ``max_zipf``; 3.0 is once per
million words), not a word of any vocabulary term (the bundled one, the report's
terms, ``--terms-file``, ``--hunspell``), and the model missed it at least once.
Proposals carry ``source: rare-word:<report>`` so they can be told apart and reviewed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import jiwer

from medasr_cli.core.records import Term, TermCategory
from medasr_cli.core.spoken import spelling_key
from medasr_cli.evaluate.metrics import UtteranceResult
from medasr_cli.evaluate.terms import heard_as, ref_to_hyp
from medasr_cli.lexicon.sources import MeasuredTerm

RARE_SOURCE = "rare-word"
DEFAULT_MAX_ZIPF = 3.0
_WORD = re.compile(r"[a-z]{3,}")


@dataclass
class WordCounts:
    """How often a reference word was expected and recognised, and what was heard instead."""

    expected: int = 0
    hits: int = 0
    missed_as: list[str] = field(default_factory=list)


def word_counts(utterances: Iterable[UtteranceResult]) -> dict[str, WordCounts]:
    """Recall of every reference word over the utterances' normalised texts."""
    out: dict[str, WordCounts] = {}
    for u in utterances:
        ref, hyp = u.ref_norm.split(), u.hyp_norm.split()
        if not ref:
            continue
        alignment = jiwer.process_words(" ".join(ref), " ".join(hyp)).alignments[0]
        r2h, equal = ref_to_hyp(alignment, len(ref))
        for i, word in enumerate(ref):
            counts = out.setdefault(word, WordCounts())
            counts.expected += 1
            if equal[i]:
                counts.hits += 1
            else:
                counts.missed_as.append(heard_as(hyp, r2h, i, 1))
    return out


def vocabulary_words(texts: Iterable[str]) -> set[str]:
    """Every word of every term, under its spelling key ("Crohn's disease" -> crohn, disease)."""
    return {w for text in texts for w in re.findall(r"[a-z]+", spelling_key(text))}


def is_rare(word: str, max_zipf: float) -> bool:
    """True when ``word`` is rarer in English than ``max_zipf`` (wordfreq's Zipf scale)."""
    from wordfreq import zipf_frequency

    return bool(zipf_frequency(word, "en") < max_zipf)


def rare_words(
    utterances: Sequence[UtteranceResult],
    vocabulary: Iterable[str],
    report_name: str,
    max_zipf: float = DEFAULT_MAX_ZIPF,
) -> list[MeasuredTerm]:
    """The rare words the model missed that ``vocabulary`` lacks, with their recall."""
    known = vocabulary_words(vocabulary)
    out = []
    for word, counts in word_counts(utterances).items():
        if counts.hits == counts.expected or not _WORD.fullmatch(word):
            continue
        if spelling_key(word) in known or not is_rare(word, max_zipf):
            continue
        recall = counts.hits / counts.expected
        term = Term(
            text=word,
            category=TermCategory.other,
            source=f"{RARE_SOURCE}:{report_name}",
            prior_recall=recall,
        )
        out.append(MeasuredTerm(term, counts.expected, counts.hits, recall, counts.missed_as))
    return out
