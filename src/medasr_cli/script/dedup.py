"""Exact and near-duplicate detection for dictations.

Exact duplicates are texts equal after lower-casing and dropping punctuation.
Near duplicates have a Jaccard similarity of word 3-gram shingles at or above
a threshold; candidates are found with MinHash and banded locality-sensitive
hashing (so checking a text costs about the same with 10 or 100,000 texts
kept), then confirmed with the exact Jaccard similarity.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from medasr_cli.core.shard import stable_hash

_PRIME = (1 << 61) - 1
_BANDS, _ROWS = 8, 4  # 32 hashes; a pair at Jaccard 0.8 is a candidate with p ~ 0.985


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def shingles(text: str, n: int = 3) -> set[str]:
    """Word n-grams of ``text`` (the whole text if it is shorter than ``n`` words)."""
    words = _tokens(text)
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """|a & b| / |a | b| (1.0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _hash64(s: str) -> int:
    return stable_hash(s, bits=61)


_rng = np.random.default_rng(20240601)
_A = _rng.integers(1, _PRIME, size=_BANDS * _ROWS, dtype=np.uint64)
_B = _rng.integers(0, _PRIME, size=_BANDS * _ROWS, dtype=np.uint64)


def minhash(items: set[str]) -> np.ndarray:
    """A 32-value MinHash signature of a shingle set."""
    h = np.fromiter((_hash64(s) for s in items), dtype=np.uint64, count=len(items))
    # (a*h + b) mod 2**64, then mod p: a universal-enough family for LSH bucketing.
    mixed = (_A[:, None] * h[None, :] + _B[:, None]) % np.uint64(_PRIME)
    return mixed.min(axis=1)


class Deduper:
    """Remembers kept texts and says whether a new one duplicates any of them."""

    def __init__(self, threshold: float = 0.8) -> None:
        self.threshold = threshold
        self._exact: set[str] = set()
        self._shingles: list[set[str]] = []
        self._buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._shingles)

    def check(self, text: str) -> str | None:
        """``"exact"`` or ``"near"`` if ``text`` duplicates a kept text, else ``None``."""
        if " ".join(_tokens(text)) in self._exact:
            return "exact"
        sh = shingles(text)
        seen: set[int] = set()
        for key in self._band_keys(minhash(sh)):
            for idx in self._buckets.get(key, ()):
                if idx not in seen:
                    seen.add(idx)
                    if jaccard(sh, self._shingles[idx]) >= self.threshold:
                        return "near"
        return None

    def add(self, text: str) -> None:
        """Keep ``text`` for later checks."""
        self._exact.add(" ".join(_tokens(text)))
        sh = shingles(text)
        idx = len(self._shingles)
        self._shingles.append(sh)
        for key in self._band_keys(minhash(sh)):
            self._buckets[key].append(idx)

    def check_and_add(self, text: str) -> str | None:
        """:meth:`check`, then :meth:`add` when it is not a duplicate."""
        reason = self.check(text)
        if reason is None:
            self.add(text)
        return reason

    @staticmethod
    def _band_keys(signature: np.ndarray) -> list[tuple[int, bytes]]:
        return [(b, signature[b * _ROWS : (b + 1) * _ROWS].tobytes()) for b in range(_BANDS)]
