"""Throughput of ``medasr serve`` under concurrent load, against the model alone, as JSON lines.

In one run, on one model (the seeded benchmark model of ``bench/common.py``,
the same one ``bench/eval_speed.py`` uses; ``--model`` for another) and one set
of espeak-ng clips (16 kHz WAV):

* ``model_alone``: ``ModelRunner.infer`` (the call the server's model thread
  makes, :mod:`medasr_cli.infer.runner`) on pre-decoded arrays in batches of
  ``--batch-size``, in this process;
* ``server_batched``: ``medasr serve --max-batch-size N`` in its own process,
  ``--clients`` concurrent HTTP clients posting the WAV files;
* ``server_batch1``: the same with batching off (``--max-batch-size 1``);
* ``model_alone_batch1``: the model alone in batches of one, so that
  ``model_alone_batched_vs_batch1`` in the summary shows how much batching can
  gain on this device at all (the ceiling of ``batched_vs_batch1``).

RTFx = seconds of audio transcribed per wall-clock second. Beside it,
``tokens_per_audio_s``: tokens of the transcripts (the model's own tokenizer)
per second of audio. An untrained model's decoding cost depends on how much it
emits, so this says whether two runs' models did the same work. The four are
measured in interleaved rounds (both servers stay up; one runs at a time) and
the median is reported, so a shared machine's drifting load hits all four
alike. The server lines carry p50/p95 request latency, the mean batch size
(from the server's ``/metrics``), the server's and the clients' CPU seconds.
The summary line compares them with the targets (server batched >= 0.8x the
model alone, and >= 2x the server without batching).

``--long`` adds the long-recording cases: one 30-minute file from one client,
and 16 concurrent 5-minute files (``--long-s``, ``--many``, ``--many-s``), each
on a fresh server (so its peak RSS, VmHWM, is that case's): RTFx, peak RSS,
and whether each served text equals what ``eval --model`` gives for the file
(``transcribe_paths`` through a ``ModelRunner`` with the same settings, in a
fresh process whose RTFx and peak RSS are reported too). ``--long-s 60,600,3600``
runs one single-client case per length, ``--many 0`` drops the concurrent one,
``--rounds 0`` the short rounds. With ``--device cuda`` the long lines add the
server's GPU memory in use after its requests (nvidia-smi) and eval's peak
allocated and reserved GPU memory (torch.cuda).

Numbers only: it never fails on time. Run: ``python bench/serve_load.py``
(a few minutes on 2 CPU cores; ``--device cuda`` on a GPU). A quick check:
``--clips 4 --repeat 2 --rounds 1 --long --long-s 60 --many 2 --many-s 30``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf
from common import (
    ModelAlone,
    bench_model,
    count_tokens,
    emit,
    eval_files,
    gpu_used_mb,
    load_avg,
    long_recording,
    machine,
    make_clips,
    peak_rss_mb,
    seconds_list,
)

from medasr_cli.infer.runner import ModelRunner, RunnerOptions

MODEL_ID = "bench-model"


def start_server(
    model_path: Path, port: int, batch: int, args: argparse.Namespace, *extra: str
) -> subprocess.Popen[bytes]:
    """``medasr serve`` in its own process (the clients here must not share its GIL)."""
    cmd = [sys.executable, "-m", "medasr_cli", "serve", "--model", str(model_path), "--port", str(port),
           "--model-id", MODEL_ID, "--max-batch-size", str(batch), "--max-wait-ms", str(args.max_wait_ms),
           "--device", args.device, "--cpu-threads", str(args.threads), "--queue-size", "1024",
           "--full-attention-s", str(args.full_attention_s),
           "--max-single-pass-s", str(args.max_single_pass_s), "--log-level", "warning",
           *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {' '.join(cmd)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not become ready")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load(url: str, files: list[Path], clients: int, repeat: int) -> dict[str, Any]:
    """Post every file ``repeat`` times from ``clients`` threads; wall, latencies, audio, texts."""
    payloads = [(f.read_bytes(), sf.info(str(f)).duration) for f in files] * repeat
    pool_clients = [httpx.Client(timeout=3600) for _ in range(clients)]

    def one(i: int) -> tuple[float, str]:
        data, _ = payloads[i]
        t0 = time.perf_counter()
        r = pool_clients[i % clients].post(url, data={"model": MODEL_ID},
                                           files={"file": ("audio.flac", data)})  # fmt: skip
        r.raise_for_status()
        return time.perf_counter() - t0, str(r.json()["text"])

    cpu = time.process_time()
    with cf.ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        results = list(pool.map(one, range(len(payloads))))
        wall = time.perf_counter() - started
    for c in pool_clients:
        c.close()
    audio_s = sum(d for _, d in payloads)
    return {"wall_s": wall, "audio_s": audio_s, "rtfx": audio_s / wall,
            "latencies": [lat for lat, _ in results], "texts": [t for _, t in results],
            "client_cpu_s": time.process_time() - cpu}  # fmt: skip


def scrape(port: int) -> dict[str, float]:
    """The server's batch-size histogram sum/count and its process CPU seconds."""
    values = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        name, _, value = line.partition(" ")
        if name in (
            "medasr_batch_size_sum",
            "medasr_batch_size_count",
            "process_cpu_seconds_total",
        ):
            values[name] = float(value)
    return values


def server_round(port: int, clips: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    before = scrape(port)
    res = load(f"http://127.0.0.1:{port}/v1/audio/transcriptions", clips, args.clients, args.repeat)
    after = scrape(port)
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    count = delta.get("medasr_batch_size_count", 0.0)
    res["mean_batch"] = delta.get("medasr_batch_size_sum", 0.0) / count if count else 0.0
    res["server_cpu_s"] = delta.get("process_cpu_seconds_total", 0.0)
    return res


def _median(rounds: list[dict[str, Any]], key: str, digits: int = 1) -> float:
    return round(float(np.median([r[key] for r in rounds])), digits)


def summarise(name: str, rounds: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """One JSON line: median RTFx over the rounds (and p50/p95 over all their requests)."""
    line: dict[str, Any] = {"bench": name, **extra, "rounds": len(rounds),
                            "audio_s_per_round": round(rounds[0]["audio_s"], 1),
                            "rtfx": _median(rounds, "rtfx"),
                            "rtfx_rounds": [round(r["rtfx"], 1) for r in rounds],
                            "tokens_per_audio_s": _median(rounds, "tokens_per_audio_s", 2)}  # fmt: skip
    lat = [x for r in rounds for x in r.get("latencies", [])]
    if lat:
        line["p50_s"] = round(float(np.percentile(lat, 50)), 3)
        line["p95_s"] = round(float(np.percentile(lat, 95)), 3)
    for key in ("mean_batch", "cpu_s", "server_cpu_s", "client_cpu_s"):
        if key in rounds[0]:
            line[key] = _median(rounds, key, 2)
    line["load_avg_1m"] = load_avg()
    return line


def run_rounds(
    runner: ModelRunner, model_path: Path, clips: list[Path], args: argparse.Namespace
) -> None:
    """Interleave the four measurements round by round, so drifting machine load hits all alike."""
    alone = ModelAlone(runner, clips, args.repeat, args.batch_size)
    alone1 = ModelAlone(runner, clips, args.repeat, 1)
    ports = {"batched": args.port, "batch1": args.port + 1}
    procs = {
        "batched": start_server(model_path, ports["batched"], args.batch_size, args),
        "batch1": start_server(model_path, ports["batch1"], 1, args),
    }
    rounds: dict[str, list[dict[str, Any]]] = {
        "alone": [],
        "alone1": [],
        "batched": [],
        "batch1": [],
    }
    try:
        for key in ("batched", "batch1"):  # warm both servers
            load(f"http://127.0.0.1:{ports[key]}/v1/audio/transcriptions", clips, args.clients, 1)
        for _ in range(args.rounds):
            rounds["alone"].append(alone.run())
            rounds["alone1"].append(alone1.run())
            rounds["batched"].append(server_round(ports["batched"], clips, args))
            rounds["batch1"].append(server_round(ports["batch1"], clips, args))
    finally:
        for proc in procs.values():
            stop_server(proc)
    for r in (x for rs in rounds.values() for x in rs):  # outside the timed parts
        r["tokens_per_audio_s"] = count_tokens(alone.runner.tokenize, r["texts"]) / r["audio_s"]
    ref = rounds["alone"][0]["texts"]
    same = {k: float(np.mean([t == u for r in rounds[k] for t, u in zip(r["texts"], ref, strict=True)]))
            for k in ("alone1", "batched", "batch1")}  # fmt: skip
    shared = {"clients": args.clients, "requests_per_round": len(alone.items)}
    emit(summarise("model_alone", rounds["alone"], {"batch_size": args.batch_size}))
    emit(summarise("model_alone_batch1", rounds["alone1"], {"batch_size": 1,
                   "same_text_as_model_alone": round(same["alone1"], 3)}))  # fmt: skip
    emit(summarise("server_batched", rounds["batched"], {"max_batch_size": args.batch_size,
                   **shared, "same_text_as_model_alone": round(same["batched"], 3)}))  # fmt: skip
    emit(summarise("server_batch1", rounds["batch1"], {"max_batch_size": 1, **shared,
                   "same_text_as_model_alone": round(same["batch1"], 3)}))  # fmt: skip
    vs_alone = [
        b["rtfx"] / o["rtfx"] for b, o in zip(rounds["batched"], rounds["alone"], strict=True)
    ]
    vs_b1 = [
        b["rtfx"] / s["rtfx"] for b, s in zip(rounds["batched"], rounds["batch1"], strict=True)
    ]
    model_b1 = [
        a["rtfx"] / s["rtfx"] for a, s in zip(rounds["alone"], rounds["alone1"], strict=True)
    ]
    med_alone, med_b1 = float(np.median(vs_alone)), float(np.median(vs_b1))
    emit({"bench": "summary", "server_vs_model_alone": round(med_alone, 2),
          "batched_vs_batch1": round(med_b1, 2),
          "model_alone_batched_vs_batch1": round(float(np.median(model_b1)), 2),
          "server_vs_model_alone_rounds": [round(x, 2) for x in vs_alone],
          "batched_vs_batch1_rounds": [round(x, 2) for x in vs_b1],
          "targets_met": med_alone >= 0.8 and med_b1 >= 2.0})  # fmt: skip


def run_long(
    model_path: Path, clips: list[Path], folder: Path, tokenize: Any, args: argparse.Namespace
) -> None:
    """One long file from one client, then many shorter long files at once: server against eval."""
    cases = [
        (f"long_1x{sec / 60:g}min", [long_recording(clips, sec, folder / f"long{sec:g}.flac")])
        for sec in args.long_s
    ]
    if args.many > 0:
        many = [long_recording(clips, args.many_s, folder / f"many{i:02d}.flac", start=i)
                for i in range(args.many)]  # fmt: skip
        cases.append((f"long_{args.many}x{args.many_s / 60:g}min", many))
    for name, files in cases:
        spec = {"model": str(model_path), "paths": [str(f) for f in files], "device": args.device,
                "threads": args.threads, "batch_size": args.batch_size,
                "full_attention_s": args.full_attention_s,
                "max_single_pass_s": args.max_single_pass_s}  # fmt: skip
        ev = eval_files(spec)
        upload_mb = math.ceil(max(f.stat().st_size for f in files) / 2**20) + 10
        proc = start_server(model_path, args.port + 2, args.batch_size, args,
                            "--max-upload-mb", str(upload_mb))  # fmt: skip
        try:
            ready_rss = peak_rss_mb(proc.pid)
            url = f"http://127.0.0.1:{args.port + 2}/v1/audio/transcriptions"
            res = load(url, files, len(files), 1)
            served_peak = peak_rss_mb(proc.pid)
            gpu_mb = gpu_used_mb(proc.pid) if args.device.startswith("cuda") else None
            mean_batch = scrape(args.port + 2)
        finally:
            stop_server(proc)
        count = mean_batch.get("medasr_batch_size_count", 0.0)
        same = [s == e for s, e in zip(res["texts"], ev["texts"], strict=True)]
        emit({"bench": name, "files": len(files), "clients": len(files),
              "audio_s": round(res["audio_s"], 1),
              "tokens_per_audio_s": round(count_tokens(tokenize, res["texts"]) / res["audio_s"], 2),
              "server_rtfx": round(res["rtfx"], 1), "server_wall_s": round(res["wall_s"], 1),
              "server_peak_rss_mb": served_peak, "server_ready_rss_mb": ready_rss,
              "server_mean_batch": round(mean_batch.get("medasr_batch_size_sum", 0.0) / count, 2)
              if count else 0.0,
              "eval_rtfx": round(ev["rtfx"], 1), "eval_wall_s": round(ev["wall_s"], 1),
              "eval_peak_rss_mb": ev["peak_rss_mb"],
              **({"server_gpu_mb_after": gpu_mb, "eval_peak_gpu_alloc_mb": ev["peak_gpu_alloc_mb"],
                  "eval_peak_gpu_reserved_mb": ev["peak_gpu_reserved_mb"]}
                 if args.device.startswith("cuda") else {}),
              "same_text_as_eval": all(same), "same_text_files": f"{sum(same)}/{len(same)}",
              "words_per_file": [len(t.split()) for t in res["texts"]][:4],
              "full_attention_s": args.full_attention_s,
              "max_single_pass_s": args.max_single_pass_s,
              "load_avg_1m": load_avg()})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="tiny", help="medasr_cli.train.arch architecture")
    ap.add_argument("--seed", type=int, default=0, help="seed of the benchmark model's weights")
    ap.add_argument(
        "--workdir", type=Path, help="cache of seeded models (default ~/.cache/medasr-bench)"
    )
    ap.add_argument(
        "--model", type=Path, help="an existing .nemo instead of the seeded --arch model"
    )
    ap.add_argument("--clips", type=int, default=16, help="distinct espeak clips")
    ap.add_argument("--sentences", default="1-1", help="sentences per clip, MIN-MAX: 1-1 = short "
                    "requests (~3-6 s), 2-4 = dictations of ~8-18 s")  # fmt: skip
    ap.add_argument("--repeat", type=int, default=16, help="requests per clip and round")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument(
        "--batch-size", type=int, default=16, help="model-alone batch = server max batch"
    )
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (model alone and server)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--port", type=int, default=18777, help="this port and the next two")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported); "
                    "0 = none (only --long)")  # fmt: skip
    ap.add_argument("--clips-dir", type=Path, help="use the 16 kHz WAVs of this folder (the first "
                    "--clips of them) instead of rendering espeak clips (no espeak-ng)")  # fmt: skip
    ap.add_argument(
        "--full-attention-s",
        type=float,
        help="fixed for every runner here (default: what this process's runner picks)",
    )
    ap.add_argument(
        "--max-single-pass-s",
        type=float,
        help="fixed for every runner here (default: what this process's runner picks)",
    )
    ap.add_argument("--long", action="store_true", help="add the long-recording cases")
    ap.add_argument("--long-s", type=seconds_list, default=[1800.0],
                    help="length of the one long file; several, comma-separated (60,600,3600), "
                    "for one single-client case each")  # fmt: skip
    ap.add_argument(
        "--many",
        type=int,
        default=16,
        help="files posted at once in the last long case (0: no such case)",
    )
    ap.add_argument("--many-s", type=float, default=300.0, help="length of each of those files")
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        folder = Path(tmp)
        if args.clips_dir is not None:
            clips = sorted(args.clips_dir.glob("*.wav"))[: args.clips]
            if not clips:
                raise SystemExit(f"{args.clips_dir}: no .wav files")
            source = str(args.clips_dir)
        else:
            lo, _, hi = args.sentences.partition("-")
            clips = make_clips(folder / "clips", args.clips, (int(lo), int(hi or lo)))
            source = f"espeak, {args.sentences} sentence(s) per clip"
        if args.model is not None:
            model_path, info = args.model, {"model": str(args.model)}
        else:
            model_path, info = bench_model(args.arch, args.seed, args.workdir)
        runner = ModelRunner(RunnerOptions(
            model=str(model_path), device=args.device, cpu_threads=args.threads,
            full_attention_s=args.full_attention_s, max_single_pass_s=args.max_single_pass_s,
        ))  # fmt: skip
        runner.load()
        args.full_attention_s = runner.limits.full_attention_s
        args.max_single_pass_s = runner.limits.single_pass_s
        emit({**machine(args.device, args.threads), "model": info, "clips": source,
              "n_clips": len(clips), "precision": runner.precision_name(),
              "full_attention_s": args.full_attention_s,
              "max_single_pass_s": args.max_single_pass_s})  # fmt: skip
        if args.rounds > 0:
            run_rounds(runner, model_path, clips, args)
        if args.long:
            run_long(model_path, clips, folder, runner.tokenize, args)


if __name__ == "__main__":
    main()
