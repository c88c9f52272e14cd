"""What synth speaks: ``scripts.jsonl`` (Script records), a plain text file, or terms.

Plain text gives one script per non-blank line, with an id from its content
(so reordering the file does not rename utterances). Terms go through the
offline ``template`` backend of ``medasr script`` first.
"""

from __future__ import annotations

import logging
from pathlib import Path

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import check_input_file, read_records
from medasr_cli.core.records import GeneratorInfo, Script
from medasr_cli.core.shard import stable_hex

log = logging.getLogger(__name__)


def load_scripts(path: Path) -> list[Script]:
    """Scripts from a JSONL of Script records or a text file of sentences (one per line)."""
    p = check_input_file(path, "scripts file")
    if p.suffix.lower() in (".jsonl", ".json"):
        scripts = [s for _, s in read_records(p, Script)]
    else:
        scripts = _from_text(p)
    seen: set[str] = set()
    for s in scripts:
        if s.id in seen:
            raise InputError(f"{p}: duplicate script id '{s.id}'")
        if not s.text.strip():
            raise InputError(f"{p}: script '{s.id}' has empty text")
        seen.add(s.id)
    return scripts


def _from_text(p: Path) -> list[Script]:
    raw = p.read_bytes()
    if b"\x00" in raw:
        raise InputError(f"{p}: looks like a binary file, expected one sentence per line")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{p}: not valid UTF-8") from exc
    scripts: list[Script] = []
    seen: set[str] = set()
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#") or text in seen:
            continue
        seen.add(text)
        sid = "txt-" + stable_hex(text, 12)
        scripts.append(Script(id=sid, text=text, generator=GeneratorInfo(backend="text")))
    if not scripts:
        raise InputError(f"{p}: no sentences (the file is empty)")
    return scripts


def scripts_from_terms(path: Path, out: Path, *, per_term: int, seed: int) -> list[Script]:
    """Template dictations for the terms in ``path`` (terms.txt or lexicon.jsonl), in ``out``.

    Runs the offline ``template`` backend of ``medasr script`` (imported here, so
    synth does not load it otherwise); ``out`` (``scripts.jsonl``) is resumable too.
    """
    from medasr_cli.core.terms import load_terms
    from medasr_cli.llm import BackendOptions, create_backend
    from medasr_cli.script import ScriptRequest, generate_scripts

    terms = load_terms(path)
    backend = create_backend("template", BackendOptions())
    try:
        # shards of one synth run share OUT/scripts.jsonl: wait for a shard that is writing it
        request = ScriptRequest(per_term=per_term, seed=seed)
        result = generate_scripts(terms, out, backend, request, wait_for_lock=True)
    finally:
        backend.close()
    for failure in result.failures:
        log.warning("script generation failed: %s", failure.error)
    if not out.is_file():
        raise InputError(f"{path}: the template backend produced no scripts")
    return load_scripts(out)
