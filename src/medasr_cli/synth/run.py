"""``medasr synth`` as a library function: plan, skip what is done, render in processes.

Output folder layout::

    OUT/audio/<utterance id>.wav     16 kHz mono PCM (or .flac)
    OUT/utterances.jsonl             one Utterance per line (``utterances.shard-K-of-N.jsonl``)
    OUT/utterances.summary.json      the run's summary (``utterances.shard-K-of-N.summary.json``)
    OUT/rejected.jsonl               clips dropped by --verify-model (``rejected.shard-K-of-N.jsonl``)
    OUT/scripts.jsonl                the scripts generated from --terms
    OUT/noise-bank/                  the default hospital noise bank (built once)

Resumable and idempotent, through the shared :class:`~medasr_cli.core.ledger.Ledger`:
records are appended and flushed one by one as utterances finish (a crash
loses at most the utterances in flight; Ctrl-C lets them finish), an utterance
whose record has the same inputs hash and whose audio exists is skipped, and
at the end the JSONL is rewritten atomically with one record per id. With
``--verify-model`` the clips are then transcribed and scored
(:mod:`medasr_cli.synth.verify`); a dropped clip's record lives in the rejected
JSONL, which counts as done too, so a re-run does not render it again.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import InputError, MedasrError
from medasr_cli.core.ledger import Interrupted, Ledger, StopFlag, graceful_interrupt
from medasr_cli.core.records import Script
from medasr_cli.core.shard import in_shard, stable_hex
from medasr_cli.synth.config import SynthConfig, load_config
from medasr_cli.synth.inputs import load_scripts, scripts_from_terms
from medasr_cli.synth.noise import AudioLibrary, scan_noise, scan_rirs
from medasr_cli.synth.noisebank import ensure_noise_bank
from medasr_cli.synth.plan import is_done, plan_jobs
from medasr_cli.synth.render import (
    Job,
    Outcome,
    Renderer,
    RenderOptions,
    init_worker,
    render_in_worker,
)
from medasr_cli.synth.summary import SynthSummary, summarise, write_summary
from medasr_cli.synth.verbalize import Verbalizer, load_respellings, packaged_respellings
from medasr_cli.synth.verify import Verifier, VerifyOptions, count, partition, verify_records
from medasr_cli.synth.voices import ORDERS, default_plan
from medasr_cli.tts.base import VoiceSpec
from medasr_cli.tts.registry import EngineOptions, create_engine

log = logging.getLogger(__name__)

_PART_SUFFIX = re.compile(r"-p\d+$")  # "{script id}-{k}-p{j}" -> its rendition

Progress = Callable[[int, int, float], None]  # (done, total, audio seconds so far)
VerifyProgress = Callable[[int, int], None]  # (clips verified, clips to verify)


@dataclass
class SynthRequest:
    """What to synthesise and how; defaults give the product card's offline run."""

    out_dir: Path
    scripts: Path | None = None
    terms: Path | None = None
    voices: list[VoiceSpec] | None = None
    voice_order: str = "round-robin"
    per_script: int = 1
    scripts_per_term: int = 3
    config: SynthConfig = field(default_factory=load_config)
    noise_dirs: list[Path] = field(default_factory=list)
    noise_bank: Path | None = None
    auto_noise_bank: bool = True
    rir_dirs: list[Path] = field(default_factory=list)
    respellings: Path | None = None
    engine_options: EngineOptions = field(default_factory=EngineOptions)
    seed: int = 0
    jobs: int = 1
    shard: tuple[int, int] | None = None
    audio_format: str = "wav"
    limit: int | None = None
    # split scripts estimated longer than this (s) at sentence boundaries; None or 0: never
    # (off by default: docs/synth.md says why, and recommends 20 for LLM dictations)
    max_utterance_s: float | None = 20.0  # split longer scripts (estimate); None or 0: off
    verify: VerifyOptions | None = None  # transcribe each clip and flag (or drop) bad ones

    def _named(self, stem: str, suffix: str = ".jsonl") -> Path:
        if self.shard is None:
            return self.out_dir / f"{stem}{suffix}"
        k, n = self.shard
        return self.out_dir / f"{stem}.shard-{k}-of-{n}{suffix}"

    @property
    def jsonl_path(self) -> Path:
        return self._named("utterances")

    @property
    def rejected_path(self) -> Path:
        """Where clips dropped by verification are listed (not training data)."""
        return self._named("rejected")

    @property
    def summary_path(self) -> Path:
        return self._named("utterances", ".summary.json")


def _scripts(req: SynthRequest) -> list[Script]:
    if (req.scripts is None) == (req.terms is None):
        raise InputError("give exactly one of --scripts FILE or --terms FILE")
    if req.scripts is not None:
        scripts = load_scripts(req.scripts)
    else:
        assert req.terms is not None
        scripts = scripts_from_terms(
            req.terms, req.out_dir / "scripts.jsonl", per_term=req.scripts_per_term, seed=req.seed
        )
    return scripts[: req.limit] if req.limit else scripts


def _check_voices(voices: list[VoiceSpec], options: EngineOptions) -> None:
    engines: dict[str, Any] = {}
    for v in voices:
        if v.engine not in engines:
            engines[v.engine] = create_engine(v.engine, options)
        engines[v.engine].check_voice(v.voice)


def _libraries(req: SynthRequest) -> tuple[AudioLibrary | None, AudioLibrary | None]:
    bank = req.noise_bank
    wants_noise = req.config.augment.noise.p > 0
    if bank is None and not req.noise_dirs and wants_noise and req.auto_noise_bank:
        bank = ensure_noise_bank(req.out_dir / "noise-bank", seed=0)
    noise = scan_noise(req.noise_dirs, bank) if (req.noise_dirs or bank) else None
    rirs = scan_rirs(req.rir_dirs) if req.rir_dirs else None
    if wants_noise and noise is None:
        log.warning("no noise sources: utterances are written without background noise")
    return noise, rirs


def _fingerprint(req: SynthRequest, noise: AudioLibrary | None, rirs: AudioLibrary | None) -> str:
    parts = [
        req.config.model_dump_json(),
        repr(req.engine_options.coqui),  # not the thread count: it does not change the audio
        noise.fingerprint() if noise else "-",
        rirs.fingerprint() if rirs else "-",
    ]
    return stable_hex("\n".join(parts), 16)


def _verbalizer(req: SynthRequest) -> Verbalizer:
    respell = packaged_respellings()
    if req.respellings is not None:
        respell.update(load_respellings(req.respellings))
    if req.terms is not None and req.terms.suffix.lower() == ".jsonl":
        respell.update(load_respellings(req.terms))
    return Verbalizer(respell)


def prepare(req: SynthRequest) -> tuple[list[Job], RenderOptions]:
    """Validate every input and plan the run (this shard's jobs); raises InputError early."""
    if req.voice_order not in ORDERS:
        raise InputError(f"--voice-order {req.voice_order!r}: use {' or '.join(ORDERS)}")
    if req.audio_format not in ("wav", "flac"):
        raise InputError(f"--format {req.audio_format!r}: use wav or flac")
    if req.jobs < 1 or req.per_script < 1:
        raise InputError("--jobs and --per-script must be at least 1")
    if req.max_utterance_s is not None and req.max_utterance_s < 0:
        raise InputError(f"--max-utterance-s {req.max_utterance_s:g}: use seconds, or 0 for off")
    if req.verify is not None:
        req.verify.check()
    req.out_dir.mkdir(parents=True, exist_ok=True)
    voices = req.voices or default_plan()
    _check_voices(voices, req.engine_options)
    scripts = _scripts(req)
    noise, rirs = _libraries(req)
    jobs = plan_jobs(
        scripts,
        voices,
        per_script=req.per_script,
        order=req.voice_order,
        seed=req.seed,
        audio_format=req.audio_format,
        verbalize=_verbalizer(req),
        run_fingerprint=_fingerprint(req, noise, rirs),
        max_utterance_s=req.max_utterance_s or None,
    )
    settings = RenderOptions(str(req.out_dir), req.config, req.engine_options, noise, rirs)
    return [j for j in jobs if in_shard(j.group, req.shard)], settings


def _outcomes(
    jobs: list[Job], settings: RenderOptions, n_proc: int, stop: StopFlag
) -> Iterator[Outcome]:
    """Render jobs in this process (``n_proc`` 1) or a pool of spawned processes.

    Once ``stop`` is set (Ctrl-C), no new job starts; the ones in flight finish
    and are yielded, so every audio file written has its record. Spawned workers
    import the caller's main module: call ``run_synth`` with ``jobs > 1`` from an
    importable script guarded by ``if __name__ == "__main__"`` (the ``medasr``
    command is).
    """
    if n_proc <= 1 or len(jobs) <= 1:
        renderer = Renderer(settings)
        for job in jobs:
            if stop:
                return
            yield renderer(job)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        n_proc, mp_context=ctx, initializer=init_worker, initargs=(settings,)
    ) as pool:
        pending: set[Future[Outcome]] = set()
        queue = iter(jobs)
        try:
            for job in queue:
                if stop:
                    break
                pending.add(pool.submit(render_in_worker, job))
                if len(pending) >= 8 * n_proc:  # keep every worker fed
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (f.result() for f in done)
            while pending:
                if stop:  # jobs not started yet are dropped; running ones finish
                    pending = {f for f in pending if not f.cancel()}
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (f.result() for f in done if not f.cancelled())
        except BaseException:
            for f in pending:
                f.cancel()
            raise


def run_synth(
    req: SynthRequest,
    progress: Progress | None = None,
    verify_progress: VerifyProgress | None = None,
) -> SynthSummary:
    """Synthesise the run (or shard) described by ``req``, verify it if asked; return its summary.

    Ctrl-C stops after the utterances (or the verification step) in flight and
    raises :class:`~medasr_cli.core.ledger.Interrupted`; a re-run resumes.
    """
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(Ledger(req.jsonl_path))  # a second run on it stops here
        jobs, settings = prepare(req)
        rejected = None
        if req.verify is not None or req.rejected_path.is_file():
            rejected = stack.enter_context(Ledger(req.rejected_path))
        todo = [j for j in jobs if not is_done(j, ledger, req.out_dir, rejected)]
        log.info(
            "%d utterance(s) planned, %d already done, %d to render",
            len(jobs),
            len(jobs) - len(todo),
            len(todo),
        )
        failures: dict[str, str] = {}
        timings: dict[str, float] = {"tts": 0.0, "resample": 0.0, "augment": 0.0, "write": 0.0}
        audio_s, done, verified_now = 0.0, len(jobs) - len(todo), 0
        if progress:
            progress(done, len(jobs), 0.0)
        try:
            with graceful_interrupt("utterances") as stop:
                for outcome in _outcomes(todo, settings, req.jobs, stop):
                    for key, value in outcome.timings.items():
                        timings[key] = timings.get(key, 0.0) + value
                    if outcome.record is not None:
                        ledger.append(outcome.record)
                        audio_s += float(outcome.record["duration"])
                    else:
                        failures[outcome.job_id] = outcome.error or "unknown error"
                        log.warning("skipped %s: %s", outcome.job_id, outcome.error)
                    done += 1
                    if progress:
                        progress(done, len(jobs), audio_s)
                if req.verify is not None and not stop:
                    verifier = Verifier(req.verify, req.out_dir)
                    planned = _planned(ledger, rejected, jobs)
                    verified_now = verify_records(
                        verifier, planned, ledger.append, stop, verify_progress
                    )
        except BrokenProcessPool as exc:
            raise MedasrError(
                f"a worker process died ({exc}); finished utterances are kept, re-run to resume"
            ) from exc
        finally:
            planned = _planned(ledger, rejected, jobs)
            records, dropped = partition(planned, req.verify)
            _compact(ledger, rejected, jobs, records, dropped)
    if stop:
        raise Interrupted(len(records), len(jobs), req.jsonl_path, "utterances")
    if todo and len(failures) == len(todo) and not records:
        first = next(iter(failures.values()))
        raise MedasrError(f"every utterance failed; first error: {first}")
    verify = None
    if req.verify is not None:
        verify = count(planned, len(dropped), req.verify, verified_now, req.rejected_path)
    summary = summarise(
        records,
        failures=failures,
        rendered=len(todo) - len(failures),
        skipped=len(jobs) - len(todo),
        produced_s=audio_s,
        timings=timings,
        wall_s=time.perf_counter() - started,
        jsonl=req.jsonl_path,
        max_utterance_s=req.max_utterance_s or None,
        verify=verify,
    )
    write_summary(summary, req.summary_path)
    return summary


def _planned(ledger: Ledger, rejected: Ledger | None, jobs: list[Job]) -> list[dict[str, Any]]:
    """The current record of each planned job that has one, in plan order.

    The utterance JSONL's record wins over the rejected one: it is the newer
    (a clip dropped earlier and verified again by another model is appended there).
    """
    out = []
    for j in jobs:
        for source in (ledger, rejected):
            rec = source.get(j.id) if source is not None else None
            if rec is not None and rec.get("inputs_hash") == j.inputs_hash:
                out.append(rec)
                break
    return out


def _compact(
    ledger: Ledger,
    rejected: Ledger | None,
    jobs: list[Job],
    kept: list[dict[str, Any]],
    dropped: list[dict[str, Any]],
) -> None:
    """Rewrite both JSONLs atomically: one record per id, planned ids first in plan order.

    ``kept`` and ``dropped`` are the planned records (see :func:`_planned`).
    Records of this plan with another inputs hash (stale) are dropped; records
    of ids outside the plan (another run's) are kept after them, except those
    the plan replaces: a rendition now split (or split differently, or no
    longer split) drops its old whole record and its old parts. The rejected
    JSONL is written first, so a crash in between lists a clip twice, never nowhere.
    """
    ids = {j.id for j in jobs}
    renditions = {j.group for j in jobs}

    def others(source: Ledger) -> list[dict[str, Any]]:
        return [
            rec
            for uid, rec in source.records.items()
            if uid not in ids and _PART_SUFFIX.sub("", uid) not in renditions
        ]

    if rejected is not None and (dropped or rejected.path.is_file()):
        rejected.rewrite(dropped + others(rejected))
    # written even when empty: a shard with no work reports in
    ledger.rewrite(kept + others(ledger))
