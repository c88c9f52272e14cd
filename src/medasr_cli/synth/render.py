"""Render one utterance: TTS, 16 kHz at a fixed speech level, augmentation, atomic write.

Runs inside worker processes. Every random choice comes from one generator
seeded by the utterance's own seed (so any process, shard or resume gives the
same bytes), and every applied parameter is recorded in the returned
:class:`Utterance` (see :mod:`medasr_cli.synth.augment` for the chain).
"""

from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from medasr_cli.core.ledger import ignore_sigint
from medasr_cli.core.records import Utterance
from medasr_cli.synth import dsp
from medasr_cli.synth.augment import AugmentChain
from medasr_cli.synth.config import SynthConfig
from medasr_cli.synth.noise import AudioLibrary
from medasr_cli.tts.base import TTSEngine, VoiceSpec, sample_params
from medasr_cli.tts.registry import EngineOptions, create_engine


@dataclass(frozen=True)
class Job:
    """One planned utterance: everything that determines its audio."""

    id: str
    script_id: str | None
    text: str
    tts_text: str
    voice: VoiceSpec
    seed: int
    audio_path: str  # relative to the output folder
    inputs_hash: str
    terms: tuple[str, ...] = ()  # the target terms spoken in this utterance
    rendition: str = ""  # "{script id}-{k}": shared by the parts of one split rendition
    part: int | None = None  # with parts: this is part `part` (0-based) of `parts`
    parts: int | None = None

    @property
    def group(self) -> str:
        """What shard membership hashes: the rendition, so all its parts land in one shard."""
        return self.rendition or self.id


@dataclass
class RenderOptions:
    """Run-wide settings sent once to each worker process."""

    out_dir: str
    config: SynthConfig
    engine_options: EngineOptions
    noise: AudioLibrary | None = None
    rirs: AudioLibrary | None = None


@dataclass
class Outcome:
    """A worker's answer: the record, or the one-line reason it failed, plus timings."""

    job_id: str
    record: dict[str, Any] | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def keep_freed_memory(mmap_threshold: int = 64 * 2**20, trim_threshold: int = 256 * 2**20) -> bool:
    """Let glibc reuse freed heap memory for large arrays instead of unmapping it.

    Rendering allocates and frees several arrays of ~0.5 MB per utterance. By
    default glibc serves each from a fresh ``mmap`` and gives it back on free,
    so every utterance pays page faults on all of its buffers (about a tenth of
    espeak rendering time on the benchmark VM). Raising the mmap and trim
    thresholds keeps that memory in the process. Returns False where it does
    not apply (not glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, mmap_threshold)) and bool(
        mallopt(m_trim_threshold, trim_threshold)
    )


class Renderer:
    """Holds the engines of one process and renders jobs with them."""

    def __init__(self, settings: RenderOptions) -> None:
        keep_freed_memory()
        dsp.load_backends()
        self.settings = settings
        self.chain = AugmentChain(settings.config, settings.noise, settings.rirs)
        self._engines: dict[str, TTSEngine] = {}

    def engine(self, name: str) -> TTSEngine:
        if name not in self._engines:
            self._engines[name] = create_engine(name, self.settings.engine_options)
        return self._engines[name]

    def __call__(self, job: Job) -> Outcome:
        """Render ``job``; any failure becomes an Outcome with ``error`` (nothing written)."""
        timings: dict[str, float] = {}
        cpu0 = _cpu_seconds()
        try:
            record = self._render(job, timings)
            return Outcome(job.id, record=record, timings=timings)
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Outcome(job.id, error=f"{type(exc).__name__}: {msg}", timings=timings)
        finally:
            timings["cpu"] = _cpu_seconds() - cpu0

    def _render(self, job: Job, timings: dict[str, float]) -> dict[str, Any]:
        cfg, sr = self.settings.config, self.settings.config.sample_rate
        rng = np.random.default_rng(job.seed)
        engine = self.engine(job.voice.engine)
        tts_params = sample_params(cfg.tts.get(job.voice.engine, {}), rng)
        clock = _StageClock(timings)
        syn = engine.synthesize(job.tts_text, job.voice.voice, tts_params, seed=job.seed)
        clock.lap("tts")
        speed = self.chain.draw_speed(rng)  # applied by the resampler: one pass, not two
        speech = dsp.resample(syn.audio, syn.sample_rate, sr, speed)
        speech *= np.float32(
            dsp.db_to_gain(cfg.speech_level_dbfs) / math.sqrt(dsp.power(speech) + dsp.EPS)
        )
        clock.lap("resample")
        aug = self.chain(speech, rng, speed)
        clock.lap("augment")
        self._write(job, aug.pcm, sr)
        clock.lap("write")
        record = {
            "id": job.id,
            "script_id": job.script_id,
            "text": job.text,
            "audio_filepath": job.audio_path,
            "duration": round(len(aug.pcm) / sr, 4),
            "sample_rate": sr,
            "tts_engine": job.voice.engine,
            "voice": job.voice.label,
            "accent": syn.accent,
            "snr_db": aug.snr_db,
            "noise_source": aug.noise_source,
            "augmentations": aug.augmentations,
            # extra fields (Utterance allows them; the manifest carries them as metadata)
            "noise_type": aug.noise_type,
            "peak_dbfs": aug.peak_dbfs,
            "clipped_samples": aug.clipped_samples,
            "tts_text": job.tts_text,
            "tts_params": syn.params,
            "terms": list(job.terms),
            "seed": job.seed,
            "inputs_hash": job.inputs_hash,
        }
        if job.parts is not None:  # a part of a split script (whole scripts have no such keys)
            record.update(part=job.part, parts=job.parts)
        return Utterance.model_validate(record).model_dump(mode="json")

    def _write(self, job: Job, pcm: np.ndarray, sr: int) -> None:
        """Write atomically: a temporary file beside the target, renamed over it."""
        target = Path(self.settings.out_dir) / job.audio_path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
        try:
            sf.write(str(tmp), pcm, sr, subtype="PCM_16")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


class _StageClock:
    """Wall and CPU seconds per stage: ``timings[stage]`` and ``timings["cpu_" + stage]``.

    Wall time includes waiting for a core when other processes compete for it;
    CPU time (this process and its finished children, such as espeak-ng) does not.
    """

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings
        self.wall, self.cpu = time.perf_counter(), _cpu_seconds()

    def lap(self, stage: str) -> None:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        self.timings[stage] = wall - self.wall
        self.timings[f"cpu_{stage}"] = cpu - self.cpu
        self.wall, self.cpu = wall, cpu


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (espeak-ng runs as a child)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


_WORKER: Renderer | None = None


def init_worker(settings: RenderOptions) -> None:
    """Process-pool initializer: one Renderer (and its engines) per worker process."""
    global _WORKER
    ignore_sigint()  # the parent handles Ctrl-C: it lets this worker finish its utterance
    _WORKER = Renderer(settings)


def render_in_worker(job: Job) -> Outcome:
    """Process-pool task: render ``job`` with this worker's Renderer."""
    assert _WORKER is not None, "init_worker was not called"
    return _WORKER(job)
