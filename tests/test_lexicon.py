"""``medasr lexicon``: sources, selection, spoken forms, outputs and bad input."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from helpers import error_lines, run_cli
from medasr_cli.core.errors import InputError
from medasr_cli.core.records import Term, TermCategory
from medasr_cli.core.spoken import spelling_key, with_spoken_forms
from medasr_cli.core.terms import load_terms
from medasr_cli.core.text import get_normalizer
from medasr_cli.evaluate.metrics import Pair, evaluate_pairs
from medasr_cli.evaluate.run import write_report
from medasr_cli.lexicon import LexiconRequest, build_lexicon, spoken_forms, write_lexicon
from medasr_cli.lexicon.select import is_common
from medasr_cli.lexicon.sources import _seed_rows, common_words, load_seed

WHISPER = get_normalizer("whisper")


# --- spoken forms -----------------------------------------------------------------


def test_possessive_spoken_forms_include_the_normaliser_output() -> None:
    forms = spoken_forms("Crohn's disease", WHISPER)
    assert "Crohn disease" in forms
    assert "Crohns disease" in forms
    assert "crohn is disease" in forms  # what the whisper normaliser makes of "Crohn's"
    assert "Graves disease" in spoken_forms("Graves' disease")


@pytest.mark.parametrize(
    ("british", "american"),
    [
        ("haematoma", "hematoma"),
        ("oedema", "edema"),
        ("oesophagus", "esophagus"),
        ("anaemia", "anemia"),
        ("paediatric", "pediatric"),
        ("caesarean section", "cesarean section"),
        ("cardiac catheterisation", "cardiac catheterization"),
        ("tumour", "tumor"),
        ("diarrhoea", "diarrhea"),
    ],
)
def test_british_and_american_spellings_are_spoken_forms_of_each_other(
    british: str, american: str
) -> None:
    assert american in spoken_forms(british)
    assert british in spoken_forms(american)
    assert spelling_key(british) == spelling_key(american)


def test_abbreviations_carry_spoken_expansions() -> None:
    assert spoken_forms("b.i.d.")[0] == "twice daily"
    assert "milligrams" in spoken_forms("mg")
    assert "chronic obstructive pulmonary disease" in spoken_forms("COPD")
    assert "X Y Z Q" in spoken_forms("XYZQ")  # unknown capitals: spelled letters
    assert with_spoken_forms(Term(text="XYZQ")).category is TermCategory.abbreviation


def test_spoken_forms_let_eval_count_other_spellings() -> None:
    """A reference written 'Crohns disease ... edema' counts as the terms only via spoken forms."""
    pairs = [Pair(id="u1", reference="Known Crohns disease with edema.", hypothesis="x")]
    bare = [Term(text="Crohn's disease"), Term(text="oedema")]
    report = evaluate_pairs(pairs, terms=bare)
    assert report.terms.expected == 0
    with_forms = [with_spoken_forms(t, WHISPER) for t in bare]
    report = evaluate_pairs(pairs, terms=with_forms)
    assert {r.term: r.expected for r in report.per_term} == {"Crohn's disease": 1, "oedema": 1}


# --- bundled vocabulary -----------------------------------------------------------


def test_bundled_seed_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the seed vocabulary must not touch the network")

    monkeypatch.setattr(socket, "socket", no_network)
    _seed_rows.cache_clear()
    common_words.cache_clear()
    terms = load_seed()
    assert len(terms) >= 3000
    by_cat = {c: sum(t.category is c for t in terms) for c in TermCategory}
    for cat in ("drug", "condition", "anatomy", "procedure", "abbreviation"):
        assert by_cat[TermCategory(cat)] >= 100, by_cat
    origins = {t.source for t in terms}
    assert {"seed:drugbank-open", "seed:icd10cm", "seed:curated"} <= origins
    texts = {t.text for t in terms}
    assert {"metoprolol", "apixaban", "Crohn's disease", "cholecystectomy", "b.i.d."} <= texts
    assert "heart" in common_words() and is_common("heart attack")
    assert not is_common("metoprolol")


# --- selection from an eval report ------------------------------------------------


@pytest.fixture
def eval_report(tmp_path: Path) -> Path:
    """A real eval report: metoprolol always missed, haematoma half, apixaban always right."""
    terms = [
        Term(text="metoprolol", category=TermCategory.drug),
        Term(text="apixaban", category=TermCategory.drug),
        Term(text="haematoma", category=TermCategory.condition),
        Term(text="Crohn's disease", category=TermCategory.condition),
    ]
    pairs = [
        Pair("a", "Start metoprolol and apixaban.", "Start metro prolol and apixaban."),
        Pair(
            "b",
            "Metoprolol was held; apixaban continued.",
            "Meta pro lol was held; apixaban continued.",
        ),
        Pair("c", "A small haematoma was seen.", "A small haematoma was seen."),
        Pair("d", "The haematoma has grown.", "The hema toma has grown."),
        Pair("e", "History of Crohn's disease.", "History of crones disease."),
    ]
    report = evaluate_pairs(pairs, terms=terms, source={"test": True})
    path = tmp_path / "report.json"
    write_report(report, path)
    return path


def test_from_eval_keeps_low_recall_terms_ranked(eval_report: Path) -> None:
    result = build_lexicon(LexiconRequest(from_eval=eval_report, max_recall=0.8, min_occurrences=2))
    assert [t.text for t in result.terms] == ["metoprolol", "haematoma"]
    assert result.terms[0].prior_recall == 0.0
    assert result.terms[1].prior_recall == 0.5
    assert result.terms[1].category is TermCategory.condition
    assert "hematoma" in result.terms[1].spoken_forms
    assert result.dropped["recall above --max-recall"] == 1  # apixaban
    assert result.dropped["too few occurrences in the eval report"] == 1  # Crohn's, once
    assert result.normalizer == "clinical"  # taken from the report (eval's default)


def test_from_eval_merges_with_a_term_file_and_the_seed(eval_report: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine.txt"
    user.write_text("hematoma\tcondition\nApixaban\tdrug\nfemur\tanatomy\n", encoding="utf-8")
    result = build_lexicon(
        LexiconRequest(
            terms_files=[user], from_eval=eval_report, seed=True, max_recall=0.8,
            categories=["condition", "drug"], exclude_common=True, limit=30,
        )
    )  # fmt: skip
    texts = [t.text for t in result.terms]
    # measured first, lowest recall first (Crohn's disease: once, recall 0; hematoma: 0.5)
    assert set(texts[:2]) == {"metoprolol", "Crohn's disease"} and texts[2] == "hematoma"
    assert "Apixaban" not in texts and "apixaban" not in texts  # the model already gets it
    assert "femur" not in texts  # category not selected
    assert len(texts) == 30
    merged = result.terms[2]
    assert merged.prior_recall == 0.5 and "mine.txt" in merged.source and "eval:" in merged.source
    assert {t.category for t in result.terms} <= {TermCategory.condition, TermCategory.drug}


def test_exclude_common_and_limit(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("heart\tanatomy\nkidney stone\tcondition\nmetoprolol\tdrug\nfemur\tanatomy\n")
    result = build_lexicon(LexiconRequest(terms_files=[f], exclude_common=True))
    assert sorted(t.text for t in result.terms) == ["femur", "metoprolol"]
    result = build_lexicon(LexiconRequest(terms_files=[f], limit=1))
    assert len(result.terms) == 1 and result.dropped["over --limit"] == 3


def test_pronunciations_user_file_overrides_bundled(tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("metoprolol\tdrug\napixaban\tdrug\n")
    default = build_lexicon(LexiconRequest(terms_files=[f]))
    assert {t.text: t.pronunciation for t in default.terms}["metoprolol"] == "meh-TOH-pruh-lol"
    pron = tmp_path / "pronunciations.tsv"
    pron.write_text("# mine\nmetoprolol\tmet-OH-proh-lol\n")
    mine = build_lexicon(LexiconRequest(terms_files=[f], pronunciations=pron))
    table = {t.text: t.pronunciation for t in mine.terms}
    assert table == {"metoprolol": "met-OH-proh-lol", "apixaban": "uh-PIX-uh-ban"}


def test_hunspell_source(tmp_path: Path) -> None:
    dic = tmp_path / "med.dic"
    dic.write_text("3\nmetoprolol/M\nspherocytosis\nab\n")
    result = build_lexicon(LexiconRequest(hunspell=dic))
    assert sorted(t.text for t in result.terms) == ["metoprolol", "spherocytosis"]


def test_outputs_are_readable_by_load_terms(eval_report: Path, tmp_path: Path) -> None:
    result = build_lexicon(LexiconRequest(from_eval=eval_report, max_recall=0.8, min_occurrences=2))
    txt, jsonl = write_lexicon(result, tmp_path / "lex")
    assert [(t.text, t.category) for t in load_terms(txt)] == [
        ("metoprolol", TermCategory.drug),
        ("haematoma", TermCategory.condition),
    ]
    assert load_terms(jsonl) == result.terms


# --- the command --------------------------------------------------------------------


def test_cli_writes_terms_and_lexicon(eval_report: Path, tmp_path: Path) -> None:
    out = tmp_path / "lex"
    proc = run_cli(
        "lexicon", "--from-eval", str(eval_report), "--max-recall", "0.8",
        "--min-occurrences", "2", "--seed", "--category", "drug", "--limit", "5", "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "lowest-recall terms" in proc.stdout and "drug" in proc.stdout
    lines = (out / "terms.txt").read_text().splitlines()
    assert lines[1] == "metoprolol\tdrug" and len(lines) == 6
    records = [json.loads(x) for x in (out / "lexicon.jsonl").read_text().splitlines()]
    assert records[0]["prior_recall"] == 0.0 and len(records) == 5


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.txt", b"", "no terms (the file is empty)"),
        ("binary.txt", b"\x00\x01\x02PK\x03\x04", "binary file"),
        ("comments.txt", b"# only a comment\n\n", "no terms"),
    ],
)
def test_bad_term_file_is_one_line_exit_2(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    bad = tmp_path / name
    bad.write_bytes(content)
    out = tmp_path / "lex"
    proc = run_cli("lexicon", "--terms-file", str(bad), "-o", str(out))
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and message in lines[0] and name in lines[0], proc.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"term": "x"}]', "expected a JSON object"),
        ('{"per_term": []}', "missing field 'normalizer'"),
        ('{"audio_filepath": "a.wav", "duration": 1.0, "text": "hi"}', "not a medasr eval report"),
        ("not json at all", "not valid JSON"),
    ],
)
def test_eval_report_of_the_wrong_shape_is_one_line_exit_2(
    tmp_path: Path, content: str, message: str
) -> None:
    bad = tmp_path / "report.json"
    bad.write_text(content)
    out = tmp_path / "lex"
    proc = run_cli("lexicon", "--from-eval", str(bad), "-o", str(out))
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and message in lines[0] and "report.json" in lines[0], proc.stderr
    assert not out.exists()


def test_no_source_and_bad_category_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no term source"):
        build_lexicon(LexiconRequest())
    with pytest.raises(InputError, match="unknown category 'drugs'"):
        build_lexicon(LexiconRequest(seed=True, categories=["drugs"]))
