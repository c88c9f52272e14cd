"""End to end: the CLI in a subprocess, resume after a kill, shards, and bad input (exit 2)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import cli_env, jsonl_records, one_error_line, run_cli, synth_fingerprint
from medasr_cli.synth import SynthRequest, load_config, run_synth
from medasr_cli.synth.noisebank import build_noise_bank
from medasr_cli.tts import VoiceSpec

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")

SENTENCES = [
    "The patient was started on metoprolol 25 mg b.i.d.",
    "Echocardiogram showed mild mitral regurgitation.",
    "Continue apixaban 5 mg and review in clinic.",
    "BP 120/80, HR 72 bpm, SpO2 98% on 2 L.",
    "She has a history of Crohn's disease.",
    "Haemoglobin was low on admission.",
]


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bank")
    build_noise_bank(root, seed=2, per_category=1, seconds=6.0)
    return root


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    path = tmp_path / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return path


def test_cli_output_feeds_manifest_build_and_validate(
    tmp_path: Path, scripts: Path, bank: Path
) -> None:
    pytest.importorskip("piper")
    out = tmp_path / "synth"
    voices = "espeak:en-gb,espeak:en-029+f3,piper:joe"
    proc = run_cli("--quiet", "synth", "--scripts", str(scripts), "--out", str(out),
                   "--voices", voices, "--noise-bank", str(bank), "--seed", "7", "--jobs", "2",
                   "--format", "flac", env=cli_env(COLUMNS="200"), timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "measured SNR" in proc.stdout and "clipped samples 0" in proc.stdout
    records = jsonl_records(out / "utterances.jsonl")
    assert len(records) == len(SENTENCES)
    assert {r["voice"] for r in records} == set(voices.split(","))
    for rec, written in zip(records, SENTENCES, strict=True):
        assert rec["text"] == written  # the transcript keeps the written form
        assert rec["audio_filepath"].endswith(".flac") and rec["sample_rate"] == 16000
        assert 10 <= rec["snr_db"] <= 25 and rec["noise_source"].startswith("bank:")
    assert "twenty-five milligrams" in records[0]["tts_text"]
    manifest = tmp_path / "train.jsonl"
    proc = run_cli("--quiet", "manifest", "build", str(out / "utterances.jsonl"), "--out",
                   str(manifest), env=cli_env(COLUMNS="200"), timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(
        "--quiet", "manifest", "validate", str(manifest), env=cli_env(COLUMNS="200"), timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    entries = jsonl_records(manifest)
    assert [e["text"] for e in entries] == SENTENCES
    assert all("snr_db" in e and "voice" in e for e in entries)


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_set(tmp_path: Path, bank: Path) -> None:
    pytest.importorskip("piper")
    scripts = tmp_path / "many.txt"
    scripts.write_text("\n".join(f"{s} Note {i}." for i, s in enumerate(SENTENCES * 2)) + "\n")
    args = [
        "synth",
        "--scripts",
        str(scripts),
        "--voices",
        "piper:joe,espeak:en-us",
        "--noise-bank",
        str(bank),
        "--seed",
        "3",
    ]
    out = tmp_path / "killed"
    jsonl = out / "utterances.jsonl"
    cmd = [sys.executable, "-m", "medasr_cli", "--quiet", *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.exists() and len(jsonl.read_text().splitlines()) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    done = len(jsonl_records(jsonl))
    assert 3 <= done < 12, "the run finished before it could be killed"
    with jsonl.open("a") as fh:  # the crash also tore the line being written
        fh.write('{"id": "torn-record", "text": "half')
    resumed = run_cli("--quiet", *args, "--out", str(out), env=cli_env(COLUMNS="200"), timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {done}" in resumed.stdout
    fresh = run_cli(
        "--quiet", *args, "--out", str(tmp_path / "fresh"), env=cli_env(COLUMNS="200"), timeout=240
    )
    assert fresh.returncode == 0, fresh.stderr
    ids = [r["id"] for r in jsonl_records(jsonl)]
    assert len(ids) == len(set(ids)) == 12
    assert synth_fingerprint(out, jsonl) == synth_fingerprint(
        tmp_path / "fresh", tmp_path / "fresh" / "utterances.jsonl"
    )


def test_shards_partition_the_run(tmp_path: Path, scripts: Path, bank: Path) -> None:
    def run(out: Path, shard: tuple[int, int] | None) -> dict[str, tuple[str, str]]:
        req = SynthRequest(
            out_dir=out,
            scripts=scripts,
            voices=[VoiceSpec("espeak", "en-gb"), VoiceSpec("espeak", "en-us-nyc")],
            per_script=2,
            noise_bank=bank,
            seed=5,
            shard=shard,
            config=load_config(overrides=["augment.reverb.p=0.5"]),
        )
        summary = run_synth(req)
        assert not summary.failures
        return synth_fingerprint(out, req.jsonl_path)

    whole = run(tmp_path / "all", None)
    parts = [run(tmp_path / "sharded", (k, 3)) for k in (1, 2, 3)]
    assert sum(len(p) for p in parts) == len(whole) == 12
    union: dict[str, tuple[str, str]] = {}
    for part in parts:
        assert not set(part) & set(union)  # shards never overlap
        union.update(part)
    assert union == whole  # same ids, same inputs, same audio bytes


def test_rerun_is_idempotent_and_changed_inputs_rerender(
    tmp_path: Path, scripts: Path, bank: Path
) -> None:
    voices = [VoiceSpec("espeak", "en-gb")]
    first = run_synth(
        SynthRequest(out_dir=tmp_path, scripts=scripts, voices=voices, noise_bank=bank)
    )
    again = run_synth(
        SynthRequest(out_dir=tmp_path, scripts=scripts, voices=voices, noise_bank=bank)
    )
    assert (first.rendered, again.rendered, again.skipped) == (6, 0, 6)
    changed = run_synth(
        SynthRequest(out_dir=tmp_path, scripts=scripts, voices=voices, noise_bank=bank, seed=9)
    )
    assert changed.rendered == 6
    assert len(jsonl_records(tmp_path / "utterances.jsonl")) == 6


def test_failing_utterance_is_skipped_and_reported(tmp_path: Path, bank: Path) -> None:
    scripts = tmp_path / "s.txt"
    scripts.write_text("Aspirin was given.\n...\nHeparin was stopped.\n")
    summary = run_synth(
        SynthRequest(
            out_dir=tmp_path / "o",
            scripts=scripts,
            voices=[VoiceSpec("espeak", "en-gb")],
            noise_bank=bank,
        )
    )
    assert summary.utterances == 2 and len(summary.failures) == 1
    assert "silence" in next(iter(summary.failures.values()))


def _one_line_exit_2(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    line = one_error_line(proc)
    for needle in needles:
        assert needle in line, line


def test_bad_input_is_one_line_exit_2(tmp_path: Path, scripts: Path) -> None:
    out = str(tmp_path / "out")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    no_audio = tmp_path / "no_audio"
    no_audio.mkdir()
    (no_audio / "readme.txt").write_text("not audio")
    base = ["synth", "--out", out, "--no-auto-noise-bank"]
    cases = [
        (["--scripts", str(tmp_path / "missing.txt")], ("missing.txt", "not found")),
        (["--scripts", str(empty)], ("empty.txt", "empty")),
        (["--scripts", str(scripts), "--voices", "espeak:xx-zz"], ("unknown espeak voice",)),
        (["--scripts", str(scripts), "--voices", "festival:kal"], ("unknown TTS engine",)),
        (["--scripts", str(scripts), "--snr", "25:10"], ("--snr", "LO must not exceed HI")),
        (["--scripts", str(scripts), "--snr", "loud"], ("--snr", "LO:HI")),
        (
            ["--scripts", str(scripts), "--noise-dir", str(tmp_path / "nope")],
            ("noise dir not found",),
        ),
        (["--scripts", str(scripts), "--noise-dir", str(no_audio)], ("has no audio files",)),
        (["--scripts", str(scripts), "--shard", "4/3"], ("--shard",)),
        (["--out", out], ("exactly one of --scripts",)),
    ]
    for extra, needles in cases:
        voices = [] if "--voices" in extra else ["--voices", "espeak:en-gb"]
        args = [*base, *voices, *extra]
        _one_line_exit_2(
            run_cli("--quiet", *args, env=cli_env(COLUMNS="200"), timeout=60), *needles
        )


def test_coqui_offline_error_through_the_cli(tmp_path: Path, scripts: Path) -> None:
    pytest.importorskip("TTS.api")
    env = cli_env(TTS_HOME=str(tmp_path / "tts-home"))
    proc = run_cli("synth", "--scripts", str(scripts), "--out", str(tmp_path / "o"), "--voices",
                   "coqui", "--coqui-model", "tts_models/en/ljspeech/vits", env=env,
                   timeout=120)  # fmt: skip
    _one_line_exit_2(
        proc,
        "model tts_models/en/ljspeech/vits is not available locally; "
        "pass --model-path or allow downloads",
    )


def test_noise_bank_command(tmp_path: Path) -> None:
    out = tmp_path / "bank"
    proc = run_cli("--quiet", "synth", "noise-bank", "--out", str(out), "--per-category", "1",
                   "--seconds", "3", "--category", "monitor", "--category", "hvac",
                   env=cli_env(COLUMNS="200"), timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "bank.json").read_text())
    assert sorted(meta["files"]) == ["hvac", "monitor"]
    assert (out / "hvac" / "hvac_00.wav").is_file()


def test_terms_go_through_the_template_backend(tmp_path: Path, bank: Path) -> None:
    pytest.importorskip("medasr_cli.script")
    terms = tmp_path / "terms.txt"
    terms.write_text("apixaban\tdrug\ncholecystectomy\tprocedure\n")
    out = tmp_path / "synth"
    args = ["synth", "--terms", str(terms), "--out", str(out), "--per-term", "1",
            "--voices", "espeak:en-gb-x-rp", "--noise-bank", str(bank)]  # fmt: skip
    proc = run_cli("--quiet", *args, env=cli_env(COLUMNS="200"), timeout=240)
    assert proc.returncode == 0, proc.stderr
    scripts = jsonl_records(out / "scripts.jsonl")
    records = jsonl_records(out / "utterances.jsonl")
    # a dictation over --max-utterance-s (20 s by default) is split: every script is spoken
    assert scripts and len(records) >= len(scripts)
    spoken = " ".join(r["text"].lower() for r in records)
    assert "apixaban" in spoken and "cholecystectomy" in spoken
    assert {r["script_id"] for r in records} == {s["id"] for s in scripts}
    again = run_cli("--quiet", *args, env=cli_env(COLUMNS="200"), timeout=240)
    assert again.returncode == 0 and f"resumed {len(records)}" in again.stdout
