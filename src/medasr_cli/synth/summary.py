"""The end-of-run summary: hours per voice, SNR histogram, peaks, failures, throughput, checks."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medasr_cli.core.jsonl import atomic_write
from medasr_cli.synth.verify import VerifyCounts

SNR_BIN_DB = 2.5


@dataclass
class SynthSummary:
    """What a run produced (over every record of the plan, resumed ones included)."""

    jsonl: Path
    utterances: int
    hours: float
    hours_by_voice: dict[str, float]
    snr_histogram: list[tuple[float, float, int]]  # (lo, hi, count)
    no_noise: int
    max_peak_dbfs: float | None
    clipped_samples: int
    rendered: int
    skipped: int
    failures: dict[str, str] = field(default_factory=dict)
    produced_s: float = 0.0
    wall_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    max_utterance_s: float | None = None  # the --max-utterance-s limit (None: off)
    split_scripts: int = 0  # scripts said in several parts
    parts: int = 0  # utterances that are such parts
    over_limit: int = 0  # utterances longer than the limit when measured (parts or whole)
    verify: VerifyCounts | None = None  # with --verify-model: verified, flagged, dropped

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio produced per wall-clock second in this invocation."""
        return self.produced_s / self.wall_s if self.wall_s > 0 else 0.0


def snr_histogram(values: list[float], width: float = SNR_BIN_DB) -> list[tuple[float, float, int]]:
    """Counts per ``width``-dB bin, from the lowest to the highest bin that has values."""
    if not values:
        return []
    lo = math.floor(min(values) / width) * width
    hi = math.floor(max(values) / width) * width
    counts = Counter(math.floor(v / width) * width for v in values)
    bins = []
    edge = lo
    while edge <= hi + 1e-9:
        bins.append((round(edge, 2), round(edge + width, 2), counts.get(edge, 0)))
        edge = round(edge + width, 6)
    return bins


def summarise(
    records: list[dict[str, Any]],
    *,
    failures: dict[str, str],
    rendered: int,
    skipped: int,
    produced_s: float,
    timings: dict[str, float],
    wall_s: float,
    jsonl: Path,
    max_utterance_s: float | None = None,
    verify: VerifyCounts | None = None,
) -> SynthSummary:
    """Aggregate the final records of a run."""
    by_voice: dict[str, float] = defaultdict(float)
    snrs: list[float] = []
    peaks: list[float] = []
    clipped = 0
    for rec in records:
        by_voice[str(rec.get("voice"))] += float(rec["duration"]) / 3600
        if rec.get("snr_db") is not None:
            snrs.append(float(rec["snr_db"]))
        if rec.get("peak_dbfs") is not None:
            peaks.append(float(rec["peak_dbfs"]))
        clipped += int(rec.get("clipped_samples") or 0)
    parts = [rec for rec in records if int(rec.get("parts") or 1) > 1]
    over = [rec for rec in records if max_utterance_s and rec["duration"] > max_utterance_s]
    return SynthSummary(
        jsonl=jsonl,
        utterances=len(records),
        hours=sum(by_voice.values()),
        hours_by_voice=dict(sorted(by_voice.items())),
        snr_histogram=snr_histogram(snrs),
        no_noise=len(records) - len(snrs),
        max_peak_dbfs=max(peaks) if peaks else None,
        clipped_samples=clipped,
        rendered=rendered,
        skipped=skipped,
        failures=failures,
        produced_s=produced_s,
        wall_s=wall_s,
        timings=timings,
        max_utterance_s=max_utterance_s,
        split_scripts=len({rec.get("script_id") for rec in parts}),
        parts=len(parts),
        over_limit=len(over),
        verify=verify,
    )


def write_summary(summary: SynthSummary, path: Path) -> None:
    """Write ``summary`` as JSON (atomically), for scripts and recipes to read."""
    data = dataclasses.asdict(summary)
    data["realtime_factor"] = round(summary.realtime_factor, 3)
    with atomic_write(path) as fh:
        fh.write(json.dumps(data, indent=2, default=str) + "\n")
