"""The contract between ``medasr script`` and its dictation backends.

A backend turns :class:`DictationRequest` s (which terms, note type, specialty,
speaker style, seed) into :class:`Outcome` s: a dictation text with the
generator's description, or the reason it failed. The orchestrator in
:mod:`medasr_cli.script` plans requests, removes duplicates and writes records;
a backend only generates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from medasr_cli.core.records import GeneratorInfo, Term


@dataclass(frozen=True)
class DictationRequest:
    """One dictation to produce; ``id`` is stable for the same plan, so a re-run can skip it."""

    id: str
    terms: tuple[Term, ...]
    note_type: str
    specialty: str
    style: str
    seed: int
    variant: int = 0  # bumped when an earlier variant was a near-duplicate

    def next_variant(self) -> DictationRequest:
        """The same request asking for a different text."""
        return replace(self, variant=self.variant + 1)

    @property
    def term_texts(self) -> list[str]:
        return [t.text for t in self.terms]


def generator_info(req: DictationRequest, backend: str, **fields: Any) -> GeneratorInfo:
    """The record's generator block: backend fields plus the request's note type, style, etc."""
    return GeneratorInfo.model_validate(
        {
            "backend": backend,
            **fields,
            "note_type": req.note_type,
            "specialty": req.specialty,
            "style": req.style,
            "variant": req.variant,
        }
    )


@dataclass
class Outcome:
    """What a backend produced for one request: a text, or an error after all retries."""

    request: DictationRequest
    text: str | None = None
    generator: GeneratorInfo | None = None
    error: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.text is not None and self.error is None


@runtime_checkable
class ScriptBackend(Protocol):
    """A dictation generator (``template``, ``openai``, ...)."""

    name: str

    def generate(self, requests: Sequence[DictationRequest]) -> Iterator[Outcome]:
        """Yield one outcome per request, in any order, as each finishes."""
        ...

    def close(self) -> None:
        """Release connections or threads."""
        ...
