"""Summary figures for a manifest: hours, counts, duration histogram, metadata breakdowns."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medasr_cli.core.jsonl import read_records
from medasr_cli.core.records import ManifestEntry


@dataclass
class GroupStats:
    utterances: int = 0
    hours: float = 0.0


@dataclass
class ManifestStats:
    utterances: int
    hours: float
    min_duration: float
    mean_duration: float
    max_duration: float
    histogram: list[tuple[float, float, int]]  # (low s, high s, count)
    breakdowns: dict[str, dict[str, GroupStats]] = field(default_factory=dict)


def _auto_fields(entries: list[ManifestEntry], max_values: int = 20) -> list[str]:
    """Metadata fields that look categorical (strings with few distinct values)."""
    values: dict[str, set[str]] = defaultdict(set)
    for e in entries:
        for k, v in e.metadata().items():
            if isinstance(v, str):
                values[k].add(v)
    return sorted(k for k, vs in values.items() if 1 < len(vs) <= max_values)


def manifest_stats(path: str | Path, by: list[str] | None = None, bins: int = 10) -> ManifestStats:
    """Compute stats; ``by`` lists metadata fields to break down (default: categorical ones)."""
    entries = [e for _, e in read_records(path, ManifestEntry)]
    durations = np.array([e.duration for e in entries], dtype=float)
    counts, edges = np.histogram(durations, bins=bins)
    hist = [(float(edges[i]), float(edges[i + 1]), int(c)) for i, c in enumerate(counts)]
    fields = by if by else _auto_fields(entries)
    breakdowns: dict[str, dict[str, GroupStats]] = {}
    for f in fields:
        groups: dict[str, GroupStats] = defaultdict(GroupStats)
        for e in entries:
            g = groups[str(e.metadata().get(f, "(none)"))]
            g.utterances += 1
            g.hours += e.duration / 3600
        breakdowns[f] = dict(sorted(groups.items()))
    return ManifestStats(
        utterances=len(entries),
        hours=float(durations.sum() / 3600),
        min_duration=float(durations.min()),
        mean_duration=float(durations.mean()),
        max_duration=float(durations.max()),
        histogram=hist,
        breakdowns=breakdowns,
    )
