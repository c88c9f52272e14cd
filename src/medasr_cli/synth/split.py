"""Long dictations as several utterances: sentences, a spoken-duration estimate, grouping.

``medasr train`` drops utterances longer than ``model.train_ds.max_duration``
(24 s by default), while an LLM dictation of 60-140 words lasts 20-50 s when
spoken. A script whose estimated duration is over ``--max-utterance-s`` is cut
at sentence boundaries into consecutive parts, each estimated under the limit.

The estimate is made before any audio exists, from the text the TTS engine
speaks (numbers, units and abbreviations spoken out): :data:`LEAD_S` of
silence and lead-in plus one second per :data:`CHARS_PER_S` letters, where a
token the engine spells out (``B``, ``HbA1c``, ``eGFR``) counts three per
character. Letters track the length of medical words far better than a word
count does: "echocardiogram" is one word of six syllables. Measured on 380
sentences of clinical dictation (espeak-ng ``en-gb``, ``en-029``,
``en-gb-scotland``, ``en-us-nyc`` at 150 words a minute, the slowest default,
and Piper ``joe`` at ``length_scale`` 1.15, the slowest default), slowed to
speed 0.9 (the slowest speed perturbation), the longest sentence took 0.97 of
this estimate and the median 0.69; at typical settings the median is about 0.55.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from medasr_cli.core.spoken import drop_stress_marks

CHARS_PER_S = 8.5
LEAD_S = 0.6

# A word before a full stop that never ends a sentence: titles and Latin abbreviations.
_NEVER_ENDS = frozenset(
    ["dr", "mr", "mrs", "ms", "prof", "st", "mt", "vs", "e.g", "i.e", "cf", "viz", "approx", "fig"]
)
_END = re.compile(r"[.!?]+[\"'’”)\]]*(?=\s)")
_NEXT = re.compile(r"\s+[\"'‘“(\[]*(\w)")
_LINE_BREAK = re.compile(r"[^\S\n]*\n\s*")
_WORD = re.compile(r"\w+(?:['’]\w+)*")
_SPELLED = re.compile(r"^\w$|^.+[A-Z]|\d")  # a letter, inner capitals or digits: "eGFR", "A1c"


@dataclass(frozen=True)
class Part:
    """One utterance's worth of a script: its transcript, TTS text and target terms."""

    text: str
    tts_text: str
    terms: tuple[str, ...]
    estimate_s: float


def estimate_seconds(tts_text: str) -> float:
    """Conservative spoken duration of ``tts_text`` (the verbalised text) in seconds."""
    return LEAD_S + spoken_chars(tts_text) / CHARS_PER_S


def spoken_chars(tts_text: str) -> int:
    """Characters of the words in ``tts_text``; three for each one of a spelled-out token.

    A respelling's stress capitals (``uh-PIX-uh-ban``) do not make it a spelled token.
    """
    words = _WORD.findall(drop_stress_marks(tts_text))
    return sum(len(w) * (3 if _SPELLED.search(w) else 1) for w in words)


def term_spans(text: str, terms: Sequence[str]) -> list[tuple[int, int]]:
    """Where each term occurs in ``text`` as whole words (case-insensitive)."""
    spans = []
    for term in terms:
        if term.strip():
            pattern = re.compile(r"(?<!\w)" + re.escape(term.strip()) + r"(?!\w)", re.IGNORECASE)
            spans += [m.span() for m in pattern.finditer(text)]
    return spans


def _ends_sentence(text: str, stop: re.Match[str], start: int) -> bool:
    """Whether the punctuation ``stop`` ends the sentence that began at ``start``."""
    nxt = _NEXT.match(text, stop.end())
    if nxt is None or not (nxt.group(1).isupper() or nxt.group(1).isdigit()):
        return False  # a lower-case word follows: "b.i.d. and", "approx. five"
    if not stop.group().startswith("."):
        return True
    before = text[start : stop.start()].split()
    word = before[-1].lstrip("\"'‘“([") if before else ""
    if word.lower() in _NEVER_ENDS:
        return False  # "Dr. Patel", "e.g. Warfarin"
    if len(word) == 1 and word.isupper():
        return False  # an initial: "J. Smith"
    return not (word.isdigit() and len(before) == 1)  # a list number: "1. Continue"


def sentence_spans(text: str, terms: Sequence[str] = ()) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``, never cutting inside one of ``terms``.

    A sentence ends at ``.``, ``!`` or ``?`` (and any closing quote or bracket)
    followed by a capitalised word or a digit, or at a line break. A full stop
    inside a word never ends one (``2.5 mg``), nor does one after a title
    (``Dr.``), ``e.g.``/``i.e.``/``approx.``, an initial or a list number; a dotted
    clinical abbreviation (``b.i.d.``, ``p.r.n.``) does when a capital follows.
    """
    protected = term_spans(text, terms)
    cuts: list[int] = []
    start = 0
    candidates = sorted(
        [(m.end(), m) for m in _END.finditer(text)]
        + [(m.start(), None) for m in _LINE_BREAK.finditer(text)],
        key=lambda c: c[0],
    )
    for pos, stop in candidates:
        if pos <= start or not text[start:pos].strip():
            continue
        if any(a < pos < b for a, b in protected):
            continue
        if stop is not None and not _ends_sentence(text, stop, start):
            continue
        cuts.append(pos)
        start = pos
    spans = []
    for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True):
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        if piece.strip():
            spans.append((a + lead, a + len(piece.rstrip())))
    return spans


def split_sentences(text: str, terms: Sequence[str] = ()) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`)."""
    return [text[a:b] for a, b in sentence_spans(text, terms)]


def group_sentences(speech_s: Sequence[float], limit_s: float) -> list[tuple[int, int]]:
    """Consecutive sentence groups ``[i, j)`` whose estimates stay within ``limit_s``.

    ``speech_s`` is each sentence's speaking time without :data:`LEAD_S`, which
    a group pays once. The fewest groups that fit, and among those the most even
    (least sum of squared durations), so no part is a short remainder and every
    part keeps as much margin under the limit as it can. A sentence longer than
    the limit on its own is a group by itself.
    """
    n = len(speech_s)
    best: list[tuple[int, float, int]] = [(0, 0.0, 0)] + [(n + 1, 0.0, 0)] * n  # (groups, sumsq, j)
    for i in range(1, n + 1):
        total = LEAD_S
        for j in range(i - 1, -1, -1):
            total += speech_s[j]
            if total > limit_s and j < i - 1:
                break
            cand = (best[j][0] + 1, best[j][1] + total * total, j)
            if cand[:2] < best[i][:2]:
                best[i] = cand
    groups, i = [], n
    while i > 0:
        groups.append((best[i][2], i))
        i = best[i][2]
    return groups[::-1]


def terms_in(text: str, terms: Sequence[str]) -> tuple[str, ...]:
    """The ``terms`` that occur in ``text``: literally, else after the ``eval`` normaliser."""
    from medasr_cli.core.records import Term
    from medasr_cli.llm.match import term_present

    return tuple(t for t in terms if term_present(text, Term(text=t)))


def split_script(
    text: str,
    terms: Sequence[str],
    verbalize: Callable[[str], str],
    limit_s: float | None,
) -> list[Part]:
    """``text`` as one part when it fits ``limit_s`` (or there is no limit), else several.

    One part is the whole script, unchanged (its terms are the script's). Parts
    are consecutive sentence groups (:func:`group_sentences`), each with the
    terms that occur in it; a term is never cut, since no boundary falls inside one.
    """
    whole_tts = verbalize(text)
    whole = Part(text, whole_tts, tuple(terms), estimate_seconds(whole_tts))
    if not limit_s or whole.estimate_s <= limit_s:
        return [whole]
    spans = sentence_spans(text, terms)
    if len(spans) < 2:
        return [whole]
    speech = [spoken_chars(verbalize(text[a:b])) / CHARS_PER_S for a, b in spans]
    groups = group_sentences(speech, limit_s)
    if len(groups) < 2:  # the sentences' estimates differ a little from the whole's
        return [whole]
    parts = []
    for i, j in groups:
        piece = text[spans[i][0] : spans[j - 1][1]]
        tts = verbalize(piece)
        parts.append(Part(piece, tts, terms_in(piece, terms), estimate_seconds(tts)))
    return parts
