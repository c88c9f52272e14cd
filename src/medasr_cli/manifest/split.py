"""Grouped, optionally stratified train/val/test splits.

All utterances of one script (or, without script ids, of one normalised text)
land in the same split, so no sentence is both trained on and tested on.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict

from medasr_cli.core.errors import InputError
from medasr_cli.core.records import ManifestEntry

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_split_spec(spec: str) -> dict[str, float]:
    """Parse ``train=0.9,val=0.05,test=0.05`` into normalised ratios."""
    ratios: dict[str, float] = {}
    for part in spec.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise InputError(f"--split: expected name=ratio pairs like train=0.9, got '{part}'")
        try:
            ratio = float(value)
        except ValueError as exc:
            raise InputError(f"--split: ratio for '{name}' is not a number: '{value}'") from exc
        if ratio < 0:
            raise InputError(f"--split: ratio for '{name}' is negative")
        if name in ratios:
            raise InputError(f"--split: '{name}' given twice")
        ratios[name] = ratio
    total = sum(ratios.values())
    if total <= 0:
        raise InputError("--split: the ratios add up to zero")
    return {k: v / total for k, v in ratios.items()}


def _group_key(entry: ManifestEntry) -> str:
    meta = entry.metadata()
    if meta.get("script_id"):
        return f"script:{meta['script_id']}"
    return "text:" + " ".join(re.sub(r"[^\w\s]", " ", entry.text.lower()).split())


def split_entries(
    entries: list[ManifestEntry],
    ratios: dict[str, float],
    *,
    seed: int = 0,
    stratify_by: str | None = None,
) -> dict[str, list[ManifestEntry]]:
    """Assign whole groups to splits so each split's utterance share tracks its ratio.

    With ``stratify_by`` (a metadata field), groups are allocated separately
    within each value of that field (a group takes its most common value), so
    every split sees the same mix of, say, voices.
    """
    if stratify_by is not None and not any(stratify_by in e.metadata() for e in entries):
        raise InputError(f"--stratify-by: no entry has the field '{stratify_by}'")
    groups: dict[str, list[ManifestEntry]] = defaultdict(list)
    for e in entries:
        groups[_group_key(e)].append(e)

    strata: dict[str, list[str]] = defaultdict(list)
    for key, members in groups.items():
        if stratify_by is None:
            stratum = ""
        else:
            values = Counter(str(m.metadata().get(stratify_by, "")) for m in members)
            stratum = values.most_common(1)[0][0]
        strata[stratum].append(key)

    rng = random.Random(seed)
    out: dict[str, list[ManifestEntry]] = {name: [] for name in ratios}
    names = list(ratios)
    for stratum in sorted(strata):
        keys = sorted(strata[stratum])
        rng.shuffle(keys)
        assigned = dict.fromkeys(names, 0)
        done = 0
        for key in keys:
            size = len(groups[key])
            # The split furthest below its target share after adding this group.
            best = max(names, key=lambda n: (ratios[n] * (done + size) - assigned[n], ratios[n]))
            out[best].extend(groups[key])
            assigned[best] += size
            done += size
    return out
