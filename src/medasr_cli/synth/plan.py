"""Planning a run: utterance ids, voices, seeds, inputs hashes, and what is already done.

Everything here is a pure function of the inputs and ``--seed``, computed over
the whole run before sharding (:mod:`medasr_cli.core.shard`), so any shard,
any ``--jobs`` and any resume agree on what each utterance is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medasr_cli.core.ledger import Ledger
from medasr_cli.core.records import Script
from medasr_cli.core.shard import stable_hash, stable_hex
from medasr_cli.synth.render import Job
from medasr_cli.synth.voices import round_robin, sample_voice
from medasr_cli.tts.base import VoiceSpec

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
) -> list[Job]:
    """One Job per (script, rendition), voices assigned over the whole run."""
    n = len(scripts) * per_script
    rr = round_robin(voices, n) if order == "round-robin" else None
    jobs: list[Job] = []
    used_names: set[str] = set()
    for i, script in enumerate(scripts):
        tts_text = verbalize(script.text)
        for k in range(per_script):
            uid = f"{script.id}-{k}"
            useed = utterance_seed(seed, uid)
            voice = (
                rr[i * per_script + k]
                if rr
                else sample_voice(voices, np.random.default_rng([useed, 1]))
            )
            name = _safe(uid)
            if name in used_names:
                name = f"{name}-{stable_hex(uid, 8)}"
            used_names.add(name)
            fields = {
                "id": uid,
                "text": script.text,
                "tts_text": tts_text,
                "voice": voice.label,
                "seed": useed,
                "format": audio_format,
            }
            jobs.append(
                Job(
                    id=uid,
                    script_id=script.id,
                    text=script.text,
                    tts_text=tts_text,
                    voice=voice,
                    seed=useed,
                    audio_path=f"audio/{name}.{audio_format}",
                    inputs_hash=inputs_hash(fields, run_fingerprint),
                    terms=tuple(script.terms),
                )
            )
    return jobs


def is_done(job: Job, ledger: Ledger, out_dir: Path) -> bool:
    """True when a record with the same inputs hash exists and its audio file is there."""
    rec = ledger.get(job.id)
    if rec is None or rec.get("inputs_hash") != job.inputs_hash:
        return False
    audio = out_dir / str(rec.get("audio_filepath", ""))
    return audio.is_file() and audio.stat().st_size > 44
