"""``medasr script`` with the template backend: coverage, determinism, resume, shards, dedup."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from helpers import error_lines, run_cli
from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import read_records
from medasr_cli.core.records import Script, Term, TermCategory
from medasr_cli.core.spoken import with_spoken_forms
from medasr_cli.lexicon import LexiconRequest, build_lexicon
from medasr_cli.llm import BACKENDS, create_backend
from medasr_cli.llm.base import DictationRequest, Outcome, ScriptBackend, generator_info
from medasr_cli.llm.match import missing_terms, term_present
from medasr_cli.llm.prompts import load_prompt
from medasr_cli.llm.template import TemplateBackend, compose
from medasr_cli.script import ScriptRequest, generate_scripts, plan_requests
from medasr_cli.script.dedup import Deduper, jaccard, shingles

TERMS = [
    with_spoken_forms(t)
    for t in [
        Term(text="metoprolol", category=TermCategory.drug),
        Term(text="apixaban", category=TermCategory.drug),
        Term(text="Crohn's disease", category=TermCategory.condition),
        Term(text="haematoma", category=TermCategory.condition),
        Term(text="cholecystectomy", category=TermCategory.procedure),
        Term(text="scaphoid", category=TermCategory.anatomy),
        Term(text="b.i.d.", category=TermCategory.abbreviation),
        Term(text="mg", category=TermCategory.abbreviation),
        Term(text="SpO2", category=TermCategory.abbreviation),
        Term(text="c/o", category=TermCategory.abbreviation),
        Term(text="telemetry review", category=TermCategory.other),
    ]
]


def _records(path: Path) -> list[Script]:
    return [s for _, s in read_records(path, Script)]


def test_plan_covers_every_term_exactly_per_term_times() -> None:
    plan = plan_requests(TERMS, per_term=4, max_terms=3, seed=7)
    counts = Counter(t for r in plan for t in r.term_texts)
    assert set(counts.values()) == {4} and len(counts) == len(TERMS)
    assert all(1 <= len(r.terms) <= 3 for r in plan)
    assert len({r.id for r in plan}) == len(plan)
    assert [r.id for r in plan] == [
        r.id for r in plan_requests(TERMS, per_term=4, max_terms=3, seed=7)
    ]


def test_template_dictations_contain_their_terms_and_are_deterministic(tmp_path: Path) -> None:
    out = tmp_path / "scripts.jsonl"
    result = generate_scripts(TERMS, out, TemplateBackend(), ScriptRequest(per_term=5, seed=3))
    records = _records(out)
    assert result.written == len(records) == result.planned and not result.failures
    for rec in records:
        assert rec.terms and rec.text[0].isupper() and rec.text.endswith(".")
        terms = [t for t in TERMS if t.text in rec.terms]
        assert missing_terms(rec.text, terms) == [], rec
        assert rec.generator.backend == "template"
        extra = rec.generator.model_extra or {}
        assert extra["template_generated"] is True and rec.generator.seed == 3
    coverage = Counter(t for r in records for t in r.terms)
    assert all(coverage[t.text] >= 5 for t in TERMS)
    assert not result.short()
    again = tmp_path / "again.jsonl"
    generate_scripts(TERMS, again, TemplateBackend(), ScriptRequest(per_term=5, seed=3))
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.jsonl"
    generate_scripts(TERMS, other, TemplateBackend(), ScriptRequest(per_term=5, seed=4))
    assert {r.text for r in _records(other)}.isdisjoint({r.text for r in records})


def test_template_uses_abbreviations_dosages_and_several_note_types() -> None:
    texts = []
    for i, note in enumerate(["discharge summary", "referral letter", "operative note"]):
        req = DictationRequest(f"x{i}", tuple(TERMS[6:9]), note, "cardiology", "terse", seed=1)
        texts.append(compose(req))
    assert texts[0].startswith(("Discharge summary", "Mr", "Mrs", "Ms"))
    assert "Dear" in texts[1] or "grateful for your opinion" in texts[1]
    assert "Operation note" in texts[2]
    for text in texts:
        assert "b.i.d." in text and " mg " in f"{text} " and "SpO2" in text


def test_resume_appends_only_what_is_missing(tmp_path: Path) -> None:
    out = tmp_path / "scripts.jsonl"
    opts = ScriptRequest(per_term=3, seed=1)
    full = generate_scripts(TERMS, out, TemplateBackend(), opts)
    lines = out.read_text().splitlines(keepends=True)
    # keep half, and leave a torn last line as a crash would
    out.write_text("".join(lines[: len(lines) // 2]) + lines[-1][:25])
    resumed = generate_scripts(TERMS, out, TemplateBackend(), opts)
    assert resumed.existing == len(lines) // 2
    assert resumed.written == full.written - len(lines) // 2
    assert sorted(out.read_text().splitlines(keepends=True)) == sorted(lines)
    nothing = generate_scripts(TERMS, out, TemplateBackend(), opts)
    assert nothing.written == 0 and nothing.existing == nothing.planned


def test_shards_partition_the_run(tmp_path: Path) -> None:
    opts = ScriptRequest(per_term=4, seed=2)
    generate_scripts(TERMS, tmp_path / "all.jsonl", TemplateBackend(), opts)
    whole = {(r.id, r.text) for r in _records(tmp_path / "all.jsonl")}
    parts: list[set[tuple[str, str]]] = []
    for k in (1, 2, 3):
        path = tmp_path / f"part{k}.jsonl"
        shard_opts = ScriptRequest(per_term=4, seed=2, shard=(k, 3))
        result = generate_scripts(TERMS, path, TemplateBackend(), shard_opts)
        assert not result.short()  # coverage is checked against this shard's own plan
        parts.append({(r.id, r.text) for r in _records(path)} if path.exists() else set())
    assert all(a.isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    assert set().union(*parts) == whole
    assert all(parts)  # every shard got work


def test_deduper_exact_and_near() -> None:
    d = Deduper(0.8)
    base = (
        "The patient was started on metoprolol 25 mg twice daily for rate control, and the "
        "echocardiogram showed mild mitral regurgitation with preserved ejection fraction. "
        "She will be reviewed in the cardiology clinic in six weeks with a repeat ECG and "
        "renal function, sooner if her palpitations return."
    )
    assert d.check_and_add(base) is None
    assert d.check(base.upper() + "!") == "exact"
    assert d.check(base.replace("mild", "moderate")) == "near"
    assert d.check("Completely different text about a scaphoid fracture in the left wrist.") is None


def test_deduper_agrees_with_brute_force() -> None:
    texts = [compose(r) for r in plan_requests(TERMS, per_term=20, seed=5)]
    texts += [t.replace(".", ", today.", 1) for t in texts[:40]]  # near copies
    d = Deduper(0.8)
    kept: list[set[str]] = []
    for text in texts:
        sh = shingles(text)
        brute = any(jaccard(sh, k) >= 0.8 for k in kept)
        got = d.check_and_add(text)
        assert (got is not None) == brute
        if not brute:
            kept.append(sh)


class _SameTextBackend:
    """Returns one fixed dictation for every request: everything after the first is a duplicate."""

    name = "same"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, requests: Sequence[DictationRequest]) -> Iterator[Outcome]:
        for req in requests:
            self.calls += 1
            text = "Metoprolol and apixaban " + " ".join(req.term_texts) + " as discussed today."
            yield Outcome(req, text=text, generator=generator_info(req, self.name))

    def close(self) -> None:
        pass


def test_duplicates_are_regenerated_then_reported_never_written(tmp_path: Path) -> None:
    terms = [Term(text="alpha"), Term(text="beta"), Term(text="gamma")]
    backend = _SameTextBackend()
    assert isinstance(backend, ScriptBackend)
    out = tmp_path / "s.jsonl"
    opts = ScriptRequest(per_term=2, max_terms=1, max_variants=3)
    result = generate_scripts(terms, out, backend, opts)
    texts = [r.text for r in _records(out)]
    assert len(texts) == len(set(texts)) == result.written == 3  # one per distinct term
    assert len(result.duplicates) == 3  # each term's second dictation
    assert backend.calls == 3 + 3 * 3  # 3 kept + 3 duplicates tried in 3 variants each
    assert {t for t, have, need in result.short()} == {"alpha", "beta", "gamma"}


def test_term_matching_is_normalisation_aware() -> None:
    haem = with_spoken_forms(Term(text="haemoglobin"))
    crohn = with_spoken_forms(Term(text="Crohn's disease"))
    assert term_present("Her HAEMOGLOBIN was 84.", haem)
    assert term_present("Her hemoglobin was 84.", haem)
    assert term_present("Known Crohns disease.", crohn)
    assert not term_present("Known crone disease.", crohn)
    assert not term_present("haemoglobinopathy screen", Term(text="haemoglobin"))


def test_registry_and_prompt_validation(tmp_path: Path) -> None:
    assert set(BACKENDS) == {"template", "openai"}
    assert create_backend("template").name == "template"
    with pytest.raises(InputError, match="unknown backend"):
        create_backend("gpt")
    assert load_prompt().id.startswith("dictation_v1@")
    bad = tmp_path / "p.txt"
    bad.write_text("Write about $terms in $style.")
    with pytest.raises(InputError, match=r"missing placeholder\(s\) \$note_type, \$specialty"):
        load_prompt(bad)
    bad.write_text("$terms $note_type $specialty $style $patient")
    with pytest.raises(InputError, match=r"unknown placeholder \$patient"):
        load_prompt(bad)
    good = tmp_path / "good.txt"
    good.write_text('System.\n---\n$terms $note_type $specialty $style {"json": 1} costs $$5')
    prompt = load_prompt(good)
    req = DictationRequest("r", (TERMS[0],), "history", "cardiology", "formal", 0)
    system, user = prompt.messages(req)
    assert system["content"] == "System." and '"metoprolol" (drug)' in user["content"]
    assert user["content"].endswith('{"json": 1} costs $5')


def test_cli_offline_demo_from_seed(tmp_path: Path) -> None:
    lex = tmp_path / "lex"
    proc = run_cli("lexicon", "--seed", "--exclude-common", "--limit", "40", "-o", str(lex))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "scripts.jsonl"
    report = tmp_path / "coverage.json"
    args = ("script", "--terms", str(lex / "lexicon.jsonl"), "--out", str(out), "--per-term", "2")
    proc = run_cli(*args, "--report", str(report))
    assert proc.returncode == 0, proc.stderr
    assert "all 40 terms reached their target" in proc.stdout
    cov = json.loads(report.read_text())
    assert cov["short"] == [] and min(cov["coverage"].values()) >= 2
    n = len(out.read_text().splitlines())
    proc = run_cli(*args)
    assert proc.returncode == 0 and len(out.read_text().splitlines()) == n


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--shard", "5/4"), "--shard"),
        (("--note-type", "poem"), "--note-type: unknown value 'poem'"),
        (("--prompt-file", "x.txt"), "--prompt-file applies to --backend openai only"),
    ],
)
def test_cli_bad_options_are_one_line_exit_2(
    tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    terms = tmp_path / "t.txt"
    terms.write_text("metoprolol\tdrug\n")
    out = tmp_path / "s.jsonl"
    proc = run_cli("script", "--terms", str(terms), "--out", str(out), *extra)
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists()


def test_cli_empty_or_binary_terms_file(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    for name, content in (("empty.txt", b""), ("bin.txt", b"\x89PNG\x00\x00")):
        bad = tmp_path / name
        bad.write_bytes(content)
        proc = run_cli("script", "--terms", str(bad), "--out", str(out))
        assert proc.returncode == 2
        lines = error_lines(proc)
        assert len(lines) == 1 and name in lines[0], proc.stderr
    assert not out.exists()


def test_seed_lexicon_feeds_the_template_backend(tmp_path: Path) -> None:
    lexicon = build_lexicon(LexiconRequest(seed=True, limit=300))
    out = tmp_path / "s.jsonl"
    result = generate_scripts(lexicon.terms, out, TemplateBackend(), ScriptRequest(per_term=1))
    assert not result.failures and not result.short()
