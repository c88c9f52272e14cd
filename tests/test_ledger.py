"""The shared resumable ledger and shards (core): torn lines, locks, Ctrl-C, one shard hash.

``script`` and ``synth`` both write through :class:`medasr_cli.core.ledger.Ledger` and both
split work with :mod:`medasr_cli.core.shard`; these tests drive the real commands.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers import cli_env, one_error_line, run_cli
from medasr_cli.core.errors import InputError
from medasr_cli.core.ledger import Busy, Ledger
from medasr_cli.core.records import Script
from medasr_cli.core.shard import in_shard, parse_shard, shard_of, stable_hash, stable_hex


def test_ledger_resumes_cuts_a_torn_line_and_compacts(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": "a", "v": 1}\n{"id": "b", "v": 1}\n{"id": "c", "v"')  # crash mid-line
    with Ledger(path) as ledger:
        assert ledger.contains("a") and ledger.contains("b") and not ledger.contains("c")
        ledger.append({"id": "c", "v": 1})
        ledger.append({"id": "a", "v": 2})  # a re-done record replaces the old one
        assert ledger.get("a") == {"id": "a", "v": 2} and len(ledger) == 3
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)  # appended, not rewritten
    with Ledger(path) as ledger:
        assert ledger.get("a") == {"id": "a", "v": 2}  # the last record per id wins
        ledger.rewrite(ledger.records.values())
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["a", "b", "c"]


def test_ledger_validates_records_and_creates_nothing_before_the_first_append(
    tmp_path: Path,
) -> None:
    path = tmp_path / "scripts.jsonl"
    with Ledger(path, model=Script) as ledger:
        assert len(ledger) == 0
    assert not path.exists()
    path.write_text('{"id": "x", "text": "hello"}\n')
    with pytest.raises(InputError, match=r"scripts.jsonl:1: missing field 'generator'"):
        Ledger(path, model=Script).open()
    with pytest.raises(InputError, match="is a directory"):
        Ledger(tmp_path)


def test_second_writer_of_the_same_file_is_refused_other_files_are_not(tmp_path: Path) -> None:
    with Ledger(tmp_path / "utterances.jsonl"):
        with pytest.raises(Busy, match=r"utterances.jsonl: another run is writing it"):
            Ledger(tmp_path / "utterances.jsonl").open()
        with Ledger(tmp_path / "utterances.shard-1-of-2.jsonl"):
            pass  # shards write their own files side by side
    with Ledger(tmp_path / "utterances.jsonl"):
        pass  # released on close


def test_one_shard_hash_for_every_stage() -> None:
    """--shard K/N of script and synth (the checks of both stages' former parsers)."""
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("0/4", "5/4", "x", "1/0", "0/3", "4/3", "a/b", "3"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)
    ids = [f"id-{i}" for i in range(400)]
    for i in ids:
        assert [k for k in (1, 2, 3) if in_shard(i, (k, 3))] == [shard_of(i, 3)]
    shards = Counter(shard_of(f"s{i}-0", 4) for i in range(200))
    assert set(shards) == {1, 2, 3, 4} and min(shards.values()) > 30
    assert stable_hash("x") == stable_hash("x") < 2**64 and stable_hash("x", bits=31) < 2**31
    assert len(stable_hex("x", 12)) == 12
    # the two stages import one function: the same id lands in the same shard in both
    import medasr_cli.script.run as script_run
    import medasr_cli.synth.run as synth_run

    assert script_run.in_shard is synth_run.in_shard is in_shard


def test_a_second_script_run_on_the_same_output_is_refused(tmp_path: Path) -> None:
    terms = tmp_path / "terms.txt"
    terms.write_text("apixaban\tdrug\nmetoprolol\tdrug\n")
    out = tmp_path / "scripts.jsonl"
    with Ledger(out):  # another run holds the output (this test process stands in for it)
        proc = run_cli("script", "--terms", str(terms), "--out", str(out))
    assert proc.returncode == 2
    assert "another run is writing it" in one_error_line(proc)
    assert not out.exists()
    assert run_cli("script", "--terms", str(terms), "--out", str(out)).returncode == 0


@pytest.mark.slow
def test_ctrl_c_keeps_what_finished_leaves_no_orphan_audio_and_resumes(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) on a real `medasr synth --jobs 2`: the utterances in flight finish,
    every audio file has its record, the exit says how to resume, and the re-run renders only
    the rest. A second run on the same folder meanwhile is refused with one line."""
    sentences = tmp_path / "sentences.txt"
    sentences.write_text(
        "\n".join(f"Sentence number {i} of the interrupted run is spoken here." for i in range(600))
        + "\n"
    )
    out = tmp_path / "synth"
    argv = ["synth", "--scripts", str(sentences), "--voices", "espeak:en-us",
            "--no-auto-noise-bank", "--jobs", "2", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "medasr_cli", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    jsonl = out / "utterances.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if jsonl.is_file() and jsonl.read_text().count("\n") >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    busy = run_cli(*argv)
    assert busy.returncode == 2 and "another run is writing it" in one_error_line(busy, "error")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted:" in err and "resume with: medasr synth --scripts" in err
    records = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert 3 <= len(records) < 600
    audio = {p.name for p in (out / "audio").iterdir()}
    assert audio == {Path(r["audio_filepath"]).name for r in records}  # no orphans, no temp files
    again = run_cli(*argv)
    assert again.returncode == 0, again.stderr
    assert f"resumed {len(records)}" in again.stdout
    assert len(jsonl.read_text().splitlines()) == 600
