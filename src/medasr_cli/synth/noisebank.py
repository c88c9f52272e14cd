"""``medasr synth noise-bank``: a procedurally generated, offline hospital noise bank.

Five categories, each a folder of 16 kHz mono WAVs:

- ``babble``: several espeak-ng talkers (different accents, variants, pitch and
  rate) saying ward phrases, overlapped at random offsets and levels;
- ``monitor``: patient-monitor alarms (IEC 60601-1-8 style high/medium
  priority pulse bursts with harmonics) and pulse-oximeter beeps;
- ``pump``: infusion-pump alarm beeps (2-4 kHz pairs) and motor whirs;
- ``hvac``: ventilation noise: pink/brown noise, mains hum, fan tone, slow drift;
- ``transient``: trolley rattles, door slams and metal clanks over room tone.

The bank is reproducible from its seed and described in ``bank.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from medasr_cli.core.jsonl import atomic_write
from medasr_cli.synth import dsp
from medasr_cli.synth.noise import BANK_MARKER
from medasr_cli.synth.sounds import alarm_track, hvac_track, pump_track, transient_track

log = logging.getLogger(__name__)

SR = 16000
BANK_VERSION = 1
LEVEL_DBFS = -20.0
PHRASES = [
    "Can you get me the obs for bed four please",
    "The patient in side room two is asking for pain relief",
    "Has anyone seen the drug chart for Mister Jones",
    "Bleep the registrar, the sats have dropped again",
    "We need a porter to take him down to radiology",
    "She has had her morning meds and the bloods are back",
    "Can I have a hand turning the patient in bay three",
    "The family are waiting to speak to the consultant",
    "Pharmacy says the antibiotics will be up in an hour",
    "Let's do the ward round after handover",
    "He is nil by mouth from midnight for theatre",
    "Please check the cannula site before the next dose",
    "I'll put the kettle on after this",
    "The fluids need changing in bed twelve",
    "Who is on call for medicine tonight",
]
_BABBLE_VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc"]
_BABBLE_VARIANTS = ["", "f2", "f3", "f4", "m2", "m3", "m4", "m6"]


@dataclass
class BankResult:
    """What ``build_noise_bank`` wrote."""

    folder: Path
    files: dict[str, list[str]]
    seconds: float


def _talker(rng: np.random.Generator, n: int) -> np.ndarray:
    """One babble talker: espeak phrases with pauses, filling ``n`` samples."""
    from medasr_cli.tts.espeak import EspeakEngine

    engine = EspeakEngine()
    variant = _BABBLE_VARIANTS[int(rng.integers(len(_BABBLE_VARIANTS)))]
    voice = _BABBLE_VOICES[int(rng.integers(len(_BABBLE_VOICES)))] + (
        f"+{variant}" if variant else ""
    )
    params = {"rate": float(rng.uniform(150, 200)), "pitch": float(rng.uniform(25, 75))}
    out, filled = np.zeros(n, dtype=np.float32), int(rng.integers(0, SR))
    while filled < n:
        syn = engine.synthesize(PHRASES[int(rng.integers(len(PHRASES)))], voice, params, 0)
        speech = dsp.resample(syn.audio, syn.sample_rate, SR)[: n - filled]
        out[filled : filled + len(speech)] = speech / (np.sqrt(dsp.power(speech)) + dsp.EPS)
        filled += len(speech) + int(rng.uniform(0.2, 1.5) * SR)
    return out


def babble_track(rng: np.random.Generator, n: int) -> np.ndarray:
    """Four to eight overlapped talkers at levels within 9 dB of each other."""
    talkers = int(rng.integers(4, 9))
    mix = np.zeros(n, dtype=np.float32)
    for _ in range(talkers):
        mix += _talker(rng, n) * dsp.db_to_gain(float(rng.uniform(-9, 0)))
    return mix


GENERATORS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "babble": babble_track,
    "monitor": lambda rng, n: alarm_track(rng, n, SR),
    "pump": lambda rng, n: pump_track(rng, n, SR),
    "hvac": lambda rng, n: hvac_track(rng, n, SR),
    "transient": lambda rng, n: transient_track(rng, n, SR),
}


def build_noise_bank(
    out: Path,
    *,
    seed: int = 0,
    per_category: int = 4,
    seconds: float = 20.0,
    categories: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BankResult:
    """Write ``per_category`` files of ``seconds`` each per category into ``out``."""
    cats = categories or list(GENERATORS)
    unknown = sorted(set(cats) - set(GENERATORS))
    if unknown:
        from medasr_cli.core.errors import InputError

        raise InputError(f"unknown noise categories {unknown} (known: {', '.join(GENERATORS)})")
    n = int(seconds * SR)
    files: dict[str, list[str]] = {}
    total, done = len(cats) * per_category, 0
    for ci, cat in enumerate(cats):
        for k in range(per_category):
            rng = np.random.default_rng([seed, ci, k, BANK_VERSION])
            audio = GENERATORS[cat](rng, n)
            audio *= dsp.db_to_gain(LEVEL_DBFS) / (np.sqrt(dsp.power(audio)) + dsp.EPS)
            peak = float(np.abs(audio).max())
            if peak > 0.99:
                audio *= 0.99 / peak
            rel = f"{cat}/{cat}_{k:02d}.wav"
            (out / cat).mkdir(parents=True, exist_ok=True)
            sf.write(str(out / rel), dsp.to_pcm16(audio), SR, subtype="PCM_16")
            files.setdefault(cat, []).append(rel)
            done += 1
            if progress is not None:
                progress(done, total)
    meta = {
        "version": BANK_VERSION,
        "seed": seed,
        "sample_rate": SR,
        "seconds": seconds,
        "per_category": per_category,
        "files": files,
    }
    with atomic_write(out / BANK_MARKER) as fh:
        json.dump(meta, fh, indent=2)
    log.info("noise bank: %d files in %s", total, out)
    return BankResult(out, files, total * seconds)


def ensure_noise_bank(folder: Path, seed: int = 0) -> Path:
    """Build the default bank in ``folder`` unless a complete one is already there.

    The bank is built in a private folder and renamed into place, so shard runs
    starting together never read a half-written bank.
    """
    if (folder / BANK_MARKER).is_file():
        return folder
    log.info("building the hospital noise bank in %s (once; reused on later runs)", folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    build_noise_bank(tmp, seed=seed)
    try:
        os.rename(tmp, folder)
    except OSError:  # another run finished first (or a stale partial folder is in the way)
        if not (folder / BANK_MARKER).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(tmp, folder)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
