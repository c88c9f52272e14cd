"""`medasr manifest build|validate|stats`, checked with NeMo's own manifest readers."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import ffmpeg, run_cli
from medasr_cli.core.errors import InputError
from medasr_cli.core.records import ManifestEntry
from medasr_cli.manifest import build_manifest, parse_split_spec, split_entries, validate_manifest


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_build_from_folder_reads_durations(speech_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    proc = run_cli("manifest", "build", str(speech_dir), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = read_jsonl(out)
    assert len(rows) == 6
    for row in rows:
        info = sf.info(row["audio_filepath"])
        assert row["duration"] == pytest.approx(info.frames / info.samplerate, abs=1e-3)
        assert Path(row["audio_filepath"]).with_suffix(".txt").read_text().strip() == row["text"]


def test_nemo_reads_our_manifest_with_relative_paths(speech_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("nemo.collections.common")
    from nemo.collections.common.parts.preprocessing import collections as nemo_collections

    out = tmp_path / "sub" / "m.jsonl"
    proc = run_cli("manifest", "build", str(speech_dir), "--out", str(out), "--relative")
    assert proc.returncode == 0, proc.stderr
    assert not Path(read_jsonl(out)[0]["audio_filepath"]).is_absolute()
    coll = nemo_collections.ASRAudioText(str(out), parser=lambda s: list(s))
    assert len(coll.data) == 6
    for item in coll.data:
        assert Path(item.audio_file).is_file()  # NeMo resolved the relative path
        assert item.duration > 0.5


def test_build_from_csv_with_resample(speech_dir: Path, tmp_path: Path) -> None:
    # 44.1 kHz stereo 8-bit source, referenced relative to the CSV's folder.
    audio, _sr = sf.read(speech_dir / "utt00.wav")
    from scipy.signal import resample_poly

    hi = resample_poly(audio, 441, 160)
    sf.write(tmp_path / "stereo.wav", np.stack([hi, hi], axis=1), 44100, subtype="PCM_U8")
    csv = tmp_path / "data.csv"
    csv.write_text("path,text,speaker\nstereo.wav,The patient was started on metoprolol.,dr_a\n")
    out = tmp_path / "m.jsonl"
    proc = run_cli("manifest", "build", str(csv), "--out", str(out), "--resample", "16000",
                   "--audio-out", str(tmp_path / "conv"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (row,) = read_jsonl(out)
    info = sf.info(row["audio_filepath"])
    assert (info.samplerate, info.channels) == (16000, 1)
    assert row["speaker"] == "dr_a"
    assert row["duration"] == pytest.approx(len(audio) / 16000, abs=0.01)
    assert run_cli("manifest", "validate", str(out)).returncode == 0


def test_build_reads_compressed_audio_with_ffmpeg(speech_dir: Path, tmp_path: Path) -> None:
    m4a = tmp_path / "clip.m4a"
    ffmpeg(speech_dir / "utt01.wav", m4a)
    (tmp_path / "clip.txt").write_text("Echocardiogram showed mild mitral regurgitation.")
    result = build_manifest([tmp_path])
    (entry,) = result.entries
    assert entry.duration == pytest.approx(sf.info(speech_dir / "utt01.wav").duration, abs=0.1)


def test_build_from_utterances_keeps_metadata(speech_dir: Path, tmp_path: Path) -> None:
    utts = tmp_path / "utterances.jsonl"
    lines = []
    for i in range(2):
        lines.append(json.dumps({
            "id": f"u{i}", "script_id": "s1", "text": "x y", "audio_filepath": str(speech_dir / f"utt0{i}.wav"),
            "duration": 1.0, "voice": "espeak:en-gb", "snr_db": 12.5,
            "augmentations": [{"kind": "noise", "params": {"snr_db": 12.5}}],
        }))  # fmt: skip
    utts.write_text("\n".join(lines) + "\n")
    result = build_manifest([utts])
    meta = result.entries[0].metadata()
    assert meta["voice"] == "espeak:en-gb" and meta["snr_db"] == 12.5 and meta["id"] == "u0"
    assert meta["augmentations"] == ["noise"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "nothing.jsonl: not found"),
        ("", "no records"),
        ("{oops\n", "nothing.jsonl:1: not valid JSON"),
        ('{"audio_filepath": "a.wav", "duration": 1}\n', "nothing.jsonl:1: missing field 'text'"),
    ],
)
def test_build_bad_sources_exit_2_and_write_nothing(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    src = tmp_path / "nothing.jsonl"
    if content is not None:
        src.write_text(content)
    out = tmp_path / "out.jsonl"
    proc = run_cli("manifest", "build", str(src), "--out", str(out))
    assert proc.returncode == 2
    assert expected in proc.stderr.replace("\n", "")
    assert not out.exists()


def test_build_missing_audio_names_the_line_or_is_skipped(speech_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"audio_filepath": str(speech_dir / "utt00.wav"), "duration": 1, "text": "a"}) + "\n"
        + json.dumps({"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1, "text": "b"}) + "\n"
    )  # fmt: skip
    with pytest.raises(InputError, match=r"in.jsonl:2: .*gone.wav: audio file not found"):
        build_manifest([src])
    result = build_manifest([src], skip_bad=True)
    assert len(result.entries) == 1 and len(result.skipped) == 1


def _entries(n_scripts: int, per_script: int, voices: list[str]) -> list[ManifestEntry]:
    return [
        ManifestEntry(audio_filepath=f"/x/{s}_{k}.wav", duration=2.0, text=f"sentence {s}",
                      script_id=f"s{s}", voice=voices[(s + k) % len(voices)])
        for s in range(n_scripts) for k in range(per_script)
    ]  # fmt: skip


def test_split_is_grouped_proportional_and_seeded() -> None:
    entries = _entries(200, 3, ["a", "b"])
    ratios = parse_split_spec("train=0.8,val=0.1,test=0.1")
    parts = split_entries(entries, ratios, seed=7)
    assert sum(len(v) for v in parts.values()) == 600
    scripts = {name: {e.metadata()["script_id"] for e in part} for name, part in parts.items()}
    assert not scripts["train"] & scripts["val"] and not scripts["train"] & scripts["test"]
    assert not scripts["val"] & scripts["test"]
    assert len(parts["train"]) == pytest.approx(480, abs=6)
    assert len(parts["test"]) == pytest.approx(60, abs=6)
    again = split_entries(entries, ratios, seed=7)
    assert [e.audio_filepath for e in again["test"]] == [e.audio_filepath for e in parts["test"]]
    other = split_entries(entries, ratios, seed=8)
    assert [e.audio_filepath for e in other["test"]] != [e.audio_filepath for e in parts["test"]]


def test_split_groups_by_text_without_script_ids() -> None:
    entries = [
        ManifestEntry(audio_filepath=f"/x/{i}.wav", duration=1, text=t)
        for i, t in enumerate(["Hello, world.", "hello world", "Other one.", "other one"] * 5)
    ]
    parts = split_entries(entries, parse_split_spec("a=0.5,b=0.5"), seed=1)
    for part in parts.values():
        texts = {e.text.lower().strip(".").replace(",", "") for e in part}
        assert len(texts) == 1  # the same sentence never lands in two splits


def test_split_stratified_by_voice() -> None:
    entries = [
        ManifestEntry(audio_filepath=f"/x/{v}{s}.wav", duration=1, text=f"{v} {s}", script_id=f"{v}{s}",
                      voice=v)
        for v, n in (("rare", 20), ("common", 180)) for s in range(n)
    ]  # fmt: skip
    parts = split_entries(
        entries, parse_split_spec("train=0.5,test=0.5"), seed=0, stratify_by="voice"
    )
    counts = {name: Counter(e.metadata()["voice"] for e in part) for name, part in parts.items()}
    assert counts["train"]["rare"] == counts["test"]["rare"] == 10


def test_split_spec_errors() -> None:
    for bad in ("train", "train=x", "train=-1", "a=0,b=0", "a=1,a=2"):
        with pytest.raises(InputError):
            parse_split_spec(bad)


def test_build_split_cli_writes_files(speech_dir: Path, tmp_path: Path) -> None:
    proc = run_cli("manifest", "build", str(speech_dir), "--out", str(tmp_path / "splits"),
                   "--split", "train=0.5,val=0.25,test=0.25", "--seed", "3")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    total = sum(
        len(read_jsonl(tmp_path / "splits" / f"{n}.jsonl")) for n in ("train", "val", "test")
    )
    assert total == 6


# ---- validate ---------------------------------------------------------------------------------


def _bad_manifest(speech_dir: Path, tmp: Path) -> tuple[Path, dict[int, str]]:
    good = speech_dir / "utt00.wav"
    dur = sf.info(good).duration
    stereo = tmp / "stereo44k.wav"
    sf.write(stereo, np.zeros((44100, 2), dtype=np.float32), 44100)
    empty_wav = tmp / "empty.wav"
    sf.write(empty_wav, np.zeros(0, dtype=np.float32), 16000)
    not_audio = tmp / "notes.wav"
    not_audio.write_bytes(b"%PDF-1.4 this is not audio")
    rows: list[tuple[str, str]] = [
        (json.dumps({"audio_filepath": str(good), "duration": dur, "text": "fine"}), ""),
        ("this is not json", "not valid JSON"),
        (json.dumps({"duration": dur, "text": "x"}), "missing field 'audio_filepath'"),
        (json.dumps({"audio_filepath": str(tmp / "gone.wav"), "duration": 1, "text": "x"}), "not found"),
        (json.dumps({"audio_filepath": str(good), "duration": dur, "text": "  "}), "empty text"),
        (json.dumps({"audio_filepath": str(good), "duration": 0, "text": "x"}), "must be positive"),
        (json.dumps({"audio_filepath": str(good), "duration": dur + 1, "text": "x"}), "differs"),
        (json.dumps({"audio_filepath": str(stereo), "duration": 1.0, "text": "x"}), "44100 Hz"),
        (json.dumps({"audio_filepath": str(empty_wav), "duration": 1.0, "text": "x"}), "zero length"),
        (json.dumps({"audio_filepath": str(not_audio), "duration": 1.0, "text": "x"}), "not a readable audio"),
        (json.dumps({"audio_filepath": str(good), "duration": dur, "text": "dose µg"}), "outside the charset"),
        (json.dumps({"audio_filepath": str(good), "duration": 5000, "text": "x"}), "--max-duration"),
    ]  # fmt: skip
    path = tmp / "bad.jsonl"
    path.write_text("\n".join(r for r, _ in rows) + "\n", encoding="utf-8")
    return path, {i + 1: msg for i, (_, msg) in enumerate(rows) if msg}


def test_validate_reports_every_problem_with_line(speech_dir: Path, tmp_path: Path) -> None:
    path, expected = _bad_manifest(speech_dir, tmp_path)
    charset = set("abcdefghijklmnopqrstuvwxyz ")
    report = validate_manifest(path, charset=charset)
    by_line: dict[int, list[str]] = {}
    for p in report.problems:
        by_line.setdefault(p.line, []).append(p.message)
    for line, msg in expected.items():
        assert any(msg in m for m in by_line.get(line, [])), (line, msg, by_line.get(line))
    assert 1 not in by_line and report.ok == 1
    assert "stereo44k.wav: 2 channels" in " ".join(by_line[8])


def test_validate_cli_exit_codes(speech_dir: Path, tmp_path: Path) -> None:
    path, _ = _bad_manifest(speech_dir, tmp_path)
    proc = run_cli("manifest", "validate", str(path), "--charset", "abcdefghijklmnopqrstuvwxyz")
    assert proc.returncode == 2
    assert f"{path}:2: not valid JSON" in proc.stderr
    good = tmp_path / "good.jsonl"
    assert run_cli("manifest", "build", str(speech_dir), "--out", str(good)).returncode == 0
    proc = run_cli("manifest", "validate", str(good))
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


def test_validate_empty_manifest(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    proc = run_cli("manifest", "validate", str(empty))
    assert proc.returncode == 2 and "empty" in proc.stderr


def test_validate_with_tokenizer_charset(
    tiny_model: Path, speech_dir: Path, tmp_path: Path
) -> None:
    tok = tiny_model.parent / "tokenizer"
    good = tmp_path / "good.jsonl"
    assert run_cli("manifest", "build", str(speech_dir), "--out", str(good)).returncode == 0
    assert (
        validate_manifest(
            good,
            charset=__import__("medasr_cli.manifest.validate", fromlist=["x"]).load_charset(
                None, str(tok)
            ),
        ).problems
        == []
    )
    rows = read_jsonl(good)
    rows[0]["text"] = "ZyxQ§"
    good.write_text("\n".join(json.dumps(r) for r in rows))
    proc = run_cli("manifest", "validate", str(good), "--tokenizer", str(tok))
    assert proc.returncode == 2 and "outside the charset" in proc.stderr


def test_stats_cli(speech_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    rows = []
    for i, wav in enumerate(sorted(speech_dir.glob("*.wav"))):
        rows.append({"audio_filepath": str(wav), "duration": sf.info(wav).duration,
                     "text": "x", "voice": "en-gb" if i % 2 else "en-us"})  # fmt: skip
    out.write_text("\n".join(json.dumps(r) for r in rows))
    proc = run_cli("manifest", "stats", str(out), "--by", "voice")
    assert proc.returncode == 0, proc.stderr
    assert "6 utterances" in proc.stdout and "en-gb" in proc.stdout and "by voice" in proc.stdout
