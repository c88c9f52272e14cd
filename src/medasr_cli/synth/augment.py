"""The augmentation chain: speed, reverb, background noise at a measured SNR, channel, hiss, gain.

Physical order: speed -> room reverb -> + background noise -> telephone
channel -> + electronic hiss -> gain -> peak limit -> 16-bit PCM. Speech and
noise travel separately through the (linear) channel, so the noise is scaled
to hit the requested SNR *at the output*, and the SNR recorded is measured on
the samples as written. Every random draw comes from the caller's generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from medasr_cli.core.records import Augmentation
from medasr_cli.synth import dsp
from medasr_cli.synth.config import SynthConfig
from medasr_cli.synth.noise import AudioLibrary, load_rir, pick_noise

REVERB_TAIL_S = 0.3


@dataclass
class Augmented:
    """The samples to write and what was done to them."""

    pcm: np.ndarray  # int16
    augmentations: list[Augmentation]
    snr_db: float | None = None  # measured on ``pcm``
    noise_source: str | None = None
    noise_type: str | None = None
    peak_dbfs: float = -math.inf
    clipped_samples: int = 0


@dataclass
class _State:
    speech: np.ndarray
    noise: np.ndarray | None = None
    hiss: np.ndarray | None = None
    steps: list[Augmentation] = field(default_factory=list)
    noise_step: Augmentation | None = None


def _mix_power(speech: np.ndarray, noise: np.ndarray | None) -> float:
    """Mean square of ``speech + noise`` from dot products, without forming the sum."""
    if noise is None:
        return dsp.power(speech)
    return dsp.power(speech) + dsp.power(noise) + 2.0 * float(np.dot(speech, noise)) / speech.size


def _draw(rng: np.random.Generator, lo_hi: tuple[float, float], digits: int = 2) -> float:
    return round(float(rng.uniform(*lo_hi)), digits)


class AugmentChain:
    """Apply the configured steps, each with its own probability, to 16 kHz speech."""

    def __init__(
        self, config: SynthConfig, noise: AudioLibrary | None, rirs: AudioLibrary | None
    ) -> None:
        self.cfg = config.augment
        self.sr = config.sample_rate
        self.ceiling = dsp.db_to_gain(config.peak_dbfs)
        self.noise = noise
        self.rirs = rirs

    def __call__(self, speech: np.ndarray, rng: np.random.Generator, speed: Fraction) -> Augmented:
        """Augment ``speech`` (float32 at the output rate); nothing here writes files.

        ``speed`` is the factor :meth:`draw_speed` drew, which the caller has
        already applied while resampling the TTS output (one filter pass instead
        of two); it is recorded here.
        """
        st = _State(speech)
        if speed != 1:
            st.steps.append(Augmentation(kind="speed", params={"factor": round(float(speed), 4)}))
        self._reverb(st, rng)
        self._add_noise(st, rng)
        self._telephone(st, rng)
        self._scale_noise(st)
        self._hiss(st, rng)
        return self._finish(st, rng)

    def draw_speed(self, rng: np.random.Generator) -> Fraction:
        """The speed step's draw: the rational factor to apply, 1 when the step is skipped."""
        if rng.random() < self.cfg.speed.p:
            return dsp.speed_factor(float(rng.uniform(*self.cfg.speed.factor)))
        return Fraction(1)

    def _reverb(self, st: _State, rng: np.random.Generator) -> None:
        if rng.random() >= self.cfg.reverb.p:
            return
        params: dict[str, Any]
        if self.rirs:
            f = self.rirs.choose(rng)
            rir = dsp.prepare_rir(load_rir(f, self.sr))
            params = {"rir": f.label, "simulated": False}
        else:
            rt60, drr = _draw(rng, self.cfg.reverb.rt60_s, 3), _draw(rng, self.cfg.reverb.drr_db)
            rir = dsp.simulated_rir(rng, self.sr, rt60, drr)
            params = {"rir": "simulated", "simulated": True, "rt60_s": rt60, "drr_db": drr}
        st.speech = dsp.apply_rir(st.speech, rir, REVERB_TAIL_S, self.sr)
        st.steps.append(Augmentation(kind="reverb", params=params))

    def _add_noise(self, st: _State, rng: np.random.Generator) -> None:
        if not self.noise or rng.random() >= self.cfg.noise.p:
            return
        st.noise, f, offset = pick_noise(self.noise, len(st.speech), self.sr, rng)
        if not st.noise.flags.writeable:  # scaled in place below
            st.noise = st.noise.copy()
        params = {"source": f.label, "category": f.category, "offset_s": offset,
                  "requested_snr_db": _draw(rng, self.cfg.noise.snr_db)}  # fmt: skip
        st.noise_step = Augmentation(kind="noise", params=params)
        st.steps.append(st.noise_step)

    def _telephone(self, st: _State, rng: np.random.Generator) -> None:
        tel = self.cfg.telephone
        if rng.random() >= tel.p:
            return
        low, high = _draw(rng, tel.low_hz, 1), _draw(rng, tel.high_hz, 1)
        narrow = bool(rng.random() < tel.narrowband)
        if st.noise is None:
            st.speech = dsp.telephone(st.speech, self.sr, low, high, narrow)
        else:  # linear: filtering the parts (in one pass) equals filtering the mix
            both = dsp.telephone(np.stack([st.speech, st.noise]), self.sr, low, high, narrow)
            st.speech, st.noise = both[0], both[1]
        params = {"low_hz": low, "high_hz": high, "narrowband": narrow}
        st.steps.append(Augmentation(kind="telephone", params=params))

    def _scale_noise(self, st: _State) -> None:
        if st.noise is None or st.noise_step is None:
            return
        target = float(st.noise_step.params["requested_snr_db"])
        ratio = dsp.power(st.speech) / (dsp.power(st.noise) * 10 ** (target / 10) + dsp.EPS)
        st.noise *= np.float32(math.sqrt(ratio))  # our own copy (see _add_noise)

    def _hiss(self, st: _State, rng: np.random.Generator) -> None:
        if rng.random() >= self.cfg.gaussian.p:
            return
        snr = _draw(rng, self.cfg.gaussian.snr_db)
        level = math.sqrt(_mix_power(st.speech, st.noise) / 10 ** (snr / 10))
        st.hiss = rng.standard_normal(len(st.speech), dtype=np.float32) * np.float32(level)
        st.steps.append(Augmentation(kind="gaussian", params={"snr_db": snr}))

    def _finish(self, st: _State, rng: np.random.Generator) -> Augmented:
        """Gain, peak limit (scale down, never clip), quantise, and measure."""
        gain_db = _draw(rng, self.cfg.gain.db) if rng.random() < self.cfg.gain.p else 0.0
        mix = st.speech if st.noise is None else st.speech + st.noise
        if st.hiss is not None:
            mix = mix + st.hiss if mix is st.speech else np.add(mix, st.hiss, out=mix)
        peak = max(float(mix.max()), -float(mix.min())) * dsp.db_to_gain(gain_db)
        applied = (
            gain_db if peak <= self.ceiling else gain_db + 20 * math.log10(self.ceiling / peak)
        )
        g = np.float32(dsp.db_to_gain(applied))
        pcm = dsp.to_pcm16(mix, float(g))
        st.steps.append(Augmentation(kind="gain", params={
            "requested_db": gain_db, "applied_db": round(applied, 2),
            "limited": bool(applied < gain_db - 1e-6)}))  # fmt: skip
        out = Augmented(pcm, st.steps)
        if st.noise_step is not None:
            out.snr_db = self._measured_snr(st, pcm, g)
            st.noise_step.params["measured_snr_db"] = out.snr_db
            out.noise_source = str(st.noise_step.params["source"])
            out.noise_type = str(st.noise_step.params["category"])
        top = max(int(pcm.max()), -int(pcm.min()))  # to_pcm16 saturates at +-32767
        out.peak_dbfs = round(20 * math.log10(max(1, top) / 32767), 2)
        out.clipped_samples = (
            int(np.count_nonzero(pcm == 32767)) + int(np.count_nonzero(pcm == -32767))
            if top >= 32767
            else 0
        )
        return out

    @staticmethod
    def _measured_snr(st: _State, pcm: np.ndarray, g: np.float32) -> float:
        """Speech vs everything else that is not hiss, on the quantised samples."""
        rest = pcm.astype(np.float32)  # rest = pcm/32767 - g*speech (- g*hiss), in place
        scaled = np.multiply(st.speech, np.float32(32767.0) * g, dtype=np.float32)
        rest -= scaled
        if st.hiss is not None:
            np.multiply(st.hiss, np.float32(32767.0) * g, out=scaled)
            rest -= scaled
        speech_power = dsp.power(st.speech) * float(g) ** 2 * 32767.0**2
        eps = dsp.EPS * 32767.0**2  # the same floor as dsp.snr_db, at int16 scale
        return round(10.0 * math.log10((speech_power + eps) / (dsp.power(rest) + eps)), 2)
