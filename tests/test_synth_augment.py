"""Augmentation: SNR hits the request (measured independently from the files), no clipping."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from medasr_cli.synth.config import load_config
from medasr_cli.synth.noise import scan_noise, scan_rirs
from medasr_cli.synth.noisebank import build_noise_bank
from medasr_cli.synth.render import Job, Renderer, RenderOptions
from medasr_cli.tts import EngineOptions, VoiceSpec

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")

TEXTS = [
    "The patient was started on metoprolol twice daily.",
    "Echocardiogram showed mild mitral regurgitation.",
    "Continue apixaban and review in clinic in two weeks.",
    "No tenderness in the right iliac fossa.",
]
ONLY_NOISE = [
    "augment.speed.p=0",
    "augment.reverb.p=0",
    "augment.telephone.p=0",
    "augment.gaussian.p=0",
    "augment.gain.p=0",
]


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bank")
    build_noise_bank(root, seed=1, per_category=1, seconds=6.0)
    return root


def _renderer(out: Path, bank: Path, overrides: list[str]) -> Renderer:
    settings = RenderOptions(
        out_dir=str(out),
        config=load_config(overrides=overrides),
        engine_options=EngineOptions(),
        noise=scan_noise([], bank),
    )
    return Renderer(settings)


def _job(i: int, name: str) -> Job:
    voice = VoiceSpec("espeak", ["en-us", "en-gb", "en-029", "en-gb-scotland"][i % 4])
    text = TEXTS[i % len(TEXTS)]
    return Job(
        id=f"u{i}",
        script_id=None,
        text=text,
        tts_text=text,
        voice=voice,
        seed=1000 + i,
        audio_path=f"{name}/u{i}.wav",
        inputs_hash="x",
    )


def _read(out: Path, rel: str) -> np.ndarray:
    audio, sr = sf.read(out / rel, dtype="int16")
    assert sr == 16000 and audio.ndim == 1
    return audio.astype(np.float64) / 32767.0


def test_measured_snr_matches_request_and_covers_range(tmp_path: Path, bank: Path) -> None:
    noisy = _renderer(tmp_path, bank, ONLY_NOISE)
    clean = _renderer(tmp_path, bank, [*ONLY_NOISE, "augment.noise.p=0"])
    requested, recorded = [], []
    for i in range(36):
        rec = noisy(_job(i, "noisy")).record
        ref = clean(_job(i, "clean")).record
        assert rec is not None and ref is not None
        y, s = _read(tmp_path, rec["audio_filepath"]), _read(tmp_path, ref["audio_filepath"])
        assert len(y) == len(s)
        gain = next(a for a in rec["augmentations"] if a["kind"] == "gain")["params"]
        s = s * 10 ** (gain["applied_db"] / 20)  # the limiter may have turned the mix down
        independent = 10 * math.log10(np.sum(s**2) / np.sum((y - s) ** 2))
        noise = next(a for a in rec["augmentations"] if a["kind"] == "noise")["params"]
        assert abs(independent - noise["requested_snr_db"]) <= 0.5, (i, independent, noise)
        assert abs(independent - rec["snr_db"]) <= 0.1
        requested.append(noise["requested_snr_db"])
        recorded.append(rec["snr_db"])
        assert rec["noise_source"].startswith("bank:") and rec["noise_type"]
        assert rec["clipped_samples"] == 0 and np.abs(y).max() < 1.0
    assert all(10.0 <= r <= 25.0 for r in requested)
    assert min(recorded) < 12.0 and max(recorded) > 23.0
    bins = {min(5, int((r - 10) // 2.5)) for r in recorded}
    assert len(bins) >= 5  # at least five of the six 2.5-dB bins between 10 and 25 dB


def test_full_chain_records_every_parameter_and_never_clips(tmp_path: Path, bank: Path) -> None:
    everything = [
        "augment.speed.p=1",
        "augment.reverb.p=1",
        "augment.telephone.p=1",
        "augment.gaussian.p=1",
        "augment.gain.p=1",
        "augment.gain.db=[12,18]",
    ]
    render = _renderer(tmp_path, bank, everything)
    for i in range(6):
        outcome = render(_job(i, "all"))
        assert outcome.error is None, outcome.error
        rec = outcome.record
        assert rec is not None
        kinds = [a["kind"] for a in rec["augmentations"]]
        assert kinds == ["speed", "reverb", "noise", "telephone", "gaussian", "gain"]
        params = {a["kind"]: a["params"] for a in rec["augmentations"]}
        assert 0.9 <= params["speed"]["factor"] <= 1.1
        assert params["reverb"]["simulated"] and 0.2 <= params["reverb"]["rt60_s"] <= 0.7
        assert 200 <= params["telephone"]["low_hz"] <= 400
        assert params["gain"]["limited"] and params["gain"]["applied_db"] < 12
        assert abs(rec["snr_db"] - params["noise"]["requested_snr_db"]) <= 0.5
        y = _read(tmp_path, rec["audio_filepath"])
        assert np.abs(y).max() <= 10 ** (-1 / 20) + 1e-4  # the -1 dBFS ceiling
        assert rec["clipped_samples"] == 0 and rec["peak_dbfs"] <= -0.99
        assert abs(rec["duration"] - len(y) / 16000) < 1e-3


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path: Path, bank: Path) -> None:
    render = _renderer(tmp_path, bank, [])
    a = render(_job(1, "a")).record
    b = render(_job(1, "b")).record
    assert a is not None and b is not None
    assert (tmp_path / a["audio_filepath"]).read_bytes()[44:] == (
        tmp_path / b["audio_filepath"]
    ).read_bytes()[44:]
    other = Job(**{**_job(1, "c").__dict__, "seed": 7})
    c = render(other).record
    assert c is not None and c["snr_db"] != a["snr_db"]


def test_failing_utterance_is_reported_not_written(tmp_path: Path, bank: Path) -> None:
    render = _renderer(tmp_path, bank, [])
    job = Job(
        id="bad",
        script_id=None,
        text="...",
        tts_text="...",
        voice=VoiceSpec("espeak", "en-gb"),
        seed=1,
        audio_path="x/bad.wav",
        inputs_hash="x",
    )
    outcome = render(job)
    assert outcome.record is None and "silence" in (outcome.error or "")
    assert not (tmp_path / "x" / "bad.wav").exists()


def test_measured_impulse_responses_from_rir_dir(tmp_path: Path, bank: Path) -> None:
    rirs = tmp_path / "rirs"
    rirs.mkdir()
    t = np.arange(4000) / 8000
    rir = np.random.default_rng(0).standard_normal(len(t)) * np.exp(-t * 20) * 0.1
    rir[40] = 1.0  # direct path after 5 ms of silence
    sf.write(rirs / "room1.wav", rir.astype(np.float32), 8000)  # resampled to 16 kHz on load
    settings = RenderOptions(
        out_dir=str(tmp_path),
        config=load_config(overrides=["augment.reverb.p=1"]),
        engine_options=EngineOptions(),
        noise=scan_noise([], bank),
        rirs=scan_rirs([rirs]),
    )
    rec = Renderer(settings)(_job(0, "rir")).record
    assert rec is not None
    reverb = next(a for a in rec["augmentations"] if a["kind"] == "reverb")["params"]
    assert reverb == {"rir": "rirs/room1.wav", "simulated": False}
    noise = next(a for a in rec["augmentations"] if a["kind"] == "noise")["params"]
    assert abs(rec["snr_db"] - noise["requested_snr_db"]) <= 0.5
