"""Plan which dictations to generate: every term in at least ``per_term`` of them.

The plan is a pure function of (terms, per_term, max_terms, seed, note types,
specialties, styles): each round shuffles the terms and cuts them into groups
of 1..max_terms, so every term lands in exactly ``per_term`` requests. A
request's id hashes its seed, round and terms, so a re-run produces the same
ids (and can skip those already written) and ``--shard K/N``
(:mod:`medasr_cli.core.shard`) can split the plan by id.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from medasr_cli.core.errors import InputError
from medasr_cli.core.records import Term
from medasr_cli.core.shard import stable_hex
from medasr_cli.llm import grammar
from medasr_cli.llm.base import DictationRequest


def request_id(seed: int, round_no: int, terms: Sequence[Term]) -> str:
    """A stable id from the seed, the round and the (sorted, lower-cased) term texts."""
    key = "|".join(sorted(t.text.lower() for t in terms))
    return f"d{stable_hex(f'{seed}|{round_no}|{key}', 12)}"


def plan_requests(
    terms: Sequence[Term],
    *,
    per_term: int = 3,
    max_terms: int = 3,
    seed: int = 0,
    note_types: Sequence[str] = grammar.NOTE_TYPES,
    specialties: Sequence[str] = grammar.SPECIALTIES,
    styles: Sequence[str] = grammar.STYLES,
) -> list[DictationRequest]:
    """The full, deterministic list of requests covering each term ``per_term`` times."""
    if per_term < 1:
        raise InputError("--per-term: must be at least 1")
    if not 1 <= max_terms <= 5:
        raise InputError("--max-terms: must be between 1 and 5")
    unique = list({t.text.lower(): t for t in terms}.values())
    requests: list[DictationRequest] = []
    for round_no in range(per_term):
        rng = random.Random(f"plan:{seed}:{round_no}")
        order = sorted(unique, key=lambda t: t.text.lower())
        rng.shuffle(order)
        i = 0
        while i < len(order):
            size = rng.randint(1, max_terms)
            group = tuple(order[i : i + size])
            i += size
            rid = request_id(seed, round_no, group)
            pick = random.Random(f"pick:{seed}:{rid}")
            requests.append(
                DictationRequest(
                    id=rid,
                    terms=group,
                    note_type=pick.choice(list(note_types)),
                    specialty=pick.choice(list(specialties)),
                    style=pick.choice(list(styles)),
                    seed=seed,
                )
            )
    return requests


def check_choices(values: Sequence[str], allowed: Sequence[str], option: str) -> list[str]:
    """Validate ``--note-type``/``--specialty``/``--style`` values (comma lists allowed)."""
    out = [v.strip() for value in values for v in value.split(",") if v.strip()]
    if option != "--specialty":  # specialties are free text; the others drive the grammar
        bad = [v for v in out if v not in allowed]
        if bad:
            raise InputError(f"{option}: unknown value '{bad[0]}' (use {', '.join(allowed)})")
    return out or list(allowed)
