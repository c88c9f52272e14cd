"""TTS text vs transcript, voice plans, the YAML config and --snr/--shard parsing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medasr_cli.core.errors import InputError
from medasr_cli.core.spoken import respelling_stress
from medasr_cli.synth.config import load_config, parse_snr
from medasr_cli.synth.numbers import int_to_words, number_to_words, ordinal_words
from medasr_cli.synth.split import spoken_chars
from medasr_cli.synth.verbalize import (
    Verbalizer,
    choose_spoken_form,
    engine_text,
    packaged_abbreviations,
)
from medasr_cli.synth.voices import parse_voices, read_voice_file, round_robin, sample_voice
from medasr_cli.tts import VoiceSpec


def test_numbers() -> None:
    assert int_to_words(0) == "zero"
    assert int_to_words(25) == "twenty-five"
    assert int_to_words(125) == "one hundred and twenty-five"
    assert int_to_words(1000) == "one thousand"
    assert int_to_words(2005) == "two thousand and five"
    assert number_to_words("2.5") == "two point five"
    assert number_to_words("1,500") == "one thousand five hundred"
    assert ordinal_words(3) == "third" and ordinal_words(21) == "twenty-first"
    assert ordinal_words(40) == "fortieth"


ABBREVIATIONS = {
    "b.i.d.": "b i d",
    "IV": "I V",
    "stat": "stat",
    "CXR": "chest X-ray",
    "HbA1c": "H B A 1 C",
    "NSAID": "N SAID",
    "BP": "B P",
    "HR": "H R",
}


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("Metoprolol 25 mg b.i.d.", "Metoprolol twenty-five milligrams b i d"),
        ("Give 1 mg IV stat.", "Give one milligram I V stat."),
        ("0.5 mcg/kg/min", "zero point five micrograms per kilogram per minute"),
        (
            "BP 120/80, HR 72 bpm.",
            "B P one hundred and twenty over eighty, H R seventy-two beats per minute.",
        ),
        ("then 2-4 units", "then two to four units"),
        ("at 08:30 on the 3rd", "at eight thirty on the third"),
        ("ECG and CXR", "E C G and chest X-ray"),
        ("HbA1c 7.5%", "H B A one C seven point five percent"),
        ("NSAIDs avoided", "N SAIDs avoided"),
    ],
)
def test_verbalizer_speaks_numbers_doses_and_abbreviations(written: str, spoken: str) -> None:
    assert Verbalizer({}, abbreviations=ABBREVIATIONS)(written) == spoken


def test_packaged_abbreviations_are_read() -> None:
    table = packaged_abbreviations()
    if not table:
        pytest.skip("the lexicon's abbreviations.tsv is not installed")
    assert table.get("b.i.d.") == "b i d"


def test_respellings_apply_to_tts_text_only() -> None:
    v = Verbalizer({"apixaban": "uh-PIX-uh-ban", "crohn's disease": "KROHNZ dih-ZEEZ"}, {})
    # the stress capitals stay (the acronym rule does not spell PIX out) ...
    assert v("Continue Apixaban 5 mg.") == "Continue uh-PIX-uh-ban five milligrams."
    assert v("Known Crohn's disease.") == "Known krohnz dih-ZEEZ."  # a lone word: no stress
    # ... for espeak, which stresses that syllable; other engines get them lower-cased
    assert engine_text(v("Continue Apixaban."), "espeak") == "Continue uh-PIX-uh-ban."
    for engine in ("piper", "coqui"):
        assert engine_text(v("Continue Apixaban."), engine) == "Continue uh-pix-uh-ban."
    # written acronyms are still spelled, and an X-ray is no respelling
    assert engine_text(v("CT and chest X-ray."), "piper") == "C T and chest X-ray."


def test_stress_marks_are_parsed_from_capitals() -> None:
    assert respelling_stress("uh-PIX-uh-ban") == [("uh", 0), ("pix", 2), ("uh", 0), ("ban", 0)]
    assert respelling_stress("AS-uh-TEE-min") == [("as", 1), ("uh", 0), ("tee", 2), ("min", 0)]
    for unmarked in ("uh-pix-uh-ban", "X-ray", "T-cell", "HER-TWO", "PIX", "uh-PIX-2"):
        assert respelling_stress(unmarked) is None
    # a split part's duration estimate is the same with or without the capitals
    assert spoken_chars("Continue uh-PIX-uh-ban.") == spoken_chars("Continue uh-pix-uh-ban.")


def test_choose_spoken_form_prefers_what_is_written() -> None:
    assert choose_spoken_form("b.i.d.", ["twice daily", "b i d", "bid"]) == "b i d"
    assert choose_spoken_form("stat", ["immediately", "stat"]) == "stat"
    assert choose_spoken_form("mg", ["milligrams", "milligram"]) == "milligrams"


def test_voice_plans(tmp_path: Path) -> None:
    plan = parse_voices("espeak:en-gb, espeak:en-029,piper:joe")
    assert [v.label for v in plan] == ["espeak:en-gb", "espeak:en-029", "piper:joe"]
    assert [v.voice for v in round_robin(plan, 6)] == ["en-gb", "en-029", "joe"] * 2
    f = tmp_path / "voices.txt"
    f.write_text("# weighted\npiper:joe 3\nespeak:en-gb   # one share\n")
    weighted = read_voice_file(f)
    assert [(v.label, v.weight) for v in weighted] == [("piper:joe", 3.0), ("espeak:en-gb", 1.0)]
    rr = [v.voice for v in round_robin(weighted, 8)]
    assert rr == ["joe", "joe", "en-gb", "joe"] * 2  # smooth: no long runs
    counts = Counter(
        sample_voice(weighted, np.random.default_rng([s, 1])).voice for s in range(400)
    )
    assert 250 < counts["joe"] < 350
    f.write_text("piper:joe heavy\n")
    with pytest.raises(InputError, match=r"voices\.txt:1: weight 'heavy' is not a number"):
        read_voice_file(f)


def test_config_defaults_overrides_and_errors(tmp_path: Path) -> None:
    cfg = load_config()
    assert cfg.augment.noise.snr_db == (10.0, 25.0) and cfg.sample_rate == 16000
    cfg = load_config(
        overrides=["augment.reverb.p=0.9", "tts.espeak.rate=[120, 130]"], snr=(12.0, 18.0)
    )
    assert cfg.augment.reverb.p == 0.9 and cfg.tts["espeak"]["rate"] == [120, 130]
    assert cfg.augment.noise.snr_db == (12.0, 18.0)
    user = tmp_path / "aug.yaml"
    user.write_text("augment:\n  gain:\n    p: 2\n")
    with pytest.raises(InputError, match=r"augment\.gain\.p"):
        load_config(user)
    with pytest.raises(InputError, match=r"augment\.nosuch"):
        load_config(overrides=["augment.nosuch.p=1"])


def test_parse_snr() -> None:  # --shard is core's, tested in test_ledger.py
    assert parse_snr("10:25") == (10.0, 25.0) and parse_snr("15") == (15.0, 15.0)
    for bad in ("25:10", "abc", "1:2:3", "-50:10"):
        with pytest.raises(InputError, match="--snr"):
            parse_snr(bad)


def test_voice_spec_default_voice() -> None:
    assert VoiceSpec.parse("espeak").voice == "default"


def test_voice_plan_sources() -> None:
    from medasr_cli.synth.voices import ESPEAK_ACCENTS, voice_plan

    assert voice_plan(None, None, None) is None  # the default plan is chosen later
    plan = voice_plan(None, None, "espeak")
    assert plan is not None and [v.voice for v in plan] == list(ESPEAK_ACCENTS)
    assert voice_plan(None, None, "piper") == [VoiceSpec("piper", "default")]
    with pytest.raises(InputError, match="only one of"):
        voice_plan("espeak:en-gb", None, "piper")
    with pytest.raises(InputError, match="unknown TTS engine"):
        voice_plan(None, None, "festival")
