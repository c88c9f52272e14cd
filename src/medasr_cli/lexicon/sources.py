"""Where target terms come from: term files, the bundled seed vocabulary, eval reports.

Every loader returns plain :class:`~medasr_cli.core.records.Term` records (the
eval loader adds the measured recall and occurrence count) and raises
:class:`~medasr_cli.core.errors.InputError` with one line for a bad file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import check_input_file, format_validation_error
from medasr_cli.core.records import Term
from medasr_cli.core.terms import (
    BUNDLED_NAME,
    bundled_rows,
    bundled_terms,
    category_of,
    load_terms,
)
from medasr_cli.evaluate.metrics import EvalReport

log = logging.getLogger(__name__)

SEED_SOURCE = BUNDLED_NAME


def _data_file(name: str) -> str:
    return resources.files("medasr_cli").joinpath("data", "lexicon", name).read_text("utf-8")


_seed_rows = bundled_rows  # the rows' cache, cleared by tests that check offline loading


def load_seed() -> list[Term]:
    """The bundled offline seed vocabulary (see :func:`medasr_cli.core.terms.bundled_terms`)."""
    return bundled_terms()


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """Ordinary English words (SCOWL sizes 10 and 20), lower-cased."""
    lines = _data_file("common_words.txt").splitlines()
    return frozenset(w for w in lines if w and not w.startswith("#"))


def load_pronunciations(path: Path | None = None) -> dict[str, str]:
    """Lower-cased term -> TTS respelling from ``path``, or the bundled defaults without it."""
    if path is None:
        return _parse_pronunciations(_data_file("pronunciations.tsv"), "pronunciations.tsv")
    p = check_input_file(path, "pronunciations file")
    return _parse_pronunciations(_read_text(p), str(p))


def _parse_pronunciations(text: str, where: str) -> dict[str, str]:
    table: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        term, sep, respelling = line.partition("\t")
        if not sep or not term.strip() or not respelling.strip():
            raise InputError(f"{where}:{lineno}: expected 'term<TAB>respelling'")
        table[term.strip().lower()] = respelling.strip()
    return table


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise InputError(f"{path}: looks like a binary file, expected text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8") from exc


def load_term_file(path: Path) -> list[Term]:
    """A user term file: ``terms.txt`` (term[TAB]category) or ``lexicon.jsonl``."""
    return load_terms(path)


def load_hunspell(path: Path) -> list[Term]:
    """Words of a Hunspell ``.dic`` (e.g. Debian's ``hunspell-en-med``), affix flags dropped."""
    p = check_input_file(path, "Hunspell dictionary")
    lines = _read_text(p).splitlines()
    words = []
    for line in lines[1:] if lines and lines[0].strip().isdigit() else lines:
        word = line.split("/", 1)[0].strip()
        if len(word) > 2 and word.replace("-", "").replace("'", "").isalpha():
            words.append(word)
    if not words:
        raise InputError(f"{p}: no words (is it a Hunspell .dic file?)")
    return [Term(text=w, source=f"hunspell:{p.name}") for w in dict.fromkeys(words)]


@dataclass
class MeasuredTerm:
    """A term's recall as measured by ``medasr eval``."""

    term: Term
    expected: int
    hits: int
    recall: float | None
    missed_as: list[str] = field(default_factory=list)  # what the model wrote instead


def read_eval_report(path: Path) -> EvalReport:
    """A ``medasr eval --report`` JSON file; one clear line for a file of another shape."""
    p = check_input_file(path, "eval report")
    text = _read_text(p)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON ({exc.msg}, line {exc.lineno})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{p}: not a medasr eval report (expected a JSON object)")
    try:
        return EvalReport.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{p}: not a medasr eval report ({format_validation_error(exc)})") from exc


def measured_terms(report: EvalReport, name: str) -> list[MeasuredTerm]:
    """The report's per-term recall rows (source ``eval:<name>``)."""
    return [
        MeasuredTerm(
            term=Term(
                text=str(r.term),
                category=category_of(r.category),
                source=f"eval:{name}",
                prior_recall=r.recall,
            ),
            expected=r.expected,
            hits=r.hits,
            recall=r.recall,
            missed_as=list(r.missed_as),
        )
        for r in report.per_term
        if r.term
    ]


def load_eval_report(path: Path) -> tuple[str, list[MeasuredTerm]]:
    """The normaliser name and per-term recall rows of a ``medasr eval --report`` JSON file."""
    report = read_eval_report(path)
    measured = measured_terms(report, Path(path).name)
    if not measured:
        raise InputError(f"{path}: the report has no per-term results (run eval with --terms)")
    log.debug("%s: %d per-term rows", path, len(measured))
    return report.normalizer, measured
