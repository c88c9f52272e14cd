"""``synth --max-utterance-s``: long dictations become several utterances, cut at sentences."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import cli_env, jsonl_records, run_cli, synth_fingerprint
from medasr_cli.core.errors import InputError
from medasr_cli.core.records import GeneratorInfo, Script
from medasr_cli.core.shard import in_shard
from medasr_cli.synth import SynthRequest, load_config, run_synth
from medasr_cli.synth.plan import inputs_hash, plan_jobs, utterance_seed
from medasr_cli.synth.run import prepare
from medasr_cli.synth.split import (
    CHARS_PER_S,
    LEAD_S,
    estimate_seconds,
    group_sentences,
    split_script,
    split_sentences,
    spoken_chars,
)
from medasr_cli.synth.verbalize import Verbalizer
from medasr_cli.tts import VoiceSpec

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")

# About 45 words; its parts must each measure under 8 s with the slowest default settings.
LONG = (
    "Mrs. Jones was seen by Dr. Patel today with shortness of breath. "
    "She takes metoprolol 2.5 mg b.i.d. Apixaban 5 mg daily is continued. "
    "BP 142/88 and pulse 96. Echocardiogram showed moderate mitral regurgitation. "
    "Plan: increase furosemide to 40 mg and review in two weeks."
)
LONG_TERMS = ["Dr. Patel", "metoprolol", "apixaban", "mitral regurgitation", "furosemide"]
SHORT = "Haemoglobin was low on admission."
LIMIT_S = 8.0
# The slowest default prosody, and every utterance slowed down by speed perturbation to 0.9.
SLOW = ["tts.espeak.rate=[150,150]", "augment.speed.p=1", "augment.speed.factor=[0.9,0.9]"]
QUIET = ["augment.noise.p=0"]  # no noise bank to build


def _script(sid: str, text: str, terms: list[str] | None = None) -> Script:
    return Script(id=sid, text=text, terms=terms or [], generator=GeneratorInfo(backend="text"))


def _terms_in(text: str) -> set[str]:
    return {t for t in LONG_TERMS if t.lower() in text.lower()}


# --- sentences ------------------------------------------------------------------------------


def test_sentences_keep_titles_abbreviations_decimals_initials_and_list_numbers() -> None:
    text = (
        "Mrs. Jones was seen by Dr. Patel today. She takes metoprolol 2.5 mg b.i.d. "
        "Salbutamol p.r.n. for wheeze, e.g. Before exercise, i.e. Twice a week. "
        "Seen by J. Smith? Yes! Plan:\n1. Continue apixaban. 2. Review in 2 weeks."
    )
    assert split_sentences(text) == [
        "Mrs. Jones was seen by Dr. Patel today.",
        "She takes metoprolol 2.5 mg b.i.d.",  # a dotted abbreviation ends it: a capital follows
        "Salbutamol p.r.n. for wheeze, e.g. Before exercise, i.e. Twice a week.",
        "Seen by J. Smith?",
        "Yes!",
        "Plan:",  # a line break ends a sentence
        "1. Continue apixaban.",
        "2. Review in 2 weeks.",
    ]


def test_quotes_brackets_and_lower_case_followers() -> None:
    assert split_sentences('He said "stop." Then left. (Seen today.) Stable.') == [
        'He said "stop."',
        "Then left.",
        "(Seen today.)",
        "Stable.",
    ]
    assert split_sentences("Given 1 g i.v. and reviewed. approx. five. Approx. 5 cm.") == [
        "Given 1 g i.v. and reviewed. approx. five.",
        "Approx. 5 cm.",
    ]


def test_a_term_is_never_cut() -> None:
    text = "Continue the drug b.i.d. Then stop. Seen at St. Mary's. Fine."
    assert split_sentences(text)[0] == "Continue the drug b.i.d."
    assert split_sentences(text, ["b.i.d. Then stop"]) == [
        "Continue the drug b.i.d. Then stop.",
        "Seen at St. Mary's.",
        "Fine.",
    ]


# --- the estimate and the grouping ----------------------------------------------------------


def test_estimate_counts_the_spoken_letters() -> None:
    verbalize = Verbalizer({}, {})
    spoken = verbalize("Metoprolol 25 mg, BP 120/80, eGFR 45.")
    assert spoken == (
        "Metoprolol twenty-five milligrams, B P one hundred and twenty over eighty, "
        "eGFR forty-five."
    )
    assert spoken_chars("Metoprolol twenty-five milligrams") == 10 + 6 + 4 + 10
    assert spoken_chars("B P, eGFR") == 3 + 3 + 12  # spelled out: three a character
    assert estimate_seconds(spoken) == pytest.approx(LEAD_S + spoken_chars(spoken) / CHARS_PER_S)


def test_grouping_fewest_even_parts_under_the_limit() -> None:
    # greedy would give [0, 4) and [4, 5): a 5.0 s part and a 1.5 s remainder
    assert group_sentences([1.0, 1.0, 1.0, 1.0, 1.0], 5.0) == [(0, 3), (3, 5)]
    assert group_sentences([3.0, 3.0, 3.0], 20.0) == [(0, 3)]
    # a sentence over the limit stays whole, alone
    assert group_sentences([2.0, 30.0, 2.0, 2.0], 5.0) == [(0, 1), (1, 2), (2, 4)]


def test_split_script_parts_fit_and_carry_their_terms() -> None:
    verbalize = Verbalizer({}, {})
    parts = split_script(LONG, LONG_TERMS, verbalize, LIMIT_S)
    assert len(parts) >= 3
    assert " ".join(p.text for p in parts) == LONG  # consecutive, nothing lost or reordered
    for p in parts:
        assert p.estimate_s <= LIMIT_S
        assert p.tts_text == verbalize(p.text)
        assert set(p.terms) == _terms_in(p.text)
    assert sorted(t for p in parts for t in p.terms) == sorted(LONG_TERMS)  # each in one part
    whole = split_script(LONG, LONG_TERMS, verbalize, None)
    assert [(w.text, w.terms) for w in whole] == [(LONG, tuple(LONG_TERMS))]
    one_sentence = "A long sentence " + "and more words " * 20 + "ends here."
    assert [p.text for p in split_script(one_sentence, [], verbalize, LIMIT_S)] == [one_sentence]


# --- the plan: ids, voices, seeds, hashes -----------------------------------------------------


def _plan(limit: float | None, order: str = "round-robin") -> list:
    return plan_jobs(
        [_script("s1", LONG, LONG_TERMS), _script("s2", SHORT, ["Haemoglobin"])],
        [VoiceSpec("espeak", "en-gb"), VoiceSpec("espeak", "en-029")],
        per_script=2,
        order=order,
        seed=3,
        audio_format="wav",
        verbalize=Verbalizer({}, {}),
        run_fingerprint="fp",
        max_utterance_s=limit,
    )


@pytest.mark.parametrize("order", ["round-robin", "random"])
def test_plan_ids_voices_seeds_and_terms_of_parts(order: str) -> None:
    jobs = _plan(LIMIT_S, order)
    parts = [j for j in jobs if j.script_id == "s1"]
    n = len(parts) // 2
    assert n >= 3
    for k in range(2):
        mine = parts[k * n : (k + 1) * n]
        assert [j.id for j in mine] == [f"s1-{k}-p{i}" for i in range(n)]
        assert {j.voice for j in mine} == {mine[0].voice}  # one speaker per dictation
        assert [(j.part, j.parts, j.rendition) for j in mine] == [
            (i, n, f"s1-{k}") for i in range(n)
        ]
        assert all(j.seed == utterance_seed(3, j.id) for j in mine)
        assert all(set(j.terms) == _terms_in(j.text) for j in mine)
    assert parts[0].voice != parts[n].voice or order == "random"
    assert len({j.audio_path for j in jobs}) == len(jobs)


def test_unsplit_scripts_keep_todays_ids_seeds_voices_and_hashes() -> None:
    before = [j for j in _plan(None) if j.script_id == "s2"]
    after = [j for j in _plan(20.0) if j.script_id == "s2"]
    assert before == after
    assert [j.id for j in after] == ["s2-0", "s2-1"]
    assert [j.audio_path for j in after] == ["audio/s2-0.wav", "audio/s2-1.wav"]
    assert [j.seed for j in after] == [2937920619564303146, 7003649858936538056]
    for j in after:  # the fields hashed before splitting existed: no part keys
        fields = {"id": j.id, "text": SHORT, "tts_text": j.tts_text, "voice": j.voice.label,
                  "seed": j.seed, "format": "wav"}  # fmt: skip
        assert j.inputs_hash == inputs_hash(fields, "fp")
        assert (j.part, j.parts, j.terms) == (None, None, ("Haemoglobin",))


@needs_espeak
def test_parts_of_a_rendition_share_a_shard(tmp_path: Path) -> None:
    scripts = tmp_path / "s.jsonl"
    scripts.write_text(_script("s1", LONG, LONG_TERMS).model_dump_json() + "\n")

    def plan(shard: tuple[int, int] | None) -> list:
        req = SynthRequest(
            out_dir=tmp_path / "o", scripts=scripts, voices=[VoiceSpec("espeak", "en-gb")],
            per_script=4, config=load_config(overrides=QUIET), max_utterance_s=LIMIT_S,
            shard=shard,
        )  # fmt: skip
        return prepare(req)[0]

    whole = plan(None)
    shards = [plan((k, 3)) for k in (1, 2, 3)]
    assert sorted(j.id for s in shards for j in s) == sorted(j.id for j in whole)
    for k, jobs in enumerate(shards, start=1):
        assert all(in_shard(j.rendition, (k, 3)) for j in jobs)
        for j in jobs:  # every part of the rendition is here
            assert {x.id for x in whole if x.rendition == j.rendition} <= {x.id for x in jobs}


# --- real runs with espeak-ng ---------------------------------------------------------------


@pytest.fixture(scope="module")
def scripts_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scripts") / "scripts.jsonl"
    lines = [_script("long", LONG, LONG_TERMS), _script("short", SHORT, ["Haemoglobin"])]
    path.write_text("".join(s.model_dump_json() + "\n" for s in lines))
    return path


def _args(scripts: Path, out: Path, limit: float = LIMIT_S) -> list[str]:
    args = ["--quiet", "synth", "--scripts", str(scripts), "--out", str(out),
            "--voices", "espeak:en-gb,espeak:en-029", "--per-script", "2", "--seed", "4",
            "--max-utterance-s", f"{limit:g}", "--no-auto-noise-bank"]  # fmt: skip
    for override in [*SLOW, *QUIET]:
        args += ["--set", override]
    return args


@pytest.fixture(scope="module")
def cli_run(scripts_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("split") / "synth"
    proc = run_cli(
        *_args(scripts_file, out), "--jobs", "2", env=cli_env(COLUMNS="200"), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "split 1 script(s) into" in proc.stdout, proc.stdout
    assert "0 utterance(s) measure over --max-utterance-s 8 s" in proc.stdout, proc.stdout
    return out


@needs_espeak
def test_cli_parts_measure_under_the_limit(cli_run: Path) -> None:
    records = jsonl_records(cli_run / "utterances.jsonl")
    parts = [r for r in records if r["script_id"] == "long"]
    n = len(parts) // 2
    assert n >= 3 and len(records) == 2 * n + 2
    for r in parts:
        assert r["id"] == f"long-{r['id'].split('-')[1]}-p{r['part']}" and r["parts"] == n
        assert r["duration"] < LIMIT_S  # measured, slowest prosody and speed 0.9
        assert r["duration"] <= estimate_seconds(r["tts_text"])  # the estimate is conservative
        assert set(r["terms"]) == _terms_in(r["text"])
        assert [a["kind"] for a in r["augmentations"]][:1] == ["speed"]
    for k in range(2):
        mine = [r for r in parts if r["id"].startswith(f"long-{k}-")]
        assert " ".join(r["text"] for r in mine) == LONG
        assert len({r["voice"] for r in mine}) == 1
    short = [r for r in records if r["script_id"] == "short"]
    assert [r["id"] for r in short] == ["short-0", "short-1"]
    assert all("part" not in r and "parts" not in r for r in short)


@needs_espeak
def test_jobs_and_resume_agree_bit_for_bit(
    cli_run: Path, scripts_file: Path, tmp_path: Path
) -> None:
    req = SynthRequest(
        out_dir=tmp_path, scripts=scripts_file,
        voices=[VoiceSpec("espeak", "en-gb"), VoiceSpec("espeak", "en-029")], per_script=2,
        config=load_config(overrides=[*SLOW, *QUIET]), auto_noise_bank=False, seed=4,
        max_utterance_s=LIMIT_S, jobs=1,
    )  # fmt: skip
    summary = run_synth(req)
    assert summary.split_scripts == 1 and summary.parts == summary.utterances - 2
    assert summary.over_limit == 0
    assert synth_fingerprint(tmp_path, req.jsonl_path) == synth_fingerprint(
        cli_run, cli_run / "utterances.jsonl"
    )
    again = run_synth(req)
    assert (again.rendered, again.skipped) == (0, summary.utterances)


@needs_espeak
def test_splitting_an_existing_run_replaces_its_whole_records(
    scripts_file: Path, tmp_path: Path
) -> None:
    def run(limit: float) -> list[dict]:
        req = SynthRequest(
            out_dir=tmp_path, scripts=scripts_file, voices=[VoiceSpec("espeak", "en-gb")],
            config=load_config(overrides=QUIET), auto_noise_bank=False, max_utterance_s=limit,
        )  # fmt: skip
        run_synth(req)
        return jsonl_records(req.jsonl_path)

    assert [r["id"] for r in run(0)] == ["long-0", "short-0"]  # 0: off
    split = run(LIMIT_S)
    assert [r["id"] for r in split][-1] == "short-0"
    assert [r["id"] for r in split][:-1] == [f"long-0-p{i}" for i in range(len(split) - 1)]
    assert [r["id"] for r in run(0)] == ["long-0", "short-0"]  # and back: the parts go


@needs_espeak
def test_manifest_build_carries_the_part_fields(cli_run: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "train.jsonl"
    proc = run_cli("--quiet", "manifest", "build", str(cli_run / "utterances.jsonl"), "--out",
                   str(manifest), env=cli_env(COLUMNS="200"), timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    entries = jsonl_records(manifest)
    records = {r["id"]: r for r in jsonl_records(cli_run / "utterances.jsonl")}
    for e in entries:
        rec = records[e["id"]]
        assert (e["text"], e["script_id"], e["terms"]) == (
            rec["text"],
            rec["script_id"],
            rec["terms"],
        )
        assert (e.get("part"), e.get("parts")) == (rec.get("part"), rec.get("parts"))
        assert Path(e["audio_filepath"]).is_file() and e["duration"] > 0
    pytest.importorskip("nemo.collections.common")
    from nemo.collections.common.parts.preprocessing import collections as nemo_collections

    coll = nemo_collections.ASRAudioText(str(manifest), parser=lambda s: list(s))
    assert len(coll.data) == len(entries)
    assert max(item.duration for item in coll.data) < LIMIT_S


def test_20_s_by_default_and_a_negative_limit_is_refused(tmp_path: Path) -> None:
    # 20 s (estimated) keeps parts under train's 24 s max_duration: long dictations train
    assert SynthRequest(out_dir=tmp_path).max_utterance_s == 20.0
    req = SynthRequest(out_dir=tmp_path, scripts=tmp_path / "s.txt", max_utterance_s=-1.0)
    with pytest.raises(InputError, match="--max-utterance-s -1: use seconds, or 0 for off"):
        prepare(req)
