"""TTS respellings from a chat model for the selected terms that have none (``--respell llm``).

Asked only for terms a letter-to-sound engine is likely to get wrong: not an
abbreviation (``synth`` speaks those from the abbreviation table) and not made only
of ordinary English words. A term that already has a respelling (your
``--pronunciations``, an input ``lexicon.jsonl``, the bundled table) is not asked,
nor is one whose LLM respelling is in the previous ``lexicon.jsonl`` of the output
folder (the cache). Every LLM-made respelling is marked ``pronunciation_source:
llm:<model>`` so a person can review it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medasr_cli.core.records import Term, TermCategory
from medasr_cli.core.spoken import is_abbreviation, spelling_key
from medasr_cli.core.terms import load_terms
from medasr_cli.lexicon.select import is_common
from medasr_cli.llm.openai_chat import ChatOptions

log = logging.getLogger(__name__)

LLM_SOURCE = "llm"


@dataclass
class RespellStats:
    """What ``--respell llm`` did: new answers, answers reused from the cache, failures."""

    model: str
    asked: int = 0
    made: int = 0
    cached: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (term, why)


def needs_respelling(term: Term) -> bool:
    """True for a term without a respelling that a letter-to-sound engine may misread."""
    return (
        term.pronunciation is None
        and term.category is not TermCategory.abbreviation
        and not is_abbreviation(term.text)
        and not is_common(term.text)
    )


def load_cache(path: Path | None) -> dict[str, Term]:
    """The LLM-made respellings of a previous ``lexicon.jsonl``, by spelling key."""
    if path is None or not path.is_file():
        return {}
    return {
        spelling_key(t.text): t
        for t in load_terms(path)
        if t.pronunciation and (t.pronunciation_source or "").startswith(f"{LLM_SOURCE}:")
    }


def respell_missing(
    terms: Sequence[Term],
    options: ChatOptions,
    cache_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Term], RespellStats]:
    """``terms`` with LLM respellings added where one is needed, reusing cached answers."""
    from medasr_cli.llm.respell import LLMRespeller

    cache = load_cache(cache_path)
    out = list(terms)
    stats = RespellStats(model=options.model)
    todo: dict[str, int] = {}
    for i, term in enumerate(out):
        if not needs_respelling(term):
            continue
        hit = cache.get(spelling_key(term.text))
        if hit is not None:
            update = {
                "pronunciation": hit.pronunciation,
                "pronunciation_source": hit.pronunciation_source,
            }
            out[i] = term.model_copy(update=update)
            stats.cached += 1
        else:
            todo[term.text] = i
    if not todo:
        return out, stats
    respeller = LLMRespeller(options)
    try:
        for done, outcome in enumerate(respeller.respell([out[i] for i in todo.values()]), 1):
            stats.asked += 1
            i = todo[outcome.term.text]
            if outcome.respelling is None:
                stats.failed.append((outcome.term.text, outcome.error or "no answer"))
            else:
                update = {
                    "pronunciation": outcome.respelling,
                    "pronunciation_source": respeller.source,
                }
                out[i] = out[i].model_copy(update=update)
                stats.made += 1
            if progress is not None:
                progress(done, len(todo))
    finally:
        respeller.close()
    stats.failed.sort()
    log.debug("respell: %d made, %d cached, %d failed", stats.made, stats.cached, len(stats.failed))
    return out, stats
