"""Atomic JSONL writing and file:line error reporting."""

from __future__ import annotations

import pytest

from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import atomic_write, iter_jsonl, read_records, write_jsonl
from medasr_cli.core.ledger import Ledger
from medasr_cli.core.records import ManifestEntry


def test_write_then_read_roundtrip(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    rows = [ManifestEntry(audio_filepath=f"/a/{i}.wav", duration=1.5, text=f"t {i}", voice="x")
            for i in range(3)]  # fmt: skip
    assert write_jsonl(path, rows) == 3
    back = [e for _, e in read_records(path, ManifestEntry)]
    assert back == rows
    assert back[0].metadata() == {"voice": "x"}


def test_crash_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"old": 1}\n')

    def boom():
        yield {"a": 1}
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        write_jsonl(path, boom())
    assert path.read_text() == '{"old": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_crash_before_first_write_creates_nothing(tmp_path) -> None:
    path = tmp_path / "new.jsonl"
    with pytest.raises(ValueError), atomic_write(path) as fh:
        fh.write("partial")
        raise ValueError("x")
    assert not path.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b'{"audio_filepath": "a.wav", "duration": 1, "text": "x"}\nnot json\n',
            ":2: not valid JSON",
        ),
        (b'{"duration": 1, "text": "x"}\n', ":1: missing field 'audio_filepath'"),
        (b'{"audio_filepath": "a.wav", "duration": 1}\n', ":1: missing field 'text'"),
        (b"[1, 2]\n", ":1: expected a JSON object"),
        (
            b'{"audio_filepath": "a.wav", "duration": 1, "text": "\xff\xfe"}\n',
            ":1: not valid UTF-8",
        ),
        (b"", "no records (the file is empty)"),
    ],
)
def test_bad_lines_report_file_and_line(tmp_path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_records(path, ManifestEntry)
    assert str(err.value).startswith(str(path))
    assert expected in str(err.value)


def test_missing_and_directory(tmp_path) -> None:
    with pytest.raises(InputError, match="not found"):
        list(iter_jsonl(tmp_path / "nope.jsonl"))
    with pytest.raises(InputError, match="is a directory"):
        list(iter_jsonl(tmp_path))


def test_appender_cuts_torn_tail(tmp_path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"i": 0}\n{"i": 1')  # a crash mid-line
    with Ledger(path, key="i") as app:
        app.append({"i": 1})
    assert [obj["i"] for _, obj in iter_jsonl(path)] == [0, 1]
