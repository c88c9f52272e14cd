"""Benchmark `medasr eval`: scoring throughput and tiny-model transcription speed.

Prints JSON lines:
- WER/CER + term matching throughput (utterances/s) on 10k synthetic ref/hyp pairs;
- transcription RTFx (audio seconds per wall second) of the tiny FastConformer-TDT on CPU.
"""

from __future__ import annotations

import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from medasr_cli.core.records import Term, TermCategory
from medasr_cli.evaluate.metrics import Pair, evaluate_pairs

VOCAB = ["the", "patient", "was", "given", "metoprolol", "apixaban", "atrial", "fibrillation", "mitral", "regurgitation", "crohn's", "disease", "haemoglobin", "iliac", "fossa", "blood", "pressure", "review", "in", "clinic"]  # fmt: skip
TERMS = [Term(text=t, category=TermCategory.drug) for t in ("metoprolol", "apixaban")] + [
    Term(text="atrial fibrillation", category=TermCategory.condition),
    Term(text="mitral regurgitation", category=TermCategory.condition),
]


def machine() -> str:
    import os

    return f"{platform.machine()} {os.cpu_count()} cpu(s), {platform.python_version()}"


def synthetic_pairs(n: int, seed: int = 0) -> list[Pair]:
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        ref = [rng.choice(VOCAB) for _ in range(rng.randint(8, 25))]
        hyp = [w if rng.random() > 0.1 else rng.choice(VOCAB) for w in ref if rng.random() > 0.05]
        pairs.append(Pair(str(i), " ".join(ref).capitalize() + ".", " ".join(hyp),
                          {"voice": rng.choice(["en-us", "en-gb"])}))  # fmt: skip
    return pairs


def bench_scoring(n: int = 10_000) -> dict[str, object]:
    pairs = synthetic_pairs(n)
    out = {}
    for normalizer in ("whisper", "none"):
        start = time.perf_counter()
        report = evaluate_pairs(pairs, normalizer=normalizer, terms=TERMS, by=["voice"])
        elapsed = time.perf_counter() - start
        out[normalizer] = {"seconds": round(elapsed, 3), "utts_per_s": round(n / elapsed, 1),
                           "wer": round(report.overall.wer, 4)}  # fmt: skip
    return {"bench": "eval_scoring", "pairs": n, "terms": len(TERMS), "machine": machine(), **out}


def bench_transcription(n_utts: int = 24, batch_size: int = 8) -> dict[str, object]:
    import torch

    from medasr_cli.core.asr_model import load_asr_model, transcribe_files
    from medasr_cli.train.arch import build_model, train_tokenizer

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        texts = [" ".join(random.Random(i).choices(VOCAB, k=10)) for i in range(n_utts)]
        model = build_model("tiny", train_tokenizer(texts * 2, root / "tok", 64))
        model.save_to(str(root / "tiny.nemo"))
        paths = []
        for i, text in enumerate(texts):
            raw = root / f"{i}.raw.wav"
            subprocess.run(["espeak-ng", "-w", str(raw), text], check=True)
            audio, sr = sf.read(raw, dtype="float32")
            from scipy.signal import resample_poly

            audio = resample_poly(audio, 160, sr // 100).astype(np.float32)
            sf.write(root / f"{i}.wav", audio, 16000)
            paths.append(root / f"{i}.wav")
        audio_s = sum(sf.info(p).duration for p in paths)
        model = load_asr_model(root / "tiny.nemo", device="cpu")
        transcribe_files(model, paths[:batch_size], batch_size=batch_size)  # warm-up
        start = time.perf_counter()
        transcribe_files(model, paths, batch_size=batch_size)
        elapsed = time.perf_counter() - start
    return {"bench": "eval_transcription_tiny", "utterances": n_utts, "audio_s": round(audio_s, 1),
            "batch_size": batch_size, "seconds": round(elapsed, 2),
            "rtfx": round(audio_s / elapsed, 1), "device": "cpu", "machine": machine()}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(bench_scoring()), flush=True)
    if "--no-model" not in sys.argv:
        print(json.dumps(bench_transcription()), flush=True)
