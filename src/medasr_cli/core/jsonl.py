"""JSONL reading with ``file:line: reason`` errors, and atomic writing.

A crash never leaves a half-written output: whole files are written to a
temporary file in the same folder and renamed over the target. Resumable,
append-as-you-go outputs go through :class:`medasr_cli.core.ledger.Ledger`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from medasr_cli.core.errors import InputError

M = TypeVar("M", bound=BaseModel)


def check_input_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """Return ``path`` as a Path, or raise InputError if it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: {what} not found")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, expected a {what}")
    return p


def _read_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    yield lineno, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InputError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason})") from exc
    except PermissionError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file."""
    p = check_input_file(path, "JSONL file")
    for lineno, line in _read_text_lines(p):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{p}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise InputError(f"{p}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def format_validation_error(exc: ValidationError) -> str:
    """One short line from a pydantic error: ``missing field 'text'`` and the like."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "record"
        if err["type"] == "missing":
            parts.append(f"missing field '{loc}'")
        else:
            parts.append(f"field '{loc}': {err['msg']}")
    return "; ".join(parts)


def read_records(
    path: str | os.PathLike[str], model: type[M], *, allow_empty: bool = False
) -> list[tuple[int, M]]:
    """Read and validate every line of a JSONL file as ``model``.

    Raises InputError naming ``file:line`` for the first bad line, and for an
    empty file unless ``allow_empty``.
    """
    out: list[tuple[int, M]] = []
    for lineno, obj in iter_jsonl(path):
        try:
            out.append((lineno, model.model_validate(obj)))
        except ValidationError as exc:
            raise InputError(f"{path}:{lineno}: {format_validation_error(exc)}") from exc
    if not out and not allow_empty:
        raise InputError(f"{path}: no records (the file is empty)")
    return out


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def dumps(record: BaseModel | dict[str, Any]) -> str:
    """One JSONL line (no trailing newline) for a record or dict."""
    data = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
    return json.dumps(data, ensure_ascii=False)


def write_jsonl(path: str | os.PathLike[str], records: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Atomically write ``records`` to ``path`` as JSONL; return how many were written."""
    n = 0
    with atomic_write(path) as fh:
        for rec in records:
            fh.write(dumps(rec) + "\n")
            n += 1
    return n
