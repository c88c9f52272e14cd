"""The README's "The loop on real data" commands, parsed from README.md and run in order.

Only what cannot run here is substituted: the clinic's audio is espeak-ng speech of the
test sentences (``clinic_test.jsonl``, each line three times so every term reaches
``--min-occurrences 3``), the hub model and the trained model are the tiny ``.nemo``
(conftest ``tiny_model``), the LLM server is the local OpenAI-compatible stub on
loopback, the noise folder holds one noise file, ``--jobs`` is 2 and ``serve`` listens on
127.0.0.1. The multi-node ``torchrun`` launch is not run (``train --dry-run`` before it
checks the same data and options). Each command must exit 0; each reads what the one
before it wrote.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from helpers import (
    SENTENCES,
    cli_env,
    free_port,
    jsonl_records,
    run_cli,
    wait_process_ready,
    wav_bytes,
)
from medasr_cli.llm.stub_server import StubChatServer

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is needed"),
]


def readme_loop() -> list[list[str]]:
    """The commands of the README's loop block: continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## The loop on real data\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("\n```", 1)[0]
    commands, current = [], ""
    for line in block.splitlines():
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        argv = shlex.split(current + line, comments=True)
        current = ""
        if argv:
            commands.append(argv)
    return commands


def test_the_readme_block_is_the_loop() -> None:
    names = [argv[1] if argv[0] == "medasr" else argv[0] for argv in readme_loop()]
    assert names == ["export", "eval", "lexicon", "script", "synth", "manifest", "train",
                     "torchrun", "eval", "serve"]  # fmt: skip


def _clinic_manifest(speech_dir: Path, path: Path) -> None:
    """Sentences 1 and 2 (echocardiogram, mitral regurgitation, apixaban), three times each."""
    lines = []
    for _ in range(3):
        for i in (1, 2):
            wav = speech_dir / f"utt{i:02d}.wav"
            entry = {"audio_filepath": str(wav), "duration": sf.info(str(wav)).duration,
                     "text": SENTENCES[i]}  # fmt: skip
            lines.append(json.dumps(entry))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _replay_manifest(speech_dir: Path, path: Path) -> None:
    rows = [{"audio_filepath": str(speech_dir / f"utt{i:02d}.wav"),
             "duration": sf.info(str(speech_dir / f"utt{i:02d}.wav")).duration, "text": s}
            for i, s in enumerate(SENTENCES)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _serve(args: list[str], env: dict[str, str], cwd: Path, audio: Path) -> None:
    """``medasr serve`` as written (on 127.0.0.1 and a free port): ready, then one file."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "medasr_cli", *args, "--port", str(port)], env=env, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_process_ready(url, proc, timeout=300)
        with audio.open("rb") as fh:
            resp = httpx.post(f"{url}/v1/audio/transcriptions", timeout=120,
                              data={"model": "parakeet-tdt-0.6b-v2"},
                              files={"file": ("clip.wav", fh, "audio/wav")})  # fmt: skip
        assert resp.status_code == 200, resp.text
        assert "text" in resp.json()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_readme_loop_runs_as_written(speech_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    _clinic_manifest(speech_dir, tmp_path / "clinic_test.jsonl")
    _replay_manifest(speech_dir, tmp_path / "general.jsonl")
    noise = tmp_path / "noise"
    noise.mkdir()
    (noise / "ward.wav").write_bytes(wav_bytes(10.0, amplitude=0.05))
    env = cli_env("OPENAI_API_KEY", "OPENAI_BASE_URL", MEDASR_CPU_THREADS="1")
    ran = []
    with StubChatServer() as llm:
        swap = {
            "nvidia/parakeet-tdt-0.6b-v2": str(tiny_model),
            "/fsx/runs/clinical-v1/model.nemo": str(tiny_model),
            "http://llm:8000/v1": llm.base_url,
            "/data/hospital-noise": str(noise),
            "0.0.0.0": "127.0.0.1",
        }
        for argv in readme_loop():
            if argv[0] == "export":
                key, _, value = argv[1].partition("=")
                env[key] = value
                continue
            if argv[0] == "torchrun":
                continue
            assert argv[0] == "medasr", argv
            args = [swap.get(a, a) for a in argv[1:]]
            if "--jobs" in args:
                args[args.index("--jobs") + 1] = "2"
            ran.append(args[0])
            if args[0] == "serve":
                _serve(args, env, tmp_path, speech_dir / "utt01.wav")
                continue
            proc = run_cli(*args, env=env, cwd=tmp_path, timeout=1200)
            assert proc.returncode == 0, (argv, proc.stdout[-3000:], proc.stderr[-3000:])
        llm_requests = llm.requests
    assert ran == ["eval", "lexicon", "script", "synth", "manifest", "train", "eval", "serve"]

    base = json.loads((tmp_path / "base.json").read_text())
    assert base["source"]["terms"] == ["bundled:seed (3660 terms)"]  # no --terms: bundled
    expected = {row["term"]: row["expected"] for row in base["per_term"]}
    assert expected == {"apixaban": 3, "echocardiogram": 3, "mitral regurgitation": 3}

    lexicon = {t["text"]: t for t in jsonl_records(tmp_path / "work/lexicon/lexicon.jsonl")}
    assert set(lexicon) <= set(expected) and lexicon  # recall <= 0.8 on the untrained model
    for text, term in lexicon.items():
        if text == "apixaban":  # the bundled table's respelling, not asked
            assert (term["pronunciation"], term["pronunciation_source"]) == ("uh-PIX-uh-ban", None)
        else:  # asked of the LLM (the stub's deterministic answer), marked for review
            assert term["pronunciation"] and term["pronunciation_source"] == "llm:my-llm"

    scripts = jsonl_records(tmp_path / "work/scripts.jsonl")
    assert scripts and llm_requests >= len(scripts)
    assert {t for s in scripts for t in s["terms"]} == set(lexicon)
    assert jsonl_records(tmp_path / "work/synth/utterances.jsonl")
    assert (tmp_path / "work/splits/train.jsonl").is_file()
    tuned = json.loads((tmp_path / "tuned.json").read_text())
    assert tuned["overall"]["utterances"] == 6 and tuned["per_term"]
