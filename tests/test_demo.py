"""The README's main job (``make demo`` = scripts/demo.sh) end to end, with few training steps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("espeak-ng", "ffmpeg", "curl")),
        reason="espeak-ng, ffmpeg and curl are needed",
    ),
]


def test_demo_runs_every_stage_to_a_transcription_through_the_server(tmp_path: Path) -> None:
    from helpers import free_port

    out = tmp_path / "demo"
    bin_dir = str(Path(sys.executable).parent)  # the environment's `medasr` and `python`
    env = os.environ | {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MEDASR_DEMO_DIR": str(out),
        "MEDASR_DEMO_STEPS": "5",
        "MEDASR_DEMO_PORT": str(free_port()),
    }
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=1200, check=False)  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    for step in range(1, 8):
        assert f"== {step}." in proc.stdout
    assert (out / "run" / "model.nemo").is_file() and (out / "run" / "mlflow.db").is_file()
    for report in ("eval_train", "eval_test", "eval_test_endpoint"):
        body = json.loads((out / f"{report}.json").read_text())
        assert body["overall"]["utterances"] > 0
    transcription = next(ln for ln in proc.stdout.splitlines() if ln.startswith('{"text"'))
    assert "text" in json.loads(transcription)
    assert "done:" in proc.stdout
