"""Benchmark CPU training throughput of the tiny FastConformer-TDT (utterances/s, audio-s/s).

Synthesises 10 espeak-ng utterances, trains the `tiny-cpu` preset for a fixed number of
steps with validation off, and prints one JSON line with the throughput measured by
medasr's Lightning callback over the training steps (first 5 steps excluded as warm-up).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

SENTENCES = [
    "The patient was started on metoprolol twice daily.",
    "Echocardiogram showed mild mitral regurgitation.",
    "Continue apixaban and review in clinic.",
    "She has a history of Crohn's disease.",
    "Haemoglobin was low on admission.",
    "No tenderness in the right iliac fossa.",
    "Blood pressure is one forty over ninety.",
    "Prescribe amoxicillin five hundred milligrams.",
    "The chest X-ray shows bilateral effusions.",
    "Refer to cardiology for an angiogram.",
]


def make_manifest(root: Path) -> Path:
    for i, text in enumerate(SENTENCES):
        raw, wav = root / f"{i}.raw.wav", root / f"{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
        subprocess.run(
            ["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True
        )
        raw.unlink()
        (root / f"{i}.txt").write_text(text)
    manifest = root / "all.jsonl"
    subprocess.run([sys.executable, "-m", "medasr_cli", "-q", "manifest", "build", str(root),
                    "--out", str(manifest)], check=True, capture_output=True)  # fmt: skip
    return manifest


def main(steps: int = 60) -> None:
    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.run import run_training

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = make_manifest(root)
        cfg = load_train_config("tiny-cpu", {"trainer.max_steps": steps}, [
            "trainer.check_val_every_n_epoch=100000", "exp_manager.create_mlflow_logger=false",
            "trainer.enable_progress_bar=false"])  # fmt: skip
        result = run_training(
            cfg, train_manifest=manifest, val_manifest=manifest, out_dir=root / "run"
        )
    print(json.dumps({
        "bench": "train_tiny_cpu", "steps": steps, "batch_size": int(cfg.model.train_ds.batch_size),
        "utts_per_s": round(result.utts_per_sec or 0, 2),
        "audio_s_per_s": round(result.audio_sec_per_sec or 0, 2),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu(s)",
    }))  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60)
