"""Synthetic hospital sounds for the noise bank: alarms, pumps, ventilation, transients.

Each ``*_track(rng, n, sr)`` returns ``n`` float32 samples; levels are set later.
"""

from __future__ import annotations

import numpy as np

from medasr_cli.synth import dsp


def coloured_noise(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    spec *= freqs ** (-exponent / 2.0)
    out = np.fft.irfft(spec, n)
    return (out / (np.std(out) + dsp.EPS)).astype(np.float32)


def _tone(freq: float, dur: float, sr: int, harmonics: int = 4, decay: float = 0.7) -> np.ndarray:
    t = np.arange(int(dur * sr)) / sr
    wave = sum(decay**h * np.sin(2 * np.pi * freq * (h + 1) * t) for h in range(harmonics))
    ramp = min(len(t) // 4, int(0.01 * sr))
    env = np.ones(len(t))
    if ramp:
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
    return (wave * env).astype(np.float32)


def _place(track: np.ndarray, sound: np.ndarray, at: int, gain: float = 1.0) -> None:
    end = min(len(track), at + len(sound))
    if at < end:
        track[at:end] += sound[: end - at] * gain


def alarm_track(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Monitor alarms: a 3+2 ten-pulse high-priority burst or a three-pulse medium one, repeated,
    with pulse-oximeter beeps at a heart rate."""
    track = np.zeros(n, dtype=np.float32)
    f0 = float(rng.uniform(400, 1000))
    high = bool(rng.random() < 0.5)
    pulses = [0, 1, 2, 4, 5] * 2 if high else [0, 1, 2]
    pulse_dur, step = float(rng.uniform(0.1, 0.2)), float(rng.uniform(0.2, 0.3))
    period = float(rng.uniform(2.5, 6.0)) if high else float(rng.uniform(5.0, 10.0))
    tone = _tone(f0, pulse_dur, sr)
    start = float(rng.uniform(0, 2))
    while start * sr < n:
        for i, slot in enumerate(pulses):
            _place(track, tone, int((start + slot * step + (2.0 if i >= 5 else 0)) * sr))
        start += period + (2.0 if high else 0.0)
    if rng.random() < 0.7:  # SpO2 beeps
        bpm, pitch = float(rng.uniform(55, 110)), float(rng.uniform(600, 950))
        beep, t = _tone(pitch, 0.06, sr, harmonics=2), float(rng.uniform(0, 1))
        while t * sr < n:
            _place(track, beep, int(t * sr), 0.4)
            t += 60.0 / bpm * float(rng.uniform(0.97, 1.03))
    return track


def pump_track(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Infusion pump: high beeps in pairs every few seconds, and short motor whirs."""
    track = np.zeros(n, dtype=np.float32)
    f0 = float(rng.uniform(2000, 4000))
    beep = _tone(f0, float(rng.uniform(0.08, 0.15)), sr, harmonics=2, decay=0.3)
    period, t = float(rng.uniform(1.5, 4.0)), float(rng.uniform(0, 1))
    while t * sr < n:
        _place(track, beep, int(t * sr))
        _place(track, beep, int((t + 0.25) * sr))
        t += period
    from scipy.signal import butter, sosfilt

    sos = butter(4, [200, 1200], btype="bandpass", fs=sr, output="sos")
    for _ in range(int(rng.integers(2, 6))):
        whir = sosfilt(sos, rng.standard_normal(int(rng.uniform(0.3, 1.0) * sr))).astype(np.float32)
        _place(track, whir, int(rng.integers(0, n)), 0.3)
    return track


def hvac_track(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Ventilation: pink/brown noise, 50/60 Hz hum with harmonics, a fan tone, slow level drift."""
    t = np.arange(n) / sr
    base = coloured_noise(rng, n, float(rng.uniform(1.0, 2.0)))
    mains = 50.0 if rng.random() < 0.5 else 60.0
    hum = sum(0.3 / (h + 1) * np.sin(2 * np.pi * mains * (h + 1) * t) for h in range(4))
    fan = 0.15 * np.sin(2 * np.pi * float(rng.uniform(90, 300)) * t)
    drift = 1.0 + 0.15 * np.sin(2 * np.pi * float(rng.uniform(0.05, 0.3)) * t)
    return ((base + hum + fan) * drift).astype(np.float32)


def _clank(rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(int(0.6 * sr)) / sr
    modes = rng.uniform(300, 4000, size=5)
    return sum(np.exp(-t * rng.uniform(6, 20)) * np.sin(2 * np.pi * f * t) for f in modes).astype(
        np.float32
    )


def _door(rng: np.random.Generator, sr: int) -> np.ndarray:
    t = np.arange(int(0.5 * sr)) / sr
    thump = np.sin(2 * np.pi * float(rng.uniform(50, 110)) * t) * np.exp(-t * 12)
    crack = rng.standard_normal(len(t)) * np.exp(-t * 60) * 0.5
    return (thump + crack).astype(np.float32) * 2.0


def _trolley(rng: np.random.Generator, sr: int) -> np.ndarray:
    dur = float(rng.uniform(1.5, 4.0))
    m = int(dur * sr)
    from scipy.signal import butter, sosfilt

    sos = butter(2, [150, 2500], btype="bandpass", fs=sr, output="sos")
    roll = sosfilt(sos, rng.standard_normal(m)) * 0.4
    rattle = (rng.random(m) < 0.002) * rng.standard_normal(m) * 3.0
    env = np.sin(np.pi * np.arange(m) / m)
    return ((roll + rattle) * env).astype(np.float32)


def transient_track(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Trolleys, door slams and clanks at random times over quiet room tone."""
    track = coloured_noise(rng, n, 1.0) * 0.05
    makers = (_clank, _door, _trolley)
    for _ in range(int(rng.integers(4, 10) * n / (20 * sr)) + 1):
        sound = makers[int(rng.integers(3))](rng, sr)
        _place(track, sound, int(rng.integers(0, n)), float(rng.uniform(0.3, 1.0)))
    return track
