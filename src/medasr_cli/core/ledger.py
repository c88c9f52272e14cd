"""The resumable JSONL ledger of a stage's output, and a clean stop on Ctrl-C.

``script`` and ``synth`` write their records through one :class:`Ledger`, the
pattern of lhotse's ``SequentialJsonlWriter(path, overwrite=False)``:

* on open, a torn last line left by a crash is cut off, and the records already
  there are read (the last one per id wins), so :meth:`Ledger.contains` says
  what is done and a re-run does only the rest;
* each record is appended as one whole line and flushed as its work finishes,
  so a crash loses at most the work in flight;
* :meth:`Ledger.rewrite` compacts the file atomically at the end;
* while it is open, a lock beside the file refuses a second run that would
  write the same file (different shards write different files, so they run
  side by side).

:func:`graceful_interrupt` turns the first Ctrl-C into a request to stop after
the work in flight, so nothing finished is lost and no output is left without
its record; the stage then raises :class:`Interrupted`, which the CLI reports
with the command that resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from medasr_cli.core.errors import InputError, MedasrError
from medasr_cli.core.jsonl import dumps, format_validation_error, iter_jsonl, write_jsonl

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)


class Busy(InputError):
    """Another run is writing the same output right now."""


class Interrupted(MedasrError):
    """The user stopped the run; what finished is kept (exit code 130)."""

    exit_code = 130

    def __init__(self, kept: int, total: int, path: Path, what: str) -> None:
        super().__init__(
            f"interrupted: {kept} of {total} {what} are in {path}; nothing finished was lost"
        )
        self.kept, self.total, self.path = kept, total, path


class Ledger:
    """A JSONL file of records keyed by ``key``, appended to as work finishes.

    ``wait=False`` refuses at once when another process holds the file's lock
    (a second run of the same command); ``wait=True`` waits for it (a step that
    several shards share, such as the scripts that ``synth --terms`` makes).
    The file is created on the first :meth:`append`, so a run that fails early
    leaves nothing behind.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: str = "id",
        wait: bool = False,
        model: type[BaseModel] | None = None,
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory, expected a JSONL file path")
        self.key = key
        self._lock = _FileLock(self.path.with_name(f".{self.path.name}.lock"), wait=wait)
        self._fh: IO[str] | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self._model = model

    # -- life cycle -------------------------------------------------------
    def open(self) -> Ledger:
        self._lock.acquire()
        try:
            _cut_torn_tail(self.path)
            self.records = self._read()
        except BaseException:
            self._lock.release()
            raise
        return self

    def close(self) -> None:
        try:
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None
        finally:
            self._lock.release()

    def __enter__(self) -> Ledger:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what is done -----------------------------------------------------
    def contains(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def __len__(self) -> int:
        return len(self.records)

    def parsed(self, model: type[R]) -> list[R]:
        """The records as ``model`` instances, in file order."""
        return [model.model_validate(r) for r in self.records.values()]

    # -- writing ----------------------------------------------------------
    def append(self, record: BaseModel | dict[str, Any]) -> None:
        """Append one record as a whole, flushed line; it replaces an earlier one with its key."""
        data = record.model_dump(mode="json") if isinstance(record, BaseModel) else record
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(dumps(data) + "\n")
        self._fh.flush()
        self.records[str(data[self.key])] = data

    def rewrite(self, records: Iterable[BaseModel | dict[str, Any]]) -> int:
        """Replace the file atomically with ``records`` (the final compaction); returns how many."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        rows = [r.model_dump(mode="json") if isinstance(r, BaseModel) else r for r in records]
        n = write_jsonl(self.path, rows)
        self.records = {str(r[self.key]): r for r in rows}
        return n

    def _read(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return out
        for lineno, obj in iter_jsonl(self.path):
            if obj.get(self.key) is None:
                raise InputError(f"{self.path}:{lineno}: missing field '{self.key}'")
            if self._model is not None:
                try:
                    self._model.model_validate(obj)
                except ValidationError as exc:
                    raise InputError(
                        f"{self.path}:{lineno}: {format_validation_error(exc)}"
                    ) from exc
            out[str(obj[self.key])] = obj
        return out


def _cut_torn_tail(path: Path) -> None:
    """Cut an unterminated last line (a crash mid-write) so the file parses and appends cleanly."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return
        fh.seek(0)
        data = fh.read()
        cut = data.rfind(b"\n") + 1
        log.warning("%s: cut a torn last line left by an interrupted run", path)
        fh.truncate(cut)


class _FileLock:
    """An advisory ``flock`` on a file beside the output; the OS drops it if the process dies."""

    def __init__(self, path: Path, *, wait: bool) -> None:
        self.path, self.wait = path, wait
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            target = self.path.name.removeprefix(".").removesuffix(".lock")
            raise Busy(
                f"{self.path.parent / target}: another run is writing it right now "
                f"(pid {holder}); wait for it to finish, or use another output"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing drops the flock
            self._fh = None


class StopFlag:
    """Set by the first Ctrl-C inside :func:`graceful_interrupt`."""

    def __init__(self) -> None:
        self.requested = False

    def __bool__(self) -> bool:
        return self.requested


@contextlib.contextmanager
def graceful_interrupt(what: str) -> Iterator[StopFlag]:
    """The first Ctrl-C sets the flag (finish the work in flight, then stop); the second aborts.

    Only the main thread can own signal handlers; elsewhere Ctrl-C keeps its
    default behaviour and the flag is never set.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def on_sigint(signum: int, frame: object) -> None:
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        log.warning(
            "Ctrl-C: finishing the %s in flight, then stopping (Ctrl-C again to abort)", what
        )

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def ignore_sigint() -> None:
    """For worker processes: Ctrl-C is the parent's to handle (it lets them finish their item)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
