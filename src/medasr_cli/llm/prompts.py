"""Prompt templates for the LLM backend: package data, overridable with ``--prompt-file``.

A prompt file is plain text with ``$placeholders`` (Python ``string.Template``
syntax, so JSON braces need no escaping). A line holding only ``---`` splits
the system message (above) from the user message (below); without it the whole
file is the user message. ``$terms``, ``$note_type``, ``$specialty`` and
``$style`` are required; ``$n_terms`` and ``$terms_json`` are optional.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import check_input_file
from medasr_cli.core.shard import stable_hex
from medasr_cli.llm.base import DictationRequest

DEFAULT_PROMPT = "dictation_v1.txt"
REQUIRED = ("terms", "note_type", "specialty", "style")
OPTIONAL = ("n_terms", "terms_json")


@dataclass(frozen=True)
class PromptTemplate:
    """A validated prompt: an id that changes with its content, and its two messages."""

    id: str
    system: str | None
    user: str

    def messages(self, req: DictationRequest) -> list[dict[str, str]]:
        """Chat messages for ``req``."""
        values = _values(req)
        out = []
        if self.system:
            out.append({"role": "system", "content": Template(self.system).substitute(values)})
        out.append({"role": "user", "content": Template(self.user).substitute(values)})
        return out


def _values(req: DictationRequest) -> dict[str, str]:
    lines = []
    for t in req.terms:
        said = f"; said as: {', '.join(t.spoken_forms[:2])}" if t.spoken_forms else ""
        lines.append(f'- "{t.text}" ({t.category.value}{said})')
    return {
        "terms": "\n".join(lines),
        "terms_json": json.dumps(req.term_texts, ensure_ascii=False),
        "n_terms": str(len(req.terms)),
        "note_type": req.note_type,
        "specialty": req.specialty,
        "style": req.style,
    }


def _placeholders(text: str) -> set[str]:
    names = set()
    for m in Template.pattern.finditer(text):
        if m.group("invalid") is not None:
            line = text[: m.start()].count("\n") + 1
            raise ValueError(
                f"line {line}: a '$' that is not a placeholder (write $$ for a dollar)"
            )
        name = m.group("named") or m.group("braced")
        if name:
            names.add(name)
    return names


def parse_prompt(text: str, name: str) -> PromptTemplate:
    """Split and validate a prompt text; raise InputError naming what is wrong."""
    system, sep, user = text.partition("\n---\n")
    if not sep:
        system, user = "", text
    try:
        found = _placeholders(text)
    except ValueError as exc:
        raise InputError(f"{name}: {exc}") from exc
    missing = [p for p in REQUIRED if p not in found]
    if missing:
        raise InputError(
            f"{name}: prompt is missing placeholder(s) {', '.join('$' + m for m in missing)}"
        )
    unknown = sorted(found - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        allowed = ", ".join("$" + p for p in (*REQUIRED, *OPTIONAL))
        raise InputError(f"{name}: unknown placeholder ${unknown[0]} (use {allowed})")
    stem = Path(name).stem
    digest = stable_hex(text, 8)
    return PromptTemplate(id=f"{stem}@{digest}", system=system.strip() or None, user=user.strip())


def load_prompt(path: Path | None = None) -> PromptTemplate:
    """The bundled prompt, or ``path`` validated (exit 2 on a bad file)."""
    if path is None:
        text = (
            resources.files("medasr_cli")
            .joinpath("data", "prompts", DEFAULT_PROMPT)
            .read_text("utf-8")
        )
        return parse_prompt(text, DEFAULT_PROMPT)
    p = check_input_file(path, "prompt file")
    raw = p.read_bytes()
    if b"\x00" in raw:
        raise InputError(f"{p}: looks like a binary file, expected a text prompt")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not valid UTF-8") from exc
    if not text.strip():
        raise InputError(f"{p}: the prompt file is empty")
    return parse_prompt(text, str(p))
