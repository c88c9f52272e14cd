"""Signal-processing primitives for augmentation: all deterministic given their parameters.

Randomness lives in the caller (one seeded generator per utterance), so the
same seed gives the same audio in any process, shard or resume.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

EPS = 1e-12


def power(x: np.ndarray) -> float:
    """Mean square of ``x`` (a BLAS dot product: fast, and exact enough for dB)."""
    return float(np.dot(x, x)) / x.size if x.size else 0.0


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """10·log10 of the power ratio of two equally long signals."""
    return 10.0 * math.log10((power(signal) + EPS) / (power(noise) + EPS))


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling between integer rates (22050 -> 16000 is 320/441)."""
    if sr_in == sr_out:
        return audio.astype(np.float32, copy=False)
    g = math.gcd(sr_in, sr_out)
    return _resample_poly(audio, sr_out // g, sr_in // g)


@functools.lru_cache(maxsize=64)
def _lowpass(up: int, down: int) -> np.ndarray:
    """scipy's default resample_poly filter (Kaiser 5.0), designed once per ratio."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    return firwin(20 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0)).astype(np.float32)


def _resample_poly(audio: np.ndarray, up: int, down: int) -> np.ndarray:
    from scipy.signal import resample_poly  # scipy.signal is slow to import: only when used

    x = audio.astype(np.float32, copy=False)
    return resample_poly(x, up, down, window=_lowpass(up, down)).astype(np.float32, copy=False)


def speed_factor(factor: float, max_denominator: int = 100) -> Fraction:
    """The rational speed factor actually applied (small terms keep resampling cheap)."""
    return Fraction(factor).limit_denominator(max_denominator)


def change_speed(audio: np.ndarray, factor: Fraction) -> np.ndarray:
    """Play ``factor`` times faster (tempo and pitch change together, like Kaldi's speed perturb)."""
    if factor == 1:
        return audio
    return _resample_poly(audio, factor.denominator, factor.numerator)


def simulated_rir(
    rng: np.random.Generator, sample_rate: int, rt60_s: float, drr_db: float
) -> np.ndarray:
    """A room impulse response: direct path, then exponentially decaying diffuse noise.

    The tail decays by 60 dB in ``rt60_s`` and carries ``1/10^(drr_db/10)`` of the
    direct energy; a one-pole low-pass makes later reflections darker, as in real rooms.
    """
    n = max(16, int(min(rt60_s, 1.5) * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60_s)
    pre_delay = int(0.004 * sample_rate)
    tail[:pre_delay] = 0.0
    alpha = 0.35
    tail = _one_pole_lowpass(tail, alpha)  # later reflections are darker
    tail *= math.sqrt(10.0 ** (-drr_db / 10.0) / (np.sum(tail**2) + EPS))
    tail[0] += 1.0
    return tail.astype(np.float32)


def _one_pole_lowpass(x: np.ndarray, alpha: float) -> np.ndarray:
    from scipy.signal import lfilter

    return np.asarray(lfilter([1.0 - alpha], [1.0, -alpha], x))


def prepare_rir(rir: np.ndarray) -> np.ndarray:
    """Start a measured RIR at its direct path and scale that path to 1."""
    peak = int(np.argmax(np.abs(rir)))
    start = max(0, peak - 16)
    out = rir[start:].astype(np.float32)
    return out / (np.abs(out).max() + EPS)


def apply_rir(audio: np.ndarray, rir: np.ndarray, tail_s: float, sample_rate: int) -> np.ndarray:
    """Convolve with ``rir``; keep ``tail_s`` of reverberant tail and the input's RMS."""
    from scipy.signal import fftconvolve

    wet = fftconvolve(audio, rir)[: len(audio) + int(tail_s * sample_rate)]
    wet *= math.sqrt((power(audio) + EPS) / (power(wet) + EPS))
    return wet.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _telephone_filters(low_hz: float, high_hz: float) -> tuple[object, object]:
    from audiomentations import HighPassFilter, LowPassFilter

    hp = HighPassFilter(
        min_cutoff_freq=low_hz,
        max_cutoff_freq=low_hz,
        min_rolloff=24,
        max_rolloff=24,
        zero_phase=False,
        p=1.0,
    )
    lp = LowPassFilter(
        min_cutoff_freq=high_hz,
        max_cutoff_freq=high_hz,
        min_rolloff=24,
        max_rolloff=24,
        zero_phase=False,
        p=1.0,
    )
    return hp, lp


def telephone(
    audio: np.ndarray, sample_rate: int, low_hz: float, high_hz: float, narrowband: bool
) -> np.ndarray:
    """Band-limit like a phone line or cheap microphone (audiomentations' Butterworth filters).

    Linear, so applying it to speech and noise separately equals applying it to the mix.
    ``narrowband`` adds an 8 kHz round trip (the codec's sample rate).
    """
    hp, lp = _telephone_filters(round(low_hz, 1), round(high_hz, 1))
    out = lp(hp(audio.astype(np.float32), sample_rate), sample_rate)  # type: ignore[operator]
    if narrowband and sample_rate > 8000:
        out = resample(resample(out, sample_rate, 8000), 8000, sample_rate)[: len(audio)]
    return np.asarray(out, dtype=np.float32)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Tile or cut ``x`` to exactly ``n`` samples."""
    if len(x) >= n:
        return x[:n]
    reps = -(-n // max(1, len(x)))
    return np.tile(x, reps)[:n]


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Quantise to int16 the way it is written (round to nearest, saturating)."""
    return np.clip(np.round(audio * 32767.0), -32767, 32767).astype(np.int16)
