"""Medical WER (M-WER): WER over the reference words inside term occurrences, exact counts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import jiwer

from medasr_cli.core.records import Term, TermCategory
from medasr_cli.evaluate.metrics import EvalReport, Pair, evaluate_pairs
from medasr_cli.evaluate.terms import medical_counts
from medasr_cli.lexicon.sources import load_eval_report

AF = Term(text="atrial fibrillation", category=TermCategory.condition)
APIXABAN = Term(text="apixaban", category=TermCategory.drug)


def _report(ref: str, hyp: str, terms: Sequence[Term] = (AF,)) -> EvalReport:
    return evaluate_pairs([Pair("u", ref, hyp)], normalizer="none", terms=terms)


def _mwer(report: EvalReport) -> tuple[int, int, float | None]:
    t = report.terms
    return t.medical_ref_words, t.medical_errors, t.medical_wer


def test_substitution_inside_a_two_word_term() -> None:
    r = _report("known atrial fibrillation on warfarin", "known atrial fibulation on warfarin")
    assert _mwer(r) == (2, 1, 0.5)
    assert r.overall.wer == 0.2  # 1 error in 5 words
    assert (r.per_term[0].medical_ref_words, r.per_term[0].medical_errors) == (2, 1)


def test_deletion_of_a_term_word() -> None:
    assert _mwer(_report("atrial fibrillation noted", "fibrillation noted")) == (2, 1, 0.5)
    assert _mwer(_report("atrial fibrillation noted", "noted")) == (2, 2, 1.0)


def test_insertion_inside_a_term_span_counts() -> None:
    r = _report("known atrial fibrillation", "known atrial the fibrillation")
    assert _mwer(r) == (2, 1, 0.5)
    r = _report("known atrial fibrillation", "known atrial uh the fibrillation")
    assert _mwer(r) == (2, 2, 1.0)  # every inserted word counts


def test_insertion_just_outside_a_term_span_does_not_count() -> None:
    r = _report("known atrial fibrillation noted", "known the atrial fibrillation the noted")
    assert _mwer(r) == (2, 0, 0.0)
    assert r.overall.insertions == 2 and r.overall.wer == 0.5
    # Between two adjacent terms is outside both spans.
    r = _report("atrial fibrillation apixaban", "atrial fibrillation and apixaban", [AF, APIXABAN])
    assert _mwer(r) == (3, 0, 0.0)


def test_errors_outside_terms_do_not_count() -> None:
    r = _report("the patient has atrial fibrillation", "a patient had atrial fibrillation")
    assert _mwer(r) == (2, 0, 0.0)
    assert r.overall.wer == 0.4


def test_no_term_words_gives_none() -> None:
    r = _report("no terms here", "no terms there")
    assert _mwer(r) == (0, 0, None)
    assert r.per_category == [] and r.per_term == []
    r = _report("no terms here", "no terms there", [])
    assert _mwer(r) == (0, 0, None)
    # A false positive alone has no reference words: its row exists, its M-WER is None.
    r = _report("started on rivaroxaban", "started on apixaban", [APIXABAN])
    assert (r.per_term[0].false_positives, r.per_term[0].medical_wer) == (1, None)
    assert r.per_category[0].medical_wer is None


def test_a_word_inside_two_terms_counts_once() -> None:
    fib = Term(text="fibrillation", category=TermCategory.condition)
    r = _report("atrial fibrillation", "atrial fibulation", [AF, fib])
    assert _mwer(r) == (2, 1, 0.5)  # not 3 words
    rows = {t.term: (t.medical_ref_words, t.medical_errors) for t in r.per_term}
    assert rows == {"atrial fibrillation": (2, 1), "fibrillation": (1, 1)}
    assert (r.per_category[0].medical_ref_words, r.per_category[0].medical_errors) == (2, 1)


def test_spoken_forms_are_term_occurrences() -> None:
    bid = Term(text="b.i.d.", category=TermCategory.abbreviation, spoken_forms=["twice daily"])
    r = evaluate_pairs(
        [Pair("u", "metoprolol twice daily", "metoprolol twice a day")],
        normalizer="whisper",
        terms=[bid],
    )
    # "twice daily" → "twice a day": "daily" substituted, "a" inserted before it or after it.
    assert r.terms.medical_ref_words == 2 and r.terms.medical_errors in (1, 2)


def test_per_category_breakdown_and_utterance_rows() -> None:
    pairs = [
        Pair("a", "atrial fibrillation on apixaban", "atrial fibrillation on apixaban",
             {"voice": "en-gb"}),
        Pair("b", "atrial fibrillation on apixaban", "atrial fibulation on a pixaban",
             {"voice": "en-us"}),
        Pair("c", "stable today", "stable to day", {"voice": "en-us"}),
    ]  # fmt: skip
    r = evaluate_pairs(pairs, normalizer="none", terms=[AF, APIXABAN], by=["voice"])
    # b: "fibrillation" substituted (1 of AF's 2 words); "apixaban" substituted, and the extra
    # word "a"/"pixaban" is outside a one-word span wherever the alignment puts it.
    assert _mwer(r) == (6, 2, 2 / 6)
    cats = {c.category: (c.medical_ref_words, c.medical_errors, c.medical_wer)
            for c in r.per_category}  # fmt: skip
    assert cats == {"condition": (4, 1, 0.25), "drug": (2, 1, 0.5)}
    voice = {g.value: g.terms for g in r.breakdowns["voice"]}
    assert (voice["en-gb"].medical_ref_words, voice["en-gb"].medical_wer) == (3, 0.0)
    assert (voice["en-us"].medical_ref_words, voice["en-us"].medical_errors) == (3, 2)  # c: none
    assert {g.value: g.counts.wer for g in r.breakdowns["voice"]}["en-us"] == 5 / 6
    rows = {u.id: (u.medical_ref_words, u.medical_errors) for u in r.utterances}
    assert rows == {"a": (3, 0), "b": (3, 2), "c": (0, 0)}


def test_medical_counts_on_a_hand_written_alignment() -> None:
    out = jiwer.process_words("a b c d e", "a x c y d")
    # a=, b→x, c=, insert y, d=, e deleted
    assert medical_counts([(1, 4)], out.alignments[0]) == (3, 2)  # b→x, and y between c and d
    assert medical_counts([(3, 5)], out.alignments[0]) == (2, 1)  # y is before d: outside
    assert medical_counts([], out.alignments[0]) == (0, 0)


def test_reports_stay_readable_by_lexicon_from_eval(tmp_path: Path) -> None:
    r = _report("known atrial fibrillation", "known a trial fibrillation")
    new = tmp_path / "new.json"
    new.write_text(r.model_dump_json())
    normalizer, measured = load_eval_report(new)
    assert normalizer == "none" and measured[0].term.text == "atrial fibrillation"
    # A report written before M-WER existed (no medical_* fields) still loads.
    data = json.loads(r.model_dump_json())
    for stats in [data["terms"], *data["per_term"], *data["per_category"]]:
        for key in ("medical_ref_words", "medical_errors", "medical_wer"):
            del stats[key]
    for u in data["utterances"]:
        del u["medical_ref_words"], u["medical_errors"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    assert load_eval_report(old)[1][0].recall == 0.0
    assert EvalReport.model_validate(data).terms.medical_wer is None
