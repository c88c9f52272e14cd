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


def load_backends() -> None:
    """Import the libraries the chain calls into (scipy.signal alone takes ~0.5 s).

    Called once when a render process starts, so that start-up cost is not
    paid by, and timed as part of, the first utterance that needs a filter.
    """
    import importlib

    for name in ("scipy.fft", "scipy.signal", "soxr"):
        importlib.import_module(name)


def power(x: np.ndarray) -> float:
    """Mean square of ``x`` (a BLAS dot product: fast, and exact enough for dB)."""
    return float(np.dot(x, x)) / x.size if x.size else 0.0


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """10·log10 of the power ratio of two equally long signals."""
    return 10.0 * math.log10((power(signal) + EPS) / (power(noise) + EPS))


def resample(
    audio: np.ndarray, sr_in: int, sr_out: int, speed: Fraction = Fraction(1)
) -> np.ndarray:
    """Band-limited resampling with libsoxr's high-quality filter (22050 -> 16000 and others).

    ``speed`` folds a speed perturbation (tempo and pitch together, like Kaldi's
    speed perturb) into the same pass: the result, played at ``sr_out``, is
    ``speed`` times faster, from one filter instead of a resample and a second
    speed-changing resample.
    """
    if sr_in == sr_out and speed == 1:
        return audio.astype(np.float32, copy=False)
    return _soxr(audio, sr_in * speed.numerator, sr_out * speed.denominator)


def _soxr(audio: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    import soxr  # a dependency of audiomentations (the synth extra)

    x = np.ascontiguousarray(audio, dtype=np.float32)
    return np.asarray(soxr.resample(x, rate_in, rate_out, quality="HQ"), dtype=np.float32)


def speed_factor(factor: float, max_denominator: int = 100) -> Fraction:
    """The rational speed factor actually applied (recorded exactly in the utterance)."""
    return Fraction(factor).limit_denominator(max_denominator)


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


def fft_length(n: int) -> int:
    """The fastest real-FFT length >= ``n`` for pocketfft among 2^k times 1, 3, 5, 9, 15, 25, 27.

    scipy's ``next_fast_len`` returns the smallest 5-smooth length, which is
    often slower (3^5·5^4 = 151875 takes 1.6 ms to transform where 5·2^15 =
    163840 takes 0.95 ms on the benchmark VM).
    """
    best = 0
    for odd in (1, 3, 5, 9, 15, 25, 27):
        m = odd
        while m < n:
            m *= 2
        best = m if best == 0 else min(best, m)
    return best


def apply_rir(audio: np.ndarray, rir: np.ndarray, tail_s: float, sample_rate: int) -> np.ndarray:
    """Convolve with ``rir``; keep ``tail_s`` of reverberant tail and the input's RMS."""
    import scipy.fft

    x, h = np.asarray(audio, dtype=np.float32), np.asarray(rir, dtype=np.float32)
    full = len(x) + len(h) - 1
    nfft = fft_length(full)  # long enough for linear, not circular, convolution
    spectrum = scipy.fft.rfft(x, nfft)
    spectrum *= scipy.fft.rfft(h, nfft)
    keep = min(full, len(x) + int(tail_s * sample_rate))
    wet = scipy.fft.irfft(spectrum, nfft, overwrite_x=True)[:keep]
    wet *= np.float32(math.sqrt((power(x) + EPS) / (power(wet) + EPS)))
    return np.ascontiguousarray(wet, dtype=np.float32)


@functools.lru_cache(maxsize=256)
def _telephone_sos(low_hz: float, high_hz: float, sample_rate: int) -> np.ndarray:
    """The high-pass then low-pass Butterworth cascade of audiomentations' HighPassFilter and
    LowPassFilter at 24 dB/octave (order 4, causal), as one second-order-section array."""
    from scipy.signal import butter

    nyquist = sample_rate // 2
    high_hz = min(high_hz, nyquist * 0.9999)
    hp = butter(4, low_hz, btype="highpass", fs=sample_rate, output="sos")
    lp = butter(4, high_hz, btype="lowpass", fs=sample_rate, output="sos")
    return np.concatenate([hp, lp])


DENORMAL_GUARD = 1e-20  # about -400 dBFS: far below 16-bit quantisation (-96 dBFS)


@functools.lru_cache(maxsize=4)
def _guard_pattern(n: int) -> np.ndarray:
    pattern = np.full(n, DENORMAL_GUARD, dtype=np.float32)
    pattern[1::2] = -DENORMAL_GUARD
    pattern.setflags(write=False)
    return pattern


def _denormal_guard(x: np.ndarray) -> np.ndarray:
    """``x`` plus an alternating +-1e-20 sequence (a new float32 array).

    In digital silence an IIR filter's state decays into subnormal numbers,
    which x86 CPUs handle tens of times more slowly (a 5 s silent gap made the
    telephone filter 40x slower). The guard keeps the state normal; it is
    inaudible, vanishes in 16-bit output, and is lost in rounding wherever the
    signal is not (near) silent.
    """
    n = x.shape[-1]
    size = 1 << max(0, n - 1).bit_length()  # few distinct cached lengths
    return np.add(x, _guard_pattern(size)[:n], dtype=np.float32)


def telephone(
    audio: np.ndarray, sample_rate: int, low_hz: float, high_hz: float, narrowband: bool
) -> np.ndarray:
    """Band-limit like a phone line or cheap microphone.

    ``audio`` is one signal or a stack of equally long signals (one per row),
    filtered in one pass. The filters are audiomentations' causal Butterworth
    high-pass and low-pass (24 dB/octave, started in their steady state as it
    does; the tests check the two agree), applied as one cascade. Linear, so
    filtering speech and noise apart equals filtering their mix. ``narrowband``
    adds an 8 kHz round trip (the codec's sample rate).
    """
    from scipy.signal import sosfilt, sosfilt_zi

    x = np.asarray(audio, dtype=np.float32)
    sos = _telephone_sos(round(low_hz, 1), round(high_hz, 1), sample_rate)
    zi = sosfilt_zi(sos).astype(np.float32)  # (sections, 2): steady state for a unit step
    guarded = _denormal_guard(x)
    # float32 throughout: within 1e-6 of float64 (below 16-bit steps), and half the work
    if x.ndim == 1:
        out, _ = sosfilt(sos.astype(np.float32), guarded, zi=zi * x[0])
    else:
        out, _ = sosfilt(
            sos.astype(np.float32), guarded, axis=-1, zi=zi[:, None, :] * x[None, :, :1]
        )
    out = np.asarray(out, dtype=np.float32)
    if narrowband and sample_rate > 8000:
        n = x.shape[-1]
        rows = [out] if out.ndim == 1 else list(out)
        rows = [_exact_length(resample(resample(r, sample_rate, 8000), 8000, sample_rate), n)
                for r in rows]  # fmt: skip
        out = rows[0] if out.ndim == 1 else np.stack(rows)
    return out


def _exact_length(x: np.ndarray, n: int) -> np.ndarray:
    """Cut, or pad with zeros at the end, to ``n`` samples (resampling round trips)."""
    return x[:n] if len(x) >= n else np.pad(x, (0, n - len(x)))


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Tile or cut ``x`` to exactly ``n`` samples."""
    if len(x) >= n:
        return x[:n]
    reps = -(-n // max(1, len(x)))
    return np.tile(x, reps)[:n]


def to_pcm16(audio: np.ndarray, gain: float = 1.0) -> np.ndarray:
    """Quantise ``audio * gain`` to int16 the way it is written (round to nearest, saturating)."""
    scaled = np.multiply(audio, np.float32(32767.0 * gain), dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -32767, 32767, out=scaled)
    return scaled.astype(np.int16)
