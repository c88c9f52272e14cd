"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint.

It uses the official ``openai`` SDK (OpenAI, vLLM, Ollama, an AI gateway...)
with the SDK's own retries turned off, so that this module owns the policy:

- transport: 429, 5xx, timeouts and dropped connections are retried with
  exponential backoff and jitter (``Retry-After`` honoured); an endpoint that
  cannot be reached at all, or that rejects the key or the model, stops the
  run with one clear line (exit 2);
- content: the reply must be a JSON object whose ``dictation`` contains every
  target term; otherwise it is asked again (with the reason) up to
  ``max_attempts`` times and then reported as a failure, never written.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medasr_cli.core.errors import InputError
from medasr_cli.core.records import GeneratorInfo
from medasr_cli.core.shard import stable_hash
from medasr_cli.llm.base import DictationRequest, Outcome, generator_info
from medasr_cli.llm.match import missing_terms
from medasr_cli.llm.prompts import PromptTemplate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatOptions:
    """Connection and retry policy of the openai backend."""

    base_url: str | None
    model: str
    api_key: str
    concurrency: int = 8
    timeout: float = 60.0
    retries: int = 4  # transport retries per call
    max_attempts: int = 3  # content attempts per request
    temperature: float = 0.9
    backoff: float = 1.0  # first retry delay in seconds; doubles each time
    max_backoff: float = 30.0
    json_mode: bool = True  # send response_format={"type": "json_object"}


class Reply(BaseModel):
    """The JSON object the prompt asks for."""

    model_config = ConfigDict(extra="allow")

    dictation: str = Field(min_length=20, max_length=8000)
    terms_used: list[str] = Field(default_factory=list)


class TransportFailure(Exception):
    """A call that still failed after all transport retries (reported, not fatal)."""


def request_seed(req: DictationRequest, attempt: int) -> int:
    """A 31-bit API seed from the run seed, the request id, its variant and the attempt."""
    return stable_hash(f"{req.seed}|{req.id}|{req.variant}|{attempt}", bits=31)


def json_reply(content: str | None) -> dict[str, Any]:
    """The JSON object of a chat reply (a ```json fence allowed), or ValueError saying why not."""
    if not content or not content.strip():
        raise ValueError("empty reply")
    body = content.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, flags=re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"reply is not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise ValueError("reply is not a JSON object")
    return data


def parse_reply(content: str | None) -> str:
    """The dictation text of a reply, or ValueError saying what is wrong with it."""
    data = json_reply(content)
    try:
        return " ".join(Reply.model_validate(data).dictation.split())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "reply"
        raise ValueError(f"reply field '{where}': {first['msg']}") from exc


class ChatClient:
    """One OpenAI-compatible chat endpoint with this module's transport policy.

    Shared by the dictation backend and ``lexicon --respell llm``, so both retry,
    back off and stop on a fatal error the same way. Thread-safe: workers of a pool
    call :meth:`complete` at once; the first fatal error stops the others' retries.
    """

    def __init__(self, options: ChatOptions) -> None:
        import openai

        self.options = options
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=options.base_url,
            api_key=options.api_key,
            timeout=options.timeout,
            max_retries=0,
        )
        self.where = str(self._client.base_url).rstrip("/")
        self._jitter = random.Random()
        self.abort = threading.Event()  # set on a fatal error: other workers stop retrying

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def complete(self, messages: list[dict[str, Any]], seed: int) -> str | None:
        """One chat completion with transport retries; fatal errors raise InputError and
        a call that still fails after the retries raises :class:`TransportFailure`."""
        oa = self._openai
        opts = self.options
        extra: dict[str, Any] = (
            {"response_format": {"type": "json_object"}} if opts.json_mode else {}
        )
        last = ""
        for retry in range(opts.retries + 1):
            if self.abort.is_set():
                raise TransportFailure("stopped after a fatal endpoint error")
            wait_s: float | None = None
            try:
                resp = self._client.chat.completions.create(
                    model=opts.model, messages=messages, temperature=opts.temperature,  # type: ignore[arg-type]
                    seed=seed, **extra,
                )  # fmt: skip
                return resp.choices[0].message.content if resp.choices else None
            except oa.APITimeoutError:
                last = f"timed out after {opts.timeout:g} s"
            except oa.APIConnectionError as exc:
                last = f"connection failed ({exc.__cause__ or exc})"
                if retry == opts.retries:
                    self._fatal(f"cannot reach the LLM endpoint {self.where}: {last}", exc)
            except (oa.AuthenticationError, oa.PermissionDeniedError) as exc:
                msg = f"{self.where}: the endpoint rejected the API key (HTTP {exc.status_code})"
                self._fatal(msg, exc)
            except oa.NotFoundError as exc:
                msg = f"{self.where}: model '{opts.model}' or the chat endpoint was not found (HTTP 404)"
                self._fatal(msg, exc)
            except oa.APIStatusError as exc:
                if exc.status_code != 429 and exc.status_code < 500:
                    raise TransportFailure(f"HTTP {exc.status_code}: {exc.message}") from exc
                last = f"HTTP {exc.status_code}"
                wait_s = _retry_after(exc.response.headers.get("retry-after"))
            if retry < opts.retries:
                delay = (
                    min(opts.max_backoff, wait_s) if wait_s is not None else self._backoff(retry)
                )
                log.debug("retrying in %.2f s: %s", delay, last)
                self.abort.wait(delay)
        raise TransportFailure(f"{last} ({opts.retries + 1} tries)")

    def _fatal(self, message: str, exc: Exception) -> NoReturn:
        self.abort.set()
        raise InputError(message) from exc

    def _backoff(self, retry: int) -> float:
        base = min(self.options.max_backoff, self.options.backoff * (2**retry))
        return base * (0.5 + self._jitter.random() / 2)


T = TypeVar("T")
R = TypeVar("R")


def run_pool(
    client: ChatClient, work: Callable[[T], R], items: Sequence[T], concurrency: int
) -> Iterator[R]:
    """Yield ``work(item)`` for each item as it finishes, ``concurrency`` at a time; a fatal
    endpoint error (``client.abort`` set) stops the batch and is raised, nothing more yielded."""
    if not items:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        pending: set[Future[R]] = {pool.submit(work, item) for item in items}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            if client.abort.is_set():  # a worker hit a fatal error: raise it, yield nothing
                wait(pending)
                _raise_first_error([*done, *pending])
            for fut in done:
                yield fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class OpenAIChatBackend:
    """Dictations from a chat model, ``concurrency`` requests at a time."""

    name = "openai"

    def __init__(self, options: ChatOptions, prompt: PromptTemplate) -> None:
        self.options = options
        self.prompt = prompt
        self.client = ChatClient(options)

    def generate(self, requests: Sequence[DictationRequest]) -> Iterator[Outcome]:
        """Yield outcomes as they finish; a fatal endpoint error stops the whole batch."""
        yield from run_pool(self.client, self._one, requests, self.options.concurrency)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()

    def _one(self, req: DictationRequest) -> Outcome:
        messages: list[dict[str, Any]] = self.prompt.messages(req)
        problem = "no attempt made"
        for attempt in range(1, self.options.max_attempts + 1):
            seed = request_seed(req, attempt)
            try:
                content = self.client.complete(messages, seed)
                text = parse_reply(content)
            except (TransportFailure, ValueError) as exc:
                problem = str(exc)
            else:
                missing = missing_terms(text, req.terms)
                if not missing:
                    return Outcome(
                        req, text=text, generator=self._info(req, seed), attempts=attempt
                    )
                problem = f"reply lacks target term(s): {', '.join(missing)}"
            log.debug("%s attempt %d: %s", req.id, attempt, problem)
            feedback = (
                f"Your previous reply was rejected: {problem}. Reply again with only the JSON "
                "object, using every target term exactly as given."
            )
            messages = [*self.prompt.messages(req), {"role": "user", "content": feedback}]
        return Outcome(req, error=problem, attempts=self.options.max_attempts)

    def _info(self, req: DictationRequest, seed: int) -> GeneratorInfo:
        return generator_info(
            req,
            self.name,
            model=self.options.model,
            prompt_id=self.prompt.id,
            seed=seed,
            temperature=self.options.temperature,
            run_seed=req.seed,
        )


def _raise_first_error(futures: Sequence[Future[Any]]) -> None:
    for fut in futures:
        exc = fut.exception()
        if exc is not None:
            raise exc


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
