"""Dictation backends for ``medasr script``, behind one Protocol and an explicit registry.

``create_backend(name, config)`` looks the name up in :data:`BACKENDS` (name ->
factory). Factories import their heavy dependencies themselves, so listing or
choosing a backend costs nothing until it is built.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medasr_cli.core.errors import InputError
from medasr_cli.llm.base import DictationRequest, Outcome, ScriptBackend

if TYPE_CHECKING:
    from medasr_cli.llm.openai_chat import ChatOptions


@dataclass(frozen=True)
class BackendOptions:
    """Everything any backend may need; each factory reads its own fields."""

    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 60.0
    retries: int = 4
    max_attempts: int = 3
    temperature: float = 0.9
    backoff: float = 1.0
    prompt_file: Path | None = None
    json_mode: bool = True


BackendFactory = Callable[[BackendOptions], ScriptBackend]


def _template(config: BackendOptions) -> ScriptBackend:
    if config.prompt_file is not None:
        raise InputError("--prompt-file applies to --backend openai only")
    from medasr_cli.llm.template import TemplateBackend

    return TemplateBackend()


def chat_options(config: BackendOptions, used_by: str = "--backend openai") -> ChatOptions:
    """Validated options of an OpenAI-compatible chat endpoint; one clear error for a bad one.

    Shared by ``script --backend openai`` and ``lexicon --respell llm`` (``used_by`` names
    the option in the error line).
    """
    from medasr_cli.core.urls import openai_base_url
    from medasr_cli.llm.openai_chat import ChatOptions

    if not config.model:
        raise InputError(f"--model is required with {used_by}")
    base_url = openai_base_url(config.base_url, "--base-url") if config.base_url else None
    api_key = os.environ.get(config.api_key_env, "").strip()
    if not api_key:
        raise InputError(
            f"no API key: set the environment variable {config.api_key_env} "
            "(any value for a local server that needs none), or name another with --api-key-env"
        )
    if config.concurrency < 1 or config.max_attempts < 1 or config.retries < 0:
        raise InputError("--concurrency and --max-attempts must be >= 1, --retries >= 0")
    if config.timeout <= 0:
        raise InputError("--timeout: must be positive")
    return ChatOptions(
        base_url=base_url,
        model=config.model,
        api_key=api_key,
        concurrency=config.concurrency,
        timeout=config.timeout,
        retries=config.retries,
        max_attempts=config.max_attempts,
        temperature=config.temperature,
        backoff=config.backoff,
        json_mode=config.json_mode,
    )


def _openai(config: BackendOptions) -> ScriptBackend:
    from medasr_cli.llm.openai_chat import OpenAIChatBackend
    from medasr_cli.llm.prompts import load_prompt

    prompt = load_prompt(config.prompt_file)  # validate before anything else
    return OpenAIChatBackend(chat_options(config), prompt)


BACKENDS: dict[str, BackendFactory] = {
    "template": _template,
    "openai": _openai,
}


def create_backend(name: str, config: BackendOptions | None = None) -> ScriptBackend:
    """Build the backend called ``name``; one clear error for an unknown name or bad setting."""
    factory = BACKENDS.get(name)
    if factory is None:
        raise InputError(f"--backend: unknown backend '{name}' (use {', '.join(BACKENDS)})")
    return factory(config or BackendOptions())


__all__ = [
    "BACKENDS",
    "BackendOptions",
    "DictationRequest",
    "Outcome",
    "ScriptBackend",
    "chat_options",
    "create_backend",
]
