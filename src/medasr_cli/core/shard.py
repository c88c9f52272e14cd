"""Stable hashes of ids, and ``--shard K/N``: which records a shard owns.

Every stage that splits work across machines (``script``, ``synth``, the data
Job on Kubernetes) uses these, so a record id lands in the same shard in every
stage and on every machine: membership is a hash of the id, not of its
position, so shards never overlap and never leave a gap, whatever the order of
the input.
"""

from __future__ import annotations

import hashlib
import re

from medasr_cli.core.errors import InputError

Shard = tuple[int, int]  # (K, N): shard K of N, 1 <= K <= N


def stable_hash(text: str, bits: int = 64) -> int:
    """A non-negative ``bits``-bit integer from ``text``, the same on every machine and run.

    Python's ``hash()`` is salted per process; this is BLAKE2b, so seeds, shard
    membership and ids derived from it never change between runs.
    """
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=(bits + 7) // 8).digest()
    return int.from_bytes(digest, "big") >> (8 * len(digest) - bits)


def stable_hex(text: str, chars: int = 16) -> str:
    """``chars`` hex digits of a stable hash of ``text`` (for ids and fingerprints)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=(chars + 1) // 2).hexdigest()[:chars]


def parse_shard(spec: str | None) -> Shard | None:
    """``"2/4"`` -> ``(2, 4)``; ``None`` -> ``None``; one clear error for anything else."""
    if spec is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not m:
        raise InputError(f"--shard {spec!r}: expected K/N, e.g. 1/4")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise InputError(f"--shard {spec!r}: K must be between 1 and N")
    return k, n


def shard_of(record_id: str, n: int) -> int:
    """The shard (1..n) that owns ``record_id``."""
    return stable_hash(f"shard|{record_id}") % n + 1


def in_shard(record_id: str, shard: Shard | None) -> bool:
    """Whether shard ``(K, N)`` owns ``record_id`` (every id belongs to the whole run)."""
    return shard is None or shard_of(record_id, shard[1]) == shard[0]


def shard_label(shard: Shard | None) -> str:
    """``"2/4"`` for display and reports ("" for the whole run)."""
    return f"{shard[0]}/{shard[1]}" if shard else ""
