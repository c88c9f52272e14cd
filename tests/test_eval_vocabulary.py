"""``medasr eval`` without ``--terms``: recall of every bundled-vocabulary term in the references.

The issue's report: `eval` without `--terms` (as the README shows), then
`lexicon --from-eval` stopped with "the report has no per-term results".
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from helpers import jsonl_records, run_cli
from medasr_cli.core.records import Term, TermCategory
from medasr_cli.core.spoken import with_spoken_forms
from medasr_cli.core.terms import bundled_terms
from medasr_cli.core.text import get_normalizer
from medasr_cli.evaluate.metrics import Pair, evaluate_pairs, scored_terms
from medasr_cli.evaluate.terms import PatternIndex, compile_terms, vocabulary_in

PREDICTIONS = [
    ("The patient was started on metoprolol twice daily.", "the patient was started on metro prolol twice daily"),
    ("Continue apixaban and review in clinic.", "continue apixaban and review in clinic"),
    ("She has a history of Crohns disease with edema.", "she has a history of crones disease with edema"),
    ("A small haematoma was seen.", "a small haematoma was seen"),
]  # fmt: skip


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "preds.jsonl"
    rows = [{"audio_filepath": f"u{i}.wav", "duration": 2.0, "text": ref, "pred_text": hyp}
            for i, (ref, hyp) in enumerate(PREDICTIONS)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_eval_without_terms_then_lexicon_from_eval(manifest: Path, tmp_path: Path) -> None:
    report = tmp_path / "base.json"
    proc = run_cli("eval", "--manifest", str(manifest), "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert "terms from: bundled:seed (3660 terms)" in proc.stdout
    data = json.loads(report.read_text())
    assert data["source"]["terms"] == ["bundled:seed (3660 terms)"]
    rows = {r["term"]: (r["category"], r["expected"], r["hits"]) for r in data["per_term"]}
    assert rows["metoprolol"] == ("drug", 1, 0)
    assert rows["apixaban"] == ("drug", 1, 1)
    # other spellings (the vocabulary writes oedema, hematoma) and possessives count through
    # the derived spoken forms
    assert rows["Crohn's disease"] == ("condition", 1, 0)
    assert rows["oedema"][1:] == (1, 1) and rows["hematoma"][1:] == (1, 1)
    assert rows["b.i.d."] == ("abbreviation", 1, 1)  # said as "twice daily"
    out = tmp_path / "lex"
    proc = run_cli("lexicon", "--from-eval", str(report), "--max-recall", "0.8", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    texts = [t["text"] for t in jsonl_records(out / "lexicon.jsonl")]
    assert set(texts) == {"metoprolol", "Crohn's disease"}


def test_terms_is_repeatable_and_bundled_terms_adds_the_vocabulary(
    manifest: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("metoprolol\tdrug\n")
    b.write_text("haematoma\tcondition\nclinic\tother\n")
    report = tmp_path / "r.json"
    proc = run_cli("eval", "-m", str(manifest), "--terms", str(a), "--terms", str(b),
                   "--report", str(report))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["source"]["terms"] == [str(a), str(b)]  # your terms only
    assert {r["term"] for r in data["per_term"]} == {"metoprolol", "haematoma", "clinic"}
    proc = run_cli("eval", "-m", str(manifest), "--terms", str(b), "--bundled-terms",
                   "--report", str(report))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["source"]["terms"] == ["bundled:seed (3660 terms)", str(b)]
    terms = [r["term"] for r in data["per_term"]]
    # your "haematoma" and the bundled "hematoma" are one term, counted once, yours shown
    assert "haematoma" in terms and "hematoma" not in terms
    assert {"metoprolol", "apixaban", "clinic"} <= set(terms)
    proc = run_cli("eval", "-m", str(manifest), "--no-bundled-terms", "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["source"]["terms"] == [] and data["per_term"] == []


def _clinic_pairs(n: int, seed: int = 0) -> tuple[list[Pair], list[Term]]:
    """``n`` utterances, each with two of 40 bundled terms; a fifth of the words misheard,
    and every fifth hypothesis ends with one of the terms."""
    rng = random.Random(seed)
    vocabulary = [t for t in bundled_terms() if t.category is not TermCategory.abbreviation]
    used = rng.sample(vocabulary, 40)
    filler = ["the", "patient", "was", "seen", "in", "clinic", "today", "and", "is", "doing",
              "well", "since", "last", "review"]  # fmt: skip
    pairs = []
    for i in range(n):
        words = rng.sample(filler, 10)
        for term in rng.sample(used, 2):
            words.insert(rng.randrange(len(words)), term.text)
        ref = " ".join(words)
        hyp = " ".join(w if rng.random() > 0.2 else "uh" for w in ref.split())
        if i % 5 == 0:  # a term the reference does not have: a false positive
            hyp += " " + rng.choice(used).text
        pairs.append(Pair(f"u{i}", ref, hyp))
    return pairs, used


def test_the_shortcuts_change_no_count() -> None:
    """Narrowing the vocabulary and indexing the patterns only skip work: the report equals the
    one for the same terms (with their spoken forms) matched in full against every utterance."""
    pairs, used = _clinic_pairs(60)
    norm = get_normalizer("clinical")
    names = {t.text for t in used} | {t.text for t in bundled_terms()[::5]}  # a fifth: quick
    vocabulary = [t for t in bundled_terms() if t.text in names]
    fast = evaluate_pairs(pairs, vocabulary=vocabulary)
    slow = evaluate_pairs(pairs, terms=[with_spoken_forms(t, norm) for t in vocabulary])
    assert fast.per_term == slow.per_term and fast.per_category == slow.per_category
    assert fast.terms == slow.terms and fast.utterances == slow.utterances
    assert fast.terms.expected >= 120 and fast.terms.false_positives > 0


def test_a_large_vocabulary_compiles_only_what_occurs() -> None:
    """300 utterances that use 40 vocabulary terms: a few dozen of the 3,660 terms are compiled,
    and each utterance is matched against a handful of patterns."""
    pairs, _ = _clinic_pairs(300)
    norm = get_normalizer("clinical")
    texts = [norm(t) for p in pairs for t in (p.reference, p.hypothesis)]
    vocabulary = bundled_terms()
    kept = vocabulary_in(vocabulary, texts)
    assert len(kept) < 250, len(kept)  # 40 used + abbreviations (always kept) + a few more
    patterns = compile_terms(scored_terms([], vocabulary, texts, norm), norm)
    index = PatternIndex(patterns)
    per_utterance = [len(index.select(t.split())) for t in texts]
    assert max(per_utterance) < 20
    report = evaluate_pairs(pairs, vocabulary=vocabulary)
    assert len({r.term for r in report.per_term if r.expected}) >= 40


def test_abbreviations_and_spelling_variants_survive_the_narrowing() -> None:
    vocabulary = [Term(text="b.i.d.", category=TermCategory.abbreviation),
                  Term(text="haematoma", category=TermCategory.condition),
                  Term(text="Crohn's disease", category=TermCategory.condition),
                  Term(text="Sjögren syndrome", category=TermCategory.condition),
                  Term(text="apixaban", category=TermCategory.drug)]  # fmt: skip
    norm = get_normalizer("clinical")
    texts = [norm("twice daily, a hematoma, crohns disease and sjogren syndrome")]
    kept = {t.text for t in vocabulary_in(vocabulary, texts)}
    assert kept == {"b.i.d.", "haematoma", "Crohn's disease", "Sjögren syndrome"}
