"""Planning a run: utterance ids, voices, seeds, inputs hashes, shards and resume state.

Everything here is a pure function of the inputs and ``--seed``, computed over
the whole run before sharding, so any shard, any ``--jobs`` and any resume
agree on what each utterance is.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import iter_jsonl
from medasr_cli.core.records import Script
from medasr_cli.synth.render import Job
from medasr_cli.synth.voices import round_robin, sample_voice
from medasr_cli.tts.base import VoiceSpec

log = logging.getLogger(__name__)

#: Bump when the rendering changes in a way that should invalidate old outputs.
RENDER_VERSION = 1


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 1 <= K <= N (shard K of N)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise InputError(f"--shard {text!r}: expected K/N, e.g. 1/4")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise InputError(f"--shard {text!r}: K must be between 1 and N")
    return k, n


def shard_of(utt_id: str, n: int) -> int:
    """The shard (1..n) that owns ``utt_id``: a stable hash, so shards never overlap."""
    digest = hashlib.sha256(utt_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n + 1


def utterance_seed(seed: int, utt_id: str) -> int:
    """A 63-bit seed for one utterance, independent of order and process."""
    digest = hashlib.sha256(f"{seed}\x00{utt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "utt"


def inputs_hash(job_fields: dict[str, Any], run_fingerprint: str) -> str:
    """Hash of everything that shapes an utterance's audio and record."""
    blob = json.dumps({**job_fields, "run": run_fingerprint, "v": RENDER_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:24]


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
                name = f"{name}-{hashlib.sha1(uid.encode()).hexdigest()[:8]}"
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


def select_shard(jobs: Sequence[Job], shard: tuple[int, int] | None) -> list[Job]:
    """The jobs of shard K/N (all jobs without ``shard``)."""
    if shard is None:
        return list(jobs)
    k, n = shard
    return [j for j in jobs if shard_of(j.id, n) == k]


def read_existing(path: Path) -> dict[str, dict[str, Any]]:
    """The last record per id in an existing utterances JSONL (a torn last line is ignored)."""
    if not path.is_file():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        log.warning("%s: ignoring a torn last line from an interrupted run", path)
    out: dict[str, dict[str, Any]] = {}
    try:
        for _, obj in iter_jsonl(path):
            if isinstance(obj.get("id"), str):
                out[obj["id"]] = obj
    except InputError as exc:
        if data.endswith(b"\n"):
            raise
        log.debug("torn tail: %s", exc)
    return out


def is_done(job: Job, existing: dict[str, dict[str, Any]], out_dir: Path) -> bool:
    """True when a record with the same inputs hash exists and its audio file is there."""
    rec = existing.get(job.id)
    if rec is None or rec.get("inputs_hash") != job.inputs_hash:
        return False
    audio = out_dir / str(rec.get("audio_filepath", ""))
    return audio.is_file() and audio.stat().st_size > 44
