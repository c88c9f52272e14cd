"""The ``medasr script`` recipe: plan, skip what exists, generate, deduplicate, append.

Records go through the shared resumable :class:`~medasr_cli.core.ledger.Ledger`,
one whole line at a time, so an interrupted run leaves a valid file and the
next run appends only the planned dictations that are still missing. A generated text that duplicates a kept one
(exactly or nearly) is regenerated as another variant, up to ``max_variants``
times, then reported. A backend failure is reported, never written.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medasr_cli.core.jsonl import atomic_write
from medasr_cli.core.ledger import Interrupted, Ledger, StopFlag, graceful_interrupt
from medasr_cli.core.records import Script, Term
from medasr_cli.core.shard import in_shard, shard_label
from medasr_cli.core.spoken import with_spoken_forms
from medasr_cli.llm import grammar
from medasr_cli.llm.base import DictationRequest, Outcome, ScriptBackend
from medasr_cli.script.dedup import Deduper
from medasr_cli.script.plan import plan_requests

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass
class ScriptRequest:
    """How many dictations, in what mix, for which shard."""

    per_term: int = 3
    max_terms: int = 3
    seed: int = 0
    shard: tuple[int, int] | None = None
    note_types: Sequence[str] = grammar.NOTE_TYPES
    specialties: Sequence[str] = grammar.SPECIALTIES
    styles: Sequence[str] = grammar.STYLES
    max_variants: int = 3
    near_duplicate: float = 0.8


@dataclass
class ScriptRunResult:
    """What a run did, and the coverage it left."""

    planned: int = 0
    existing: int = 0
    written: int = 0
    duplicates: list[DictationRequest] = field(default_factory=list)
    failures: list[Outcome] = field(default_factory=list)
    coverage: dict[str, int] = field(default_factory=dict)
    needed: dict[str, int] = field(default_factory=dict)

    def short(self) -> list[tuple[str, int, int]]:
        """(term, have, need) for each term that fell short of its coverage."""
        return [
            (t, self.coverage.get(t, 0), n)
            for t, n in self.needed.items()
            if self.coverage.get(t, 0) < n
        ]

    def to_dict(self, per_term: int, shard: tuple[int, int] | None) -> dict[str, Any]:
        """The JSON coverage report."""
        return {
            "per_term": per_term,
            "shard": shard_label(shard) or None,
            "planned": self.planned,
            "existing": self.existing,
            "written": self.written,
            "coverage": self.coverage,
            "short": [{"term": t, "have": h, "need": n} for t, h, n in self.short()],
            "failures": [
                {
                    "id": o.request.id,
                    "terms": o.request.term_texts,
                    "error": o.error,
                    "attempts": o.attempts,
                }
                for o in self.failures
            ],
            "duplicates": [{"id": r.id, "terms": r.term_texts} for r in self.duplicates],
        }


def generate_scripts(
    terms: Sequence[Term],
    out: Path,
    backend: ScriptBackend,
    request: ScriptRequest | None = None,
    progress: Progress | None = None,
    *,
    wait_for_lock: bool = False,
) -> ScriptRunResult:
    """Generate the missing dictations of the plan (or of its shard) into ``out``.

    ``wait_for_lock``: wait while another process writes ``out`` (instead of
    refusing at once), for callers that share ``out`` between shards.
    """
    request = request or ScriptRequest()
    # a plain terms.txt has no spoken forms: derive them, so checks accept other spellings
    terms = [t if t.spoken_forms else with_spoken_forms(t) for t in terms]
    plan = plan_requests(
        terms, per_term=request.per_term, max_terms=request.max_terms, seed=request.seed,
        note_types=request.note_types, specialties=request.specialties, styles=request.styles,
    )  # fmt: skip
    plan = [r for r in plan if in_shard(r.id, request.shard)]
    with Ledger(out, model=Script, wait=wait_for_lock) as ledger:
        existing = ledger.parsed(Script)
        result = ScriptRunResult(planned=len(plan))
        dedup = Deduper(request.near_duplicate)
        for s in existing:
            dedup.add(s.text)
        counts = Counter(t.lower() for s in existing for t in s.terms)
        pending = [
            r
            for r in plan
            if not ledger.contains(r.id) and not _covered(r, counts, request.per_term)
        ]
        result.existing = len(plan) - len(pending)
        log.debug(
            "%d planned, %d already in %s, %d to generate",
            len(plan),
            result.existing,
            out,
            len(pending),
        )
        with graceful_interrupt("dictations") as stop:
            _run_waves(pending, backend, dedup, ledger, request, result, progress, stop)
        records = ledger.parsed(Script)
    _fill_coverage(result, plan, records, request)
    if stop:
        raise Interrupted(result.existing + result.written, len(plan), out, "planned dictations")
    return result


def _covered(req: DictationRequest, counts: Counter[str], per_term: int) -> bool:
    return all(counts[t.lower()] >= per_term for t in req.term_texts)


def _run_waves(
    pending: list[DictationRequest],
    backend: ScriptBackend,
    dedup: Deduper,
    out: Ledger,
    request: ScriptRequest,
    result: ScriptRunResult,
    progress: Progress | None,
    stop: StopFlag,
) -> None:
    total, done = len(pending), 0
    while pending and not stop:
        retry: list[DictationRequest] = []
        for outcome in backend.generate(pending):
            if stop:
                break  # keep what is written; the rest is generated on the next run
            dictation = outcome.request
            if not outcome.ok or outcome.text is None or outcome.generator is None:
                result.failures.append(outcome)
                log.warning(
                    "%s (%s): %s", dictation.id, ", ".join(dictation.term_texts), outcome.error
                )
            elif (reason := dedup.check(outcome.text)) is not None:
                if dictation.variant + 1 < request.max_variants:
                    retry.append(dictation.next_variant())
                    continue  # not done yet: its next variant is
                result.duplicates.append(dictation)
                log.warning(
                    "%s: %s duplicate after %d variants",
                    dictation.id,
                    reason,
                    dictation.variant + 1,
                )
            else:
                dedup.add(outcome.text)
                out.append(
                    Script(
                        id=dictation.id,
                        text=outcome.text,
                        terms=dictation.term_texts,
                        generator=outcome.generator,
                    )
                )
                result.written += 1
            done += 1
            if progress is not None:
                progress(done, total)
        pending = retry


def _fill_coverage(
    result: ScriptRunResult,
    plan: Sequence[DictationRequest],
    records: Sequence[Script],
    request: ScriptRequest,
) -> None:
    """Coverage over the whole file, or over this shard's planned ids in a sharded run."""
    names = {t.text.lower(): t.text for r in plan for t in r.terms}
    if request.shard is None:
        needed = dict.fromkeys(names.values(), request.per_term)
        counted = records
    else:
        needed = dict(Counter(names[t.text.lower()] for r in plan for t in r.terms))
        ids = {r.id for r in plan}
        counted = [s for s in records if s.id in ids]
    counts = Counter(t.lower() for s in counted for t in s.terms)
    result.needed = needed
    result.coverage = {name: counts.get(key, 0) for key, name in names.items()}


def write_report(result: ScriptRunResult, path: Path, request: ScriptRequest) -> None:
    """Write the coverage report as JSON, atomically."""
    import json

    with atomic_write(path) as fh:
        json.dump(result.to_dict(request.per_term, request.shard), fh, indent=2, ensure_ascii=False)
