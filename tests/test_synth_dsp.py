"""DSP building blocks of the augmentation chain, checked against references."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from medasr_cli.synth import dsp, noise
from medasr_cli.synth.render import keep_freed_memory


def _tone(freq: float, sr: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _level_db(x: np.ndarray) -> float:
    core = x[len(x) // 10 : -len(x) // 10]  # away from the filter's edges
    return 10 * math.log10(dsp.power(core) + 1e-20)


def test_resample_keeps_the_band_and_removes_what_would_alias() -> None:
    inside = dsp.resample(_tone(1000.0, 22050), 22050, 16000)
    assert inside.dtype == np.float32
    assert abs(len(inside) - 16000) <= 1
    assert abs(_level_db(inside) - _level_db(_tone(1000.0, 16000))) < 0.1
    spectrum = np.abs(np.fft.rfft(inside[2000:14000] * np.hanning(12000)))
    peak_hz = np.argmax(spectrum) * 16000 / 12000
    assert abs(peak_hz - 1000.0) < 3
    # 10 kHz is above the new Nyquist (8 kHz): it must vanish, not fold down to 6 kHz
    aliased = dsp.resample(_tone(10000.0, 22050), 22050, 16000)
    assert _level_db(aliased) < _level_db(inside) - 60


def test_speed_shortens_by_the_recorded_factor() -> None:
    x = _tone(440.0, 16000, seconds=2.0)
    factor = dsp.speed_factor(1.1)
    assert factor == Fraction(11, 10)
    fast = dsp.resample(x, 16000, 16000, factor)
    assert abs(len(fast) - len(x) / 1.1) <= 2
    assert dsp.resample(x, 16000, 16000, Fraction(1)) is x


def test_speed_folded_into_resampling_equals_two_passes() -> None:
    x = _tone(440.0, 22050, seconds=2.0)
    factor = dsp.speed_factor(0.93)
    one_pass = dsp.resample(x, 22050, 16000, factor)
    two_pass = dsp.resample(dsp.resample(x, 22050, 16000), 16000, 16000, factor)
    assert abs(len(one_pass) - len(two_pass)) <= 1
    n = min(len(one_pass), len(two_pass))
    core = slice(n // 10, n - n // 10)  # away from the filters' edges
    err = one_pass[:n][core] - two_pass[:n][core]
    assert 10 * math.log10(dsp.power(err) / dsp.power(two_pass[:n][core])) < -60


@pytest.mark.parametrize(("n_audio", "n_rir"), [(139200, 11200), (48000, 24000), (1000, 16)])
def test_reverb_is_linear_convolution(n_audio: int, n_rir: int) -> None:
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(n_audio)
    x = rng.standard_normal(n_audio).astype(np.float32)
    h = dsp.simulated_rir(rng, 16000, 0.5, 6.0)[:n_rir]
    n_fft = dsp.fft_length(n_audio + n_rir - 1)
    assert n_fft >= n_audio + n_rir - 1 and n_fft <= 2 * (n_audio + n_rir)
    wet = dsp.apply_rir(x, h, 0.3, 16000)
    reference = fftconvolve(x.astype(np.float64), h.astype(np.float64))[: len(wet)]
    reference *= math.sqrt(dsp.power(x) / dsp.power(reference))
    assert wet.dtype == np.float32 and len(wet) == min(n_audio + 4800, n_audio + n_rir - 1)
    np.testing.assert_allclose(wet, reference, atol=2e-5 * np.abs(reference).max())


@pytest.mark.parametrize("narrowband", [False, True])
def test_telephone_matches_audiomentations_filters_and_is_linear(narrowband: bool) -> None:
    from audiomentations import HighPassFilter, LowPassFilter

    sr, low, high = 16000, 300.0, 3400.0
    rng = np.random.default_rng(0)
    speech = (rng.standard_normal(sr * 2) * 0.1).astype(np.float32)
    hiss = (rng.standard_normal(sr * 2) * 0.05).astype(np.float32)
    speech[sr // 2 : sr] = 0.0  # digital silence: the filter state must not go subnormal
    ours = dsp.telephone(np.stack([speech, hiss]), sr, low, high, narrowband)
    assert ours.shape == (2, len(speech)) and ours.dtype == np.float32
    # the same filters, one signal at a time, as audiomentations applies them
    same = {"min_rolloff": 24, "max_rolloff": 24, "zero_phase": False, "p": 1.0}
    hp = HighPassFilter(min_cutoff_freq=low, max_cutoff_freq=low, **same)
    lp = LowPassFilter(min_cutoff_freq=high, max_cutoff_freq=high, **same)
    for row, x in zip(ours, (speech, hiss), strict=True):
        single = dsp.telephone(x, sr, low, high, narrowband)
        np.testing.assert_allclose(row, single, atol=1e-6)
        if not narrowband:
            reference = lp(hp(x, sr), sr)
            np.testing.assert_allclose(row, reference, atol=2e-5)
    mix = dsp.telephone(speech + hiss, sr, low, high, narrowband)
    np.testing.assert_allclose(ours[0] + ours[1], mix, atol=1e-5)
    if not narrowband:  # the filter rings down in the gap, to (near) zero
        assert np.abs(ours[0][sr - 2000 : sr]).max() < 1e-6


def test_telephone_band_limits() -> None:
    sr = 16000
    kept = dsp.telephone(_tone(1000.0, sr), sr, 300.0, 3400.0, False)
    cut_low = dsp.telephone(_tone(60.0, sr), sr, 300.0, 3400.0, False)
    cut_high = dsp.telephone(_tone(7000.0, sr), sr, 300.0, 3400.0, False)
    assert abs(_level_db(kept) - _level_db(_tone(1000.0, sr))) < 0.5
    assert _level_db(cut_low) < _level_db(kept) - 40
    assert _level_db(cut_high) < _level_db(kept) - 40


def test_to_pcm16_rounds_and_saturates() -> None:
    x = np.array([0.0, 0.5 / 32767, 1.5 / 32767, -1.0, 1.2, -3.0], dtype=np.float32)
    assert dsp.to_pcm16(x).tolist() == [0, 0, 2, -32767, 32767, -32767]


def test_noise_segments_are_the_same_cached_or_read_in_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sr = 16000
    data = np.random.default_rng(3).uniform(-0.5, 0.5, size=(sr * 4, 2)).astype(np.float32)
    sf.write(tmp_path / "hvac.wav", data, sr, subtype="FLOAT")
    lib = noise.scan_noise([tmp_path], None)
    f = lib.files[0]
    cached, off_cached = noise.read_segment(f, sr, sr, np.random.default_rng(9))
    monkeypatch.setattr(noise, "WHOLE_FILE_S", 1.0)  # now "long": read from disk in part
    part, off_part = noise.read_segment(f, sr, sr, np.random.default_rng(9))
    assert off_cached == off_part
    np.testing.assert_array_equal(cached, part)
    start = int(np.random.default_rng(9).integers(0, len(data) - sr + 1))  # the same draw
    assert off_part == round(start / sr, 3)
    np.testing.assert_allclose(part, data[start : start + sr].mean(axis=1), atol=1e-7)
    cached[:] = 0.0  # callers get their own copy: the cache is unharmed
    again, _ = noise.read_segment(f, sr, sr, np.random.default_rng(9))
    monkeypatch.setattr(noise, "WHOLE_FILE_S", 300.0)
    again_cached, _ = noise.read_segment(f, sr, sr, np.random.default_rng(9))
    np.testing.assert_array_equal(again, again_cached)
    assert np.any(again_cached != 0.0)


def test_decoded_cache_evicts_by_bytes(tmp_path: Path) -> None:
    sr = 16000
    for name in ("a", "b", "c"):
        sf.write(tmp_path / f"{name}.wav", np.zeros(sr, dtype=np.float32), sr)
    cache = noise._DecodedCache(budget=2 * sr * 4)  # room for two one-second files
    for name in ("a", "b", "c"):
        arr = cache.get(str(tmp_path / f"{name}.wav"), sr)
        assert not arr.flags.writeable
    assert [Path(k[0]).name for k in cache.items] == ["b.wav", "c.wav"]
    assert cache.used == 2 * sr * 4


def test_keep_freed_memory_applies_on_glibc() -> None:
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    assert keep_freed_memory() is True
