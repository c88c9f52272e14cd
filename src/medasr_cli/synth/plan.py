"""Planning a run: utterance ids, voices, seeds, inputs hashes, and what is already done.

Everything here is a pure function of the inputs and ``--seed``, computed over
the whole run before sharding (:mod:`medasr_cli.core.shard`), so any shard,
any ``--jobs`` and any resume agree on what each utterance is.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medasr_cli.core.ledger import Ledger
from medasr_cli.core.records import Script
from medasr_cli.core.shard import stable_hash, stable_hex
from medasr_cli.synth.render import Job
from medasr_cli.synth.split import split_script
from medasr_cli.synth.verbalize import engine_text
from medasr_cli.synth.voices import round_robin, sample_voice
from medasr_cli.tts.base import VoiceSpec

log = logging.getLogger(__name__)

#: Bump when the rendering changes in a way that should invalidate old outputs.
RENDER_VERSION = 1


def utterance_seed(seed: int, utt_id: str) -> int:
    """A 63-bit seed for one utterance, independent of order and process."""
    return stable_hash(f"{seed}\x00{utt_id}", bits=63)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "utt"


def inputs_hash(job_fields: dict[str, Any], run_fingerprint: str) -> str:
    """Hash of everything that shapes an utterance's audio and record."""
    blob = json.dumps({**job_fields, "run": run_fingerprint, "v": RENDER_VERSION}, sort_keys=True)
    return stable_hex(blob, 24)


def plan_jobs(
    scripts: Sequence[Script],
    voices: Sequence[VoiceSpec],
    *,
    per_script: int,
    order: str,
    seed: int,
    audio_format: str,
    verbalize: Callable[[str], str],
    run_fingerprint: str,
    max_utterance_s: float | None = None,
) -> list[Job]:
    """Jobs per (script, rendition), voices assigned over the whole run.

    A script estimated over ``max_utterance_s`` is split (:mod:`medasr_cli.synth.split`)
    into parts ``{script id}-{rendition}-p{j}``, all spoken by the rendition's voice;
    a script that fits keeps the id ``{script id}-{rendition}`` and the inputs hash
    it always had, so resuming a run made before splitting existed skips it.
    """
    n = len(scripts) * per_script
    rr = round_robin(voices, n) if order == "round-robin" else None
    jobs: list[Job] = []
    used_names: set[str] = set()
    too_long: list[str] = []
    for i, script in enumerate(scripts):
        parts = split_script(script.text, script.terms, verbalize, max_utterance_s)
        if max_utterance_s and any(p.estimate_s > max_utterance_s for p in parts):
            too_long.append(script.id)
        for k in range(per_script):
            rendition = f"{script.id}-{k}"
            voice = (
                rr[i * per_script + k]
                if rr
                else sample_voice(
                    voices, np.random.default_rng([utterance_seed(seed, rendition), 1])
                )
            )
            for j, part in enumerate(parts):
                split = (j, len(parts)) if len(parts) > 1 else None
                tts_text = engine_text(part.tts_text, voice.engine)  # stress marks if it can
                uid = f"{rendition}-p{j}" if split else rendition
                name = _safe(uid)
                if name in used_names:
                    name = f"{name}-{stable_hex(uid, 8)}"
                used_names.add(name)
                fields: dict[str, Any] = {
                    "id": uid,
                    "text": part.text,
                    "tts_text": tts_text,
                    "voice": voice.label,
                    "seed": utterance_seed(seed, uid),
                    "format": audio_format,
                }
                if split:  # parts only: a whole script's hash is what it was before splitting
                    fields["part"], fields["parts"] = split
                jobs.append(
                    Job(
                        id=uid,
                        script_id=script.id,
                        text=part.text,
                        tts_text=tts_text,
                        voice=voice,
                        seed=fields["seed"],
                        audio_path=f"audio/{name}.{audio_format}",
                        inputs_hash=inputs_hash(fields, run_fingerprint),
                        terms=part.terms,
                        rendition=rendition,
                        part=split[0] if split else None,
                        parts=split[1] if split else None,
                    )
                )
    if too_long:
        log.warning(
            "%d script(s) keep a sentence estimated over --max-utterance-s %g s whole "
            "(no sentence boundary to cut at), e.g. %s",
            len(too_long),
            max_utterance_s,
            too_long[0],
        )
    return jobs


def is_done(job: Job, ledger: Ledger, out_dir: Path, rejected: Ledger | None = None) -> bool:
    """True when a record with the same inputs hash exists and its audio file is there.

    A record in ``rejected`` (a clip dropped by verification) counts: rendering it
    again would give the same audio.
    """
    for source in (ledger, rejected):
        rec = source.get(job.id) if source is not None else None
        if rec is not None and rec.get("inputs_hash") == job.inputs_hash:
            audio = out_dir / str(rec.get("audio_filepath", ""))
            if audio.is_file() and audio.stat().st_size > 44:
                return True
    return False
