"""TTS respellings of terms from an OpenAI-compatible chat model (``lexicon --respell llm``).

espeak-ng and piper read a drug name with English letter-to-sound rules, which
get most of them wrong ("apixaban"). A chat model is asked for a respelling in
the project's convention (``uh-PIX-uh-ban``, :data:`~medasr_cli.core.spoken.RESPELLING_CONVENTION`),
the answer is checked with :func:`~medasr_cli.core.spoken.check_respelling`, and a
bad answer is asked again with the reason, up to ``max_attempts`` times. The
transport (retries, backoff, fatal errors) is :class:`~medasr_cli.llm.openai_chat.ChatClient`'s,
the same as ``script --backend openai``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

from medasr_cli.core.records import Term
from medasr_cli.core.shard import stable_hash, stable_hex
from medasr_cli.core.spoken import check_respelling
from medasr_cli.llm.openai_chat import (
    ChatClient,
    ChatOptions,
    TransportFailure,
    json_reply,
    run_pool,
)

log = logging.getLogger(__name__)

PROMPT = "respell_v1.txt"
PROMPT_MARK = "pronunciation respellings of medical terms"  # how the stub server knows it
EXAMPLES = (
    ("metoprolol", "meh-TOH-pruh-lol"),
    ("apixaban", "uh-PIX-uh-ban"),
    ("cholecystectomy", "koh-lee-sis-TEK-tuh-mee"),
    ("insulin glargine", "IN-suh-lin GLAR-jeen"),
)


@dataclass(frozen=True)
class RespellOutcome:
    """The respelling of one term, or why there is none after every attempt."""

    term: Term
    respelling: str | None = None
    error: str | None = None
    attempts: int = 1


@dataclass(frozen=True)
class RespellPrompt:
    """The bundled prompt: an id that changes with its text, and its two messages."""

    id: str
    system: str
    user: str

    def messages(self, term: Term) -> list[dict[str, Any]]:
        """Chat messages asking for ``term``'s respelling."""
        values = {
            "term": term.text.replace('"', "'"),
            "category": term.category.value,
            "examples": "\n".join(f'- "{t}" -> "{r}"' for t, r in EXAMPLES),
        }
        return [
            {"role": "system", "content": Template(self.system).substitute(values)},
            {"role": "user", "content": Template(self.user).substitute(values)},
        ]


def load_respell_prompt() -> RespellPrompt:
    """The bundled respelling prompt."""
    text = resources.files("medasr_cli").joinpath("data", "prompts", PROMPT).read_text("utf-8")
    system, _, user = text.partition("\n---\n")
    return RespellPrompt(f"{PROMPT.removesuffix('.txt')}@{stable_hex(text, 8)}", system, user)


def parse_respelling(content: str | None, term: str) -> str:
    """The respelling in a reply, checked against the convention; ValueError says what is wrong."""
    data = json_reply(content)
    if not isinstance(data.get("respelling"), str):
        raise ValueError("reply has no 'respelling' string")
    return check_respelling(data["respelling"], term)


class LLMRespeller:
    """Ask a chat model for each term's respelling, ``concurrency`` terms at a time."""

    def __init__(self, options: ChatOptions) -> None:
        self.options = options
        self.prompt = load_respell_prompt()
        self.client = ChatClient(options)

    @property
    def source(self) -> str:
        """What LLM-made respellings are marked with (``Term.pronunciation_source``)."""
        return f"llm:{self.options.model}"

    def respell(self, terms: Sequence[Term]) -> Iterator[RespellOutcome]:
        """Yield one outcome per term as each finishes; a fatal endpoint error raises."""
        yield from run_pool(self.client, self._one, terms, self.options.concurrency)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()

    def _one(self, term: Term) -> RespellOutcome:
        base = self.prompt.messages(term)
        messages = base
        problem = "no attempt made"
        for attempt in range(1, self.options.max_attempts + 1):
            seed = stable_hash(f"respell|{term.text}|{attempt}", bits=31)
            try:
                return RespellOutcome(
                    term, parse_respelling(self.client.complete(messages, seed), term.text),
                    attempts=attempt,
                )  # fmt: skip
            except (TransportFailure, ValueError) as exc:
                problem = str(exc)
            log.debug("respell %s attempt %d: %s", term.text, attempt, problem)
            feedback = (
                f"Your previous reply was rejected: {problem}. Reply again with only the JSON "
                "object; the respelling uses letters a-z, hyphens between syllables, the "
                "stressed syllable in capitals."
            )
            messages = [*base, {"role": "user", "content": feedback}]
        return RespellOutcome(term, error=problem, attempts=self.options.max_attempts)
