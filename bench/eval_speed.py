"""Benchmark `medasr eval`: scoring throughput, and transcription against the model alone.

Prints JSON lines:

- ``eval_scoring``: WER/CER + term matching throughput (utterances/s) on 10k
  synthetic ref/hyp pairs;
- ``eval_transcription``: ``eval --model``'s transcription (``transcribe_paths``
  through a loaded ``ModelRunner``: audio decoded from the files, batched
  longest first; model load excluded) on the seeded benchmark model and espeak
  clips of ``bench/common.py`` (the same model and clips ``bench/serve_load.py``
  uses), and in the same run, interleaved round by round, the model alone
  (``ModelRunner.infer`` on pre-decoded arrays, same batch size: serve_load's
  ``model_alone``); RTFx of both, their ratio (target >= 0.8) and tokens
  emitted per second of audio;
- with ``--long``, ``eval_long_1x30min``: one 30-minute file (``--long-s``) in a
  fresh process: RTFx (model load excluded), load time and peak RSS (VmHWM).

Numbers only: it never fails on time. ``--no-model`` runs only the scoring.
A quick check: ``--clips 4 --repeat 2 --rounds 1 --long --long-s 60``.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from common import (
    ModelAlone,
    bench_model,
    count_tokens,
    emit,
    eval_files,
    load_avg,
    long_recording,
    machine,
    make_clips,
    seconds_list,
)

from medasr_cli.core.records import Term, TermCategory
from medasr_cli.evaluate.metrics import Pair, evaluate_pairs

VOCAB = ["the", "patient", "was", "given", "metoprolol", "apixaban", "atrial", "fibrillation", "mitral", "regurgitation", "crohn's", "disease", "haemoglobin", "iliac", "fossa", "blood", "pressure", "review", "in", "clinic"]  # fmt: skip
TERMS = [Term(text=t, category=TermCategory.drug) for t in ("metoprolol", "apixaban")] + [
    Term(text="atrial fibrillation", category=TermCategory.condition),
    Term(text="mitral regurgitation", category=TermCategory.condition),
]


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
    return {"bench": "eval_scoring", "pairs": n, "terms": len(TERMS), **out,
            "load_avg_1m": load_avg()}  # fmt: skip


class EvalFiles:
    """``eval --model``'s transcription of files through an already loaded runner."""

    def __init__(self, runner: Any, clips: list[Path], repeat: int, batch: int) -> None:
        from medasr_cli.infer.files import BatchLimits

        self.runner = runner
        self.paths = [str(c) for c in clips] * repeat
        self.durations = [sf.info(p).duration for p in self.paths]
        self.limits = BatchLimits(max_batch_size=batch)

    def run(self) -> dict[str, Any]:
        from medasr_cli.infer.files import transcribe_paths

        started = time.perf_counter()
        out = transcribe_paths(self.runner, self.paths, self.durations, limits=self.limits)
        wall = time.perf_counter() - started
        audio_s = sum(self.durations)
        return {"wall_s": wall, "audio_s": audio_s, "rtfx": audio_s / wall,
                "texts": [t.text for t in out]}  # fmt: skip


def bench_transcription(model_path: Path, clips: list[Path], args: argparse.Namespace) -> None:
    from medasr_cli.core.audio import decode_audio
    from medasr_cli.infer.runner import ModelRunner, RunnerOptions

    runner = ModelRunner(RunnerOptions(model=str(model_path), device=args.device,
                                       cpu_threads=args.threads))  # fmt: skip
    load_s = runner.load()
    alone = ModelAlone(runner, clips, args.repeat, args.batch_size)
    evals = EvalFiles(runner, clips, args.repeat, args.batch_size)
    evals.run()  # warm-up (the page cache, ffmpeg-free soundfile path)
    started = time.perf_counter()  # what eval adds to the model: reading the files
    for p in evals.paths:
        decode_audio(p)
    decode_s = time.perf_counter() - started
    rounds: dict[str, list[dict[str, Any]]] = {"eval": [], "alone": []}
    for _ in range(args.rounds):
        rounds["eval"].append(evals.run())
        rounds["alone"].append(alone.run())
    for r in rounds["eval"] + rounds["alone"]:
        r["tokens_per_audio_s"] = count_tokens(runner.tokenize, r["texts"]) / r["audio_s"]
    ratios = [e["rtfx"] / a["rtfx"] for e, a in zip(rounds["eval"], rounds["alone"], strict=True)]
    same = np.mean([t == u for t, u in zip(rounds["eval"][0]["texts"],
                                           rounds["alone"][0]["texts"], strict=True)])  # fmt: skip

    def med(key: str, which: str, digits: int = 1) -> float:
        return round(float(np.median([r[key] for r in rounds[which]])), digits)

    emit({"bench": "eval_transcription", "files_per_round": len(evals.paths),
          "audio_s_per_round": round(rounds["eval"][0]["audio_s"], 1),
          "batch_size": args.batch_size, "rounds": args.rounds, "model_load_s": round(load_s, 2),
          "eval_rtfx": med("rtfx", "eval"),
          "eval_rtfx_rounds": [round(r["rtfx"], 1) for r in rounds["eval"]],
          "model_alone_rtfx": med("rtfx", "alone"),
          "model_alone_rtfx_rounds": [round(r["rtfx"], 1) for r in rounds["alone"]],
          "eval_vs_model_alone": round(float(np.median(ratios)), 2),
          "eval_vs_model_alone_rounds": [round(x, 2) for x in ratios],
          "target_met": float(np.median(ratios)) >= 0.8,
          "tokens_per_audio_s": med("tokens_per_audio_s", "eval", 2),
          "model_alone_tokens_per_audio_s": med("tokens_per_audio_s", "alone", 2),
          "same_text_as_model_alone": round(float(same), 3),
          "decode_s_per_round": round(decode_s, 3),
          "device": runner.device, "precision": runner.precision_name(),
          "load_avg_1m": load_avg()})  # fmt: skip


def bench_long(model_path: Path, clips: list[Path], folder: Path, args: argparse.Namespace) -> None:
    for sec in args.long_s:
        path = long_recording(clips, sec, folder / f"long{sec:g}.flac")
        res = eval_files({"model": str(model_path), "paths": [str(path)], "device": args.device,
                          "threads": args.threads, "batch_size": args.batch_size})  # fmt: skip
        gpu = {k: res[k] for k in ("peak_gpu_alloc_mb", "peak_gpu_reserved_mb") if res.get(k)}
        emit({"bench": f"eval_long_1x{sec / 60:g}min", "audio_s": round(res["audio_s"], 1),
              "rtfx": round(res["rtfx"], 1), "wall_s": round(res["wall_s"], 1),
              "model_load_s": round(res["load_s"], 2), "peak_rss_mb": res["peak_rss_mb"], **gpu,
              "tokens_per_audio_s": round(res["tokens"] / res["audio_s"], 2),
              "words": len(res["texts"][0].split()),
              "full_attention_s": res["full_attention_s"],
              "max_single_pass_s": res["max_single_pass_s"], "load_avg_1m": load_avg()})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-model", action="store_true", help="only the scoring benchmark")
    ap.add_argument("--arch", default="tiny", help="medasr_cli.train.arch architecture")
    ap.add_argument("--seed", type=int, default=0, help="seed of the benchmark model's weights")
    ap.add_argument(
        "--workdir", type=Path, help="cache of seeded models (default ~/.cache/medasr-bench)"
    )
    ap.add_argument(
        "--model", type=Path, help="an existing .nemo instead of the seeded --arch model"
    )
    ap.add_argument("--clips", type=int, default=16, help="distinct espeak clips (1 sentence each)")
    ap.add_argument("--repeat", type=int, default=8, help="files per clip and round")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--long", action="store_true", help="add the long-recording case")
    ap.add_argument(
        "--long-s",
        type=seconds_list,
        default=[1800.0],
        help="length of the long file; several, comma-separated, for one case each",
    )
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    emit({**machine(args.device, args.threads)})
    emit(bench_scoring())
    if args.no_model:
        return
    if args.model is not None:
        model_path, info = args.model, {"model": str(args.model)}
    else:
        model_path, info = bench_model(args.arch, args.seed, args.workdir)
    emit({"bench": "model", **info})
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        clips = make_clips(Path(tmp) / "clips", args.clips, (1, 1))
        bench_transcription(model_path, clips, args)
        if args.long:
            bench_long(model_path, clips, Path(tmp), args)


if __name__ == "__main__":
    main()
