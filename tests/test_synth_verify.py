"""`synth --verify-model`: each clip transcribed, scored outside its terms, flagged or dropped.

Three levels, all with real parts:

* the arithmetic (WER outside the target terms, flags, what is dropped) on known
  transcripts, no model;
* the plumbing with the real model runner and the conftest's untrained tiny
  model, which recognises nothing, so every clip is flagged: through the CLI,
  then resumed (nothing transcribed again) and with a new threshold (nothing
  transcribed, clips move back);
* (slow) the decision itself: clips rendered by espeak-ng plus one from a TTS
  stand-in that writes noise (a stand-in for a broken engine: check_audio only
  refuses empty or silent audio), a tiny model trained here to memorise the
  good clips (the preset that memorises ten utterances in test_train; no session
  fixture holds a trained model), and the broken clip is the one dropped.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from helpers import cli_env, jsonl_records, run_cli
from medasr_cli.core.text import get_normalizer
from medasr_cli.synth import SynthRequest, load_config, run_synth
from medasr_cli.synth.verify import VerifyOptions, context_wer, partition
from medasr_cli.tts import VoiceSpec
from medasr_cli.tts.base import Synthesis
from medasr_cli.tts.registry import ENGINES, EngineOptions

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")

CLEAN = [  # no augmentation: the slow test's tiny model memorises exactly these clips
    f"augment.{step}.p=0" for step in ("speed", "reverb", "noise", "telephone", "gaussian", "gain")
]
SCRIPTS = [
    ("Continue apixaban and review in clinic.", ["apixaban"]),
    ("Start metformin with the evening meal.", ["metformin"]),
    ("The ramipril dose was doubled today.", ["ramipril"]),
    ("Stop the warfarin before the procedure.", ["warfarin"]),
    ("Give furosemide and check the weight.", ["furosemide"]),
    ("Switch amlodipine to the morning.", ["amlodipine"]),
    ("Restart bisoprolol at a lower dose.", ["bisoprolol"]),
    ("Add omeprazole for the reflux.", ["omeprazole"]),
]


def _scripts(path: Path, rows: list[tuple[str, list[str]]]) -> Path:
    gen = {"backend": "test"}
    lines = [json.dumps({"id": f"s{i}", "text": t, "terms": terms, "generator": gen})
             for i, (t, terms) in enumerate(rows)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


# ---- the arithmetic, no model -----------------------------------------------------------------


def test_wer_outside_the_terms() -> None:
    norm = get_normalizer("clinical")
    ref = "Continue apixaban and review in clinic."

    def wer(hyp: str, terms: tuple[str, ...] = ("apixaban",)) -> tuple[float | None, int]:
        return context_wer(ref, hyp, list(terms), norm)

    assert wer("continue apixaban and review in clinic") == (0.0, 5)
    # the term heard as three words: the words around it are right, so nothing counts
    assert wer("continue a pixel ban and review in clinic") == (0.0, 5)
    assert wer("continue apixaban and review clinic") == (0.2, 5)  # one of five deleted
    assert wer("continue apixaban and the review in clinic") == (0.2, 5)  # one inserted
    assert wer("continue apixaban and renew in clinic") == (0.2, 5)  # one substituted
    assert wer("") == (1.0, 5)  # silence or noise: every other word missing
    assert wer("continue apixaban and review in clinic", terms=()) == (0.0, 6)
    assert wer("continue a pixel ban and review in clinic", terms=()) == (0.5, 6)
    # a term is found as eval finds it: spoken forms and the clinical normaliser
    assert context_wer(
        "Start metoprolol 25 mg b.i.d.", "start metoprolol twenty five milligrams twice daily",
        ["b.i.d."], norm) == (0.0, 4)  # fmt: skip
    assert context_wer("Low haemoglobin today.", "low hemo globin today", ["hemoglobin"], norm) == (
        0.0, 2)  # fmt: skip
    # a clip that says only its term is scored on all its words
    assert context_wer("Apixaban.", "", ["apixaban"], norm) == (1.0, 1)


def test_flags_come_from_the_stored_wer_and_this_model() -> None:
    opts = VerifyOptions(model="m.nemo", max_wer=0.5, drop=True)
    key = opts.key
    records = [
        {"id": "good", "verify_model": key, "verify_wer": 0.1, "verify_flag": False},
        {"id": "edge", "verify_model": key, "verify_wer": 0.5, "verify_flag": True},
        {"id": "bad", "verify_model": key, "verify_wer": 1.0, "verify_flag": False},
        {"id": "other", "verify_model": "another", "verify_wer": 1.0, "verify_flag": True},
        {"id": "new"},
    ]
    kept, dropped = partition(records, opts)
    assert [r["id"] for r in dropped] == ["bad"]  # over the threshold, not at it
    assert [r["id"] for r in kept] == ["good", "edge", "other", "new"]
    assert [r.get("verify_flag") for r in kept] == [False, False, True, None]  # recomputed
    kept, dropped = partition(records, VerifyOptions(model="m.nemo", max_wer=0.5, drop=False))
    assert not dropped and [r.get("verify_flag") for r in kept] == [False, False, True, True, None]
    kept, dropped = partition(records, VerifyOptions(model="m.nemo", max_wer=0.05, drop=True))
    assert [r["id"] for r in dropped] == ["good", "edge", "bad"]
    assert partition(records, None) == (records, [])  # no --verify-model: nothing moves


# ---- the real runner with an untrained model: everything is flagged ---------------------------


@needs_espeak
def test_untrained_model_flags_everything_and_a_resume_transcribes_nothing(
    tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "synth"
    request = SynthRequest(
        out_dir=out,
        scripts=_scripts(tmp_path / "scripts.jsonl", SCRIPTS[:3]),
        voices=[VoiceSpec("espeak", "en-us")],
        config=load_config(overrides=CLEAN),
        auto_noise_bank=False,
        verify=VerifyOptions(model=str(tiny_model), device="cpu", drop=True),
    )
    summary = run_synth(request)
    assert summary.rendered == 3 and summary.utterances == 0
    v = summary.verify
    assert v is not None and (v.verified_now, v.flagged, v.dropped) == (3, 3, 3)
    assert jsonl_records(out / "utterances.jsonl") == []  # not training data
    rejected = jsonl_records(out / "rejected.jsonl")
    assert [r["id"] for r in rejected] == ["s0-0", "s1-0", "s2-0"]
    for rec in rejected:
        assert rec["verify_flag"] is True and rec["verify_wer"] > 0.5
        assert rec["verify_model"].startswith(str(tiny_model) + "@")
        assert rec["verify_words"] == 5 and isinstance(rec["verify_text"], str)
        assert (out / rec["audio_filepath"]).is_file()  # kept for inspection
    written = json.loads((out / "utterances.summary.json").read_text())
    assert written["verify"]["flagged"] == written["verify"]["dropped"] == 3

    # resumed: a dropped clip is done, so it is neither rendered nor transcribed again
    again = run_synth(request)
    assert again.rendered == 0 and again.skipped == 3
    assert again.verify is not None and again.verify.verified_now == 0
    assert again.verify.dropped == 3 and len(jsonl_records(out / "rejected.jsonl")) == 3

    # a new threshold, kept: the clips move back, from their stored WER (no transcription)
    request.verify = VerifyOptions(model=str(tiny_model), device="cpu", max_wer=1000.0)
    back = run_synth(request)
    assert back.verify is not None
    assert (back.rendered, back.verify.verified_now, back.verify.flagged) == (0, 0, 0)
    kept = jsonl_records(out / "utterances.jsonl")
    assert [r["id"] for r in kept] == ["s0-0", "s1-0", "s2-0"]
    assert all(r["verify_flag"] is False for r in kept)
    assert jsonl_records(out / "rejected.jsonl") == []


@pytest.mark.slow
@needs_espeak
def test_cli_verify_options_and_summary(tiny_model: Path, tmp_path: Path) -> None:
    scripts = _scripts(tmp_path / "scripts.jsonl", SCRIPTS[:2])
    out = tmp_path / "synth"
    proc = run_cli("--quiet", "synth", "--scripts", str(scripts), "--out", str(out), "--voices",
                   "espeak:en-us", "--no-auto-noise-bank", *[a for s in CLEAN for a in ("--set", s)],
                   "--verify-model", str(tiny_model), "--verify-device", "cpu",
                   "--verify-max-wer", "0.25", "--verify-batch-size", "1",
                   env=cli_env(COLUMNS="250"), timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"verified 2 clip(s) with {tiny_model} (2 transcribed now)" in proc.stdout
    assert "2 over --verify-max-wer 0.25 flagged, 0 dropped" in proc.stdout
    assert "--drop-unverified moves them out of the training data" in proc.stderr
    kept = jsonl_records(out / "utterances.jsonl")  # --keep-unverified is the default
    assert len(kept) == 2 and all(r["verify_flag"] is True for r in kept)
    assert not (out / "rejected.jsonl").exists()
    summary = json.loads((out / "utterances.summary.json").read_text())
    assert summary["verify"]["max_wer"] == 0.25 and summary["verify"]["flagged"] == 2


# ---- a trained model and a broken engine: only the broken clip goes --------------------------


class NoiseEngine:
    """A stand-in for a broken TTS engine: it returns noise as long as the text would take.

    Not silence: ``check_audio`` already refuses silent or empty audio at render time;
    noise (or a voice that mumbles) passes it, and only listening, or a model, tells.
    """

    name = "broken"

    def list_voices(self) -> list[str]:
        return ["noise"]

    def check_voice(self, voice: str) -> None:
        pass

    def synthesize(
        self, text: str, voice: str, params: Mapping[str, float], seed: int
    ) -> Synthesis:
        rng = np.random.default_rng(seed)
        audio = 0.1 * rng.standard_normal(int(16000 * 0.07 * len(text)))
        return Synthesis(audio.astype(np.float32), 16000, accent="none")


@pytest.mark.slow
@needs_espeak
def test_a_trained_model_drops_the_broken_clip_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("nemo.collections.asr")
    monkeypatch.setitem(ENGINES, "broken", lambda options: NoiseEngine())
    out = tmp_path / "synth"
    request = SynthRequest(
        out_dir=out,
        scripts=_scripts(tmp_path / "scripts.jsonl", SCRIPTS),
        voices=[VoiceSpec("espeak", "en-us", 7.0), VoiceSpec("broken", "noise", 1.0)],
        config=load_config(overrides=CLEAN),
        auto_noise_bank=False,
        engine_options=EngineOptions(),
    )
    first = run_synth(request)
    assert first.rendered == len(SCRIPTS) and first.verify is None
    records = jsonl_records(out / "utterances.jsonl")
    (broken,) = [r["id"] for r in records if r["voice"] == "broken:noise"]

    # the verify model: memorises the good clips (never hears the broken one)
    manifest = tmp_path / "good.jsonl"
    manifest.write_text("".join(
        json.dumps({"audio_filepath": str(out / r["audio_filepath"]), "duration": r["duration"],
                    "text": r["text"]}) + "\n" for r in records if r["id"] != broken))  # fmt: skip
    run = tmp_path / "run"
    proc = run_cli("train", "--config", "tiny-cpu", "--train-manifest", str(manifest),
                   "--val-manifest", str(manifest), "--out", str(run), timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    request.verify = VerifyOptions(model=str(run / "model.nemo"), device="cpu", drop=True)
    summary = run_synth(request)
    assert summary.rendered == 0 and summary.skipped == len(SCRIPTS)  # verified, not re-rendered
    v = summary.verify
    assert v is not None
    assert (v.verified, v.verified_now, v.flagged, v.dropped) == (len(SCRIPTS), len(SCRIPTS), 1, 1)
    kept = jsonl_records(out / "utterances.jsonl")
    assert broken not in {r["id"] for r in kept} and len(kept) == len(SCRIPTS) - 1
    assert all(r["verify_wer"] <= 0.5 and r["verify_flag"] is False for r in kept), [
        (r["text"], r["verify_text"], r["verify_wer"]) for r in kept
    ]
    (rejected,) = jsonl_records(out / "rejected.jsonl")
    assert rejected["id"] == broken and rejected["verify_wer"] > 0.5
