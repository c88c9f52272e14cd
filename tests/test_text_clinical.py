"""The ``clinical`` normaliser: every rule of its table, and Whisper's output everywhere else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import SENTENCES
from medasr_cli.core.errors import InputError
from medasr_cli.core.records import Term, TermCategory
from medasr_cli.core.text import (
    CLINICAL_RULES,
    NORMALIZERS,
    ClinicalRule,
    clinical_rules_applied,
    get_normalizer,
)
from medasr_cli.evaluate.metrics import Pair, evaluate_pairs
from medasr_cli.llm import grammar as g

CLINICAL = get_normalizer("clinical")
WHISPER = get_normalizer("whisper")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "eval.md"


@pytest.mark.parametrize("rule", CLINICAL_RULES, ids=lambda r: r.canonical)
def test_every_form_of_a_rule_normalises_the_same(rule: ClinicalRule) -> None:
    assert len(rule.examples) >= 2
    for example in rule.examples:
        assert CLINICAL(example) == rule.expected, example
        assert CLINICAL(CLINICAL(example)) == rule.expected, example  # idempotent
    assert any(rule.canonical in clinical_rules_applied(e) for e in rule.examples)


def test_whisper_deletes_mm_which_is_why_clinical_exists() -> None:
    assert WHISPER("a 5 mm lesion") == "a 5 lesion"
    assert WHISPER("a 5mm lesion") == "a 5 mm lesion"  # Whisper is not even consistent
    assert WHISPER("a five millimetre lesion") == "a 5 millimeter lesion"
    for text in ("a 5 mm lesion", "a 5mm lesion", "a five millimetre lesion"):
        assert CLINICAL(text) == "a 5 mm lesion"
    assert WHISPER("120 mm Hg") == "120 hg"
    assert CLINICAL("120 mm Hg") == "120 mmhg"
    # The filler is still removed: "mm" is a unit only right after a number.
    assert CLINICAL("Mm, I see. Mm-hmm.") == WHISPER("Mm, I see. Mm-hmm.") == "i see"
    assert CLINICAL("mm okay, 5 mm") == "okay 5 mm"


def test_dotted_and_undotted_abbreviations_meet() -> None:
    assert WHISPER("b.i.d.") == "b i d" and WHISPER("BID") == "bid"
    for text in ("b.i.d.", "B.I.D.", "b. i. d.", "b.i.d", "BID", "bid"):
        assert CLINICAL(f"Metoprolol 25 mg {text} p.o.") == "metoprolol 25 mg bid po", text
    assert WHISPER("p.o.") == "p 0"  # Whisper reads the "o" as zero
    assert CLINICAL("p.o.") == CLINICAL("PO") == "po"


def test_longer_abbreviations_win_over_the_shorter_ones_inside_them() -> None:
    assert CLINICAL("q.d.s. and q.d.") == "qds and qd"
    assert CLINICAL("n.p.o., then p.o.") == "npo then po"
    assert CLINICAL("p.r.n. or p.r.") == "prn or pr"
    assert CLINICAL("Q.H.S.") == "qhs"


def test_ordinary_words_are_not_made_into_abbreviations_or_units() -> None:
    for text in (
        "The statin was stopped.",
        "Subcutaneous injection into the abdomen.",
        "Ivy and the pods were on the porch.",
        "I'm on it, so it's fine.",
        "Gram stain showed gram negative rods.",  # "gram" without a number
        "Admitted to the intensive care unit.",  # "unit" without a number
        "He lost a few millimetres of height.",
        "First degree heart block.",
        "Examine L4/L5 and C5/C6.",
        "and/or",
        "e.g. the i.e. case",
        "The degree of stenosis.",
        "How many milligrams?",
    ):
        assert CLINICAL(text) == WHISPER(text), text
        assert clinical_rules_applied(text) == [], text


def test_units_after_spelled_and_written_numbers_agree() -> None:
    assert CLINICAL("5mg") == CLINICAL("5 mg") == CLINICAL("five milligrams") == "5 mg"
    assert CLINICAL("one milligram") == CLINICAL("1 mg") == "one mg"  # Whisper's "one"
    assert CLINICAL("two and a half milligrams") == CLINICAL("2.5mg") == "2.5 mg"
    assert CLINICAL("ten milligrams per kilogram") == CLINICAL("10 mg/kg") == "10 mg per kg"
    assert CLINICAL("a 5-mm cyst") == CLINICAL("a five mm cyst") == "a 5 mm cyst"
    assert CLINICAL("temperature 38.4") == "temperature 38.4"


@pytest.mark.parametrize(
    "number", ["1", "one", "1.5", "one point five", "two and a half", "1,000", "one hundred and one",
               "zero point five", "twenty five", "0.5", "12", "half"],
)  # fmt: skip
def test_numbers_are_exactly_whispers(number: str) -> None:
    # Whisper keeps "mg", so with it the outputs must be identical, quirks ("one.5") included.
    assert CLINICAL(f"{number} mg daily") == WHISPER(f"{number} mg daily")
    assert CLINICAL(f"{number} milligrams daily") == WHISPER(f"{number} mg daily")
    assert CLINICAL(f"{number} mm daily") == WHISPER(f"{number} mg daily").replace(" mg ", " mm ")


class _Plain(dict[str, str]):
    """Slot values for the template phrase banks: plain words, no units or abbreviations."""

    def __missing__(self, key: str) -> str:
        value = {"P": "She", "p": "she", "pos": "Her", "pos_low": "her", "obj": "her",
                 "age": "54", "date": "3 March", "mrn": "123 456 7890", "num": "2",
                 "value": "140 over 90", "vital": "72", "term": "metoprolol",
                 "dose": "two tablets", "freq": "twice daily", "route": "by mouth",
                 "name": "Mrs Okafor", "doc": "Haddad"}.get(key)  # fmt: skip
        return value if value is not None else "aspirin"


def _ordinary_sentences() -> list[str]:
    banks = [*g.OPENERS.values(), *g.FILLERS.values(), *g.CLOSERS.values()]
    banks += [bank for by_style in g.TERM_SENTENCES.values() for bank in by_style.values()]
    templates = [t for bank in banks for t in bank]
    handmade = [
        "Twenty five years ago she had two children, and paid $5 for it.",
        "It's about fifty percent better, um, since the 3rd of May.",
        "He's got a haemoglobin of one hundred and twelve.",
        "Dr Smith saw him at 10.30 on St Patrick's day.",
        "Mm-hmm, yeah, it hurts around here, hmm.",
        "We'll review her in six weeks' time, or sooner.",
        "Three times in the last twenty-four hours.",
        "The tumour measured one point five by two.",
        "She can't climb one flight of stairs (breathless).",
        "Ninety-eight percent on room air.",
    ]
    return [t.format_map(_Plain()) for t in templates] + handmade + list(SENTENCES)


def test_ordinary_sentences_normalise_exactly_as_whisper() -> None:
    compared = 0
    for sentence in _ordinary_sentences():
        if clinical_rules_applied(sentence):
            continue  # e.g. "...Crohn's..." never; a literal unit or abbreviation would be
        assert CLINICAL(sentence) == WHISPER(sentence), sentence
        compared += 1
    assert compared >= 60


def test_clinical_is_selectable_and_unknown_names_fail() -> None:
    assert NORMALIZERS[0] == "clinical" and {"whisper", "basic", "none"} <= set(NORMALIZERS)
    for name in NORMALIZERS:
        assert isinstance(get_normalizer(name)("5 mg"), str)
    with pytest.raises(InputError, match="unknown normaliser 'fancy'"):
        get_normalizer("fancy")


def test_terms_go_through_the_clinical_rules_too() -> None:
    term = Term(text="b.i.d.", category=TermCategory.abbreviation)
    pair = Pair("u", "Metoprolol 25 mg b.i.d.", "metoprolol twenty five milligrams BID")
    clinical = evaluate_pairs([pair], normalizer="clinical", terms=[term])
    assert clinical.overall.wer == 0.0 and clinical.per_term[0].hits == 1
    whisper = evaluate_pairs([pair], normalizer="whisper", terms=[term])
    assert whisper.overall.wer > 0 and whisper.per_term[0].hits == 0


def test_docs_table_lists_every_rule() -> None:
    section = DOCS.read_text().split("## The clinical normaliser", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `")]
    listed = [re.fullmatch(r"\s*`([^`]+)`\s*", cells[2]) for cells in rows]
    assert [m.group(1) for m in listed if m] == [r.canonical for r in CLINICAL_RULES]
    for cells in rows:  # the example pair: `a` = `b` → `normalised`
        a, b, out = re.findall(r"`([^`]+)`", cells[4])
        assert CLINICAL(a) == CLINICAL(b) == out, cells[4]
