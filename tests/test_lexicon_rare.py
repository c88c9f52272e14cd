"""``medasr lexicon --from-eval --rare-words``: rare words the model missed that no vocabulary
lists, from the eval report's per-utterance texts and wordfreq's English frequencies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import error_lines, jsonl_records, run_cli
from medasr_cli.core.errors import InputError
from medasr_cli.core.records import TermCategory
from medasr_cli.core.terms import bundled_terms
from medasr_cli.evaluate.metrics import Pair, evaluate_pairs
from medasr_cli.evaluate.run import write_report
from medasr_cli.lexicon import LexiconRequest, build_lexicon
from medasr_cli.lexicon.rare import is_rare, word_counts

PAIRS = [
    Pair("a", "Started on tirzepatide by Dr Worthington.", "started on tears a pa tide by doctor worth ington"),
    Pair("b", "Tirzepatide was well tolerated.", "tirzepatide was well tolerated"),
    Pair("c", "Continue apixaban, tenderness in the iliac fossa.", "continue a pixie ban tenderness in the iliac fossa"),
    Pair("d", "Review in the clinic.", "review in the click"),
]  # fmt: skip


@pytest.fixture
def report(tmp_path: Path) -> Path:
    """A real eval report scored with the bundled vocabulary, as `eval` without --terms does."""
    path = tmp_path / "report.json"
    write_report(evaluate_pairs(PAIRS, vocabulary=bundled_terms()), path)
    return path


def test_word_frequencies_come_from_wordfreq() -> None:
    assert is_rare("tirzepatide", 3.0) and is_rare("fossa", 3.0)
    assert not is_rare("clinic", 3.0) and not is_rare("worthington", 3.0)  # Zipf 3.16
    assert is_rare("worthington", 3.5)


def test_word_recall_from_the_utterances_alignment(report: Path) -> None:
    utterances = evaluate_pairs(PAIRS).utterances
    counts = word_counts(utterances)
    assert (counts["tirzepatide"].expected, counts["tirzepatide"].hits) == (2, 1)
    assert counts["tirzepatide"].missed_as == ["tears a pa tide"]
    assert (counts["fossa"].expected, counts["fossa"].hits) == (1, 1)
    assert counts["clinic"].missed_as == ["click"]


def test_rare_missed_words_outside_every_vocabulary_are_proposed(report: Path) -> None:
    result = build_lexicon(LexiconRequest(from_eval=report, rare_words=True))
    rows = {t.text: t for t in result.terms}
    # apixaban is the bundled vocabulary's (measured per term); fossa was heard right;
    # clinic and worthington are not rare; tirzepatide is in no vocabulary and was missed once
    assert [t.text for t in result.proposed] == ["tirzepatide"]
    rare = rows["tirzepatide"]
    assert rare.source == "rare-word:report.json" and rare.category is TermCategory.other
    assert rare.prior_recall == 0.5 and result.occurrences["tirzepatide"] == 2
    assert result.missed_as["tirzepatide"] == ["tears a pa tide"]
    assert rows["apixaban"].source == "eval:report.json"
    # a higher threshold lets the surname through: why it is off by default and marked
    wider = build_lexicon(LexiconRequest(from_eval=report, rare_words=True, rare_max_zipf=3.5))
    assert {t.text for t in wider.proposed} == {"tirzepatide", "worthington"}


def test_rare_words_are_off_by_default_and_follow_the_filters(report: Path, tmp_path: Path) -> None:
    assert not build_lexicon(LexiconRequest(from_eval=report)).proposed
    femur = tmp_path / "femur.txt"  # so that something is left after the filters
    femur.write_text("femur\tanatomy\n")
    strict = build_lexicon(
        LexiconRequest(from_eval=report, rare_words=True, min_occurrences=3, terms_files=[femur])
    )
    assert not strict.proposed  # twice in the references: too few occurrences
    low = build_lexicon(LexiconRequest(from_eval=report, rare_words=True, max_recall=0.4))
    assert not low.proposed and low.dropped["recall above --max-recall"] >= 1  # recall 0.5
    mine = tmp_path / "mine.txt"
    mine.write_text("tirzepatide\tdrug\n")
    listed = build_lexicon(LexiconRequest(from_eval=report, rare_words=True, terms_files=[mine]))
    assert not listed.proposed  # your list has it: a drug term, not a proposal
    assert {t.text: t.category for t in listed.terms}["tirzepatide"] is TermCategory.drug


def test_a_report_without_term_rows_needs_rare_words(tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    write_report(evaluate_pairs(PAIRS), path)  # no terms at all
    with pytest.raises(InputError, match="the report has no per-term results"):
        build_lexicon(LexiconRequest(from_eval=path))
    result = build_lexicon(LexiconRequest(from_eval=path, rare_words=True))
    assert [t.text for t in result.proposed] == ["tirzepatide"]
    with pytest.raises(InputError, match="--rare-words: needs --from-eval"):
        build_lexicon(LexiconRequest(seed=True, rare_words=True))
    with pytest.raises(InputError, match="--rare-max-zipf"):
        build_lexicon(LexiconRequest(from_eval=path, rare_words=True, rare_max_zipf=0))


def test_cli_marks_and_counts_the_proposals(report: Path, tmp_path: Path) -> None:
    out = tmp_path / "lex"
    proc = run_cli("lexicon", "--from-eval", str(report), "--rare-words", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "rare words proposed (review)" in proc.stdout and "tears a pa tide" in proc.stdout
    rows = {r["text"]: r for r in jsonl_records(out / "lexicon.jsonl")}
    assert rows["tirzepatide"]["source"] == "rare-word:report.json"
    proc = run_cli("lexicon", "--seed", "--rare-words", "-o", str(tmp_path / "x"))
    assert proc.returncode == 2 and "--rare-words: needs --from-eval" in error_lines(proc)[0]


def test_old_report_loads(report: Path, tmp_path: Path) -> None:
    """A report written before utterances kept normalised text still gives per-term rows."""
    data = json.loads(report.read_text())
    data["utterances"] = []
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    result = build_lexicon(LexiconRequest(from_eval=old, rare_words=True))
    assert not result.proposed and "apixaban" in {t.text for t in result.terms}
