"""Throughput of ``medasr serve`` under concurrent load, against the model alone, as JSON lines.

In one run, on one model (a FastConformer-TDT built with
``medasr_cli.train.arch``, saved as ``.nemo`` in a temp dir) and one set of
espeak-ng clips (several sentences each, 16 kHz WAV):

* ``offline_batched``: the model alone, NeMo ``transcribe()`` on pre-decoded
  arrays in batches of ``--batch-size`` (with timestamps, as the server does);
* ``server_batched``: ``medasr serve --max-batch-size N`` in its own process,
  ``--clients`` concurrent HTTP clients posting the WAV files;
* ``server_batch1``: the same with batching off (``--max-batch-size 1``).

RTFx = seconds of audio transcribed per wall-clock second. The three are
measured in interleaved rounds (both servers stay up; one runs at a time) and
the median is reported, so a shared machine's drifting load hits all three
alike. The server lines carry p50/p95 request latency. The last line compares them with the targets
(server batched >= 80% of offline batched, and >= 2x server without batching).
Numbers only: it never fails on time. Run: ``python bench/serve_load.py``
(a few minutes on 2 CPU cores; ``--device cuda`` on a GPU).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import soundfile as sf

SENTENCES = [
    "The patient was started on metoprolol twice daily for rate control.",
    "Echocardiogram showed mild mitral regurgitation with preserved ejection fraction.",
    "Continue apixaban and review in the anticoagulation clinic in two weeks.",
    "She has a long history of Crohn's disease treated with adalimumab.",
    "Haemoglobin was low on admission and ferritin was consistent with iron deficiency.",
    "No tenderness in the right iliac fossa and bowel sounds were normal.",
    "Chest X-ray showed bibasal consolidation so we started intravenous antibiotics.",
]
MODEL_ID = "bench-model"


def emit(line: dict[str, Any]) -> None:
    """One JSON line on stdout (the benchmark's only output)."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def machine(device: str, threads: int) -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    return {"bench": "machine", "cpu": cpu, "cpus": os.cpu_count(), "gpu": gpu, "device": device,
            "torch_threads": threads, "torch": torch.__version__, "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0]}  # fmt: skip


def make_clips(folder: Path, n: int, sentences: tuple[int, int]) -> list[Path]:
    """``n`` WAVs of ``sentences[0]``..``sentences[1]`` espeak sentences each (about 4 s per sentence)."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed (apt-get install espeak-ng)")
    from scipy.signal import resample_poly

    clips = []
    for i in range(n):
        lo, hi = sentences
        text = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(lo + i % (hi - lo + 1)))
        raw = folder / f"raw{i}.wav"
        voice = ("en-us", "en-gb")[i % 2]
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
        audio, sr = sf.read(raw, dtype="float32")
        audio = resample_poly(audio, 16000 // np.gcd(sr, 16000), sr // np.gcd(sr, 16000))
        clips.append(folder / f"clip{i:03d}.wav")
        sf.write(clips[-1], audio.astype(np.float32), 16000, subtype="PCM_16")
        raw.unlink()
    return clips


def build_model(folder: Path, arch: str) -> Path:
    from medasr_cli.train.arch import build_model as build
    from medasr_cli.train.arch import train_tokenizer

    tok = train_tokenizer(SENTENCES * 4, folder / "tokenizer", vocab_size=64)
    path = folder / "model.nemo"
    build(arch, tok).save_to(str(path))
    return path


class Offline:
    """The model alone in this process: NeMo ``transcribe()`` on pre-decoded arrays."""

    def __init__(self, model_path: Path, clips: list[Path], args: argparse.Namespace) -> None:
        import torch

        from medasr_cli.core.asr_model import load_asr_model

        torch.set_num_threads(args.threads)
        self.model = load_asr_model(model_path, args.device)
        self.arrays = [sf.read(c, dtype="float32")[0] for c in clips] * args.repeat
        self.batch = args.batch_size
        self.cuda = args.device.startswith("cuda")
        self.run()  # warm-up

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if not self.cuda:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)

    def run(self) -> dict[str, Any]:
        from medasr_cli.core.asr_model import transcribe_arrays

        started = time.perf_counter()
        with self._autocast():  # the server's default precision: bf16 autocast on CUDA
            for i in range(0, len(self.arrays), self.batch):
                chunk = self.arrays[i : i + self.batch]
                transcribe_arrays(self.model, chunk, batch_size=self.batch, timestamps=True)
        wall = time.perf_counter() - started
        audio_s = sum(len(a) for a in self.arrays) / 16000
        return {"wall_s": wall, "audio_s": audio_s, "rtfx": audio_s / wall}


def start_server(
    model_path: Path, port: int, batch: int, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    """``medasr serve`` in its own process (the clients here must not share its GIL)."""
    cmd = [sys.executable, "-m", "medasr_cli", "serve", "--model", str(model_path), "--port", str(port),
           "--model-id", MODEL_ID, "--max-batch-size", str(batch), "--max-wait-ms", str(args.max_wait_ms),
           "--device", args.device, "--cpu-threads", str(args.threads), "--queue-size", "1024",
           "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("server did not become ready")


def load(
    url: str, clips: list[Path], clients: int, repeat: int
) -> tuple[float, list[float], float]:
    """Post every clip ``repeat`` times from ``clients`` threads; (wall s, latencies, audio s)."""
    payloads = [(c.read_bytes(), sf.info(str(c)).duration) for c in clips] * repeat
    pool_clients = [httpx.Client(timeout=600) for _ in range(clients)]

    def one(i: int) -> float:
        data, _ = payloads[i]
        t0 = time.perf_counter()
        r = pool_clients[i % clients].post(url, data={"model": MODEL_ID},
                                           files={"file": ("clip.wav", data, "audio/wav")})  # fmt: skip
        r.raise_for_status()
        return time.perf_counter() - t0

    with cf.ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        latencies = list(pool.map(one, range(len(payloads))))
        wall = time.perf_counter() - started
    for c in pool_clients:
        c.close()
    return wall, latencies, sum(d for _, d in payloads)


def mean_batch(url: str) -> float:
    """Mean model batch size so far, from the server's Prometheus histogram."""
    values = {}
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith(("medasr_batch_size_sum ", "medasr_batch_size_count ")):
            name, value = line.split()
            values[name] = float(value)
    count = values.get("medasr_batch_size_count", 0.0)
    return round(values.get("medasr_batch_size_sum", 0.0) / count, 2) if count else 0.0


def server_round(port: int, clips: list[Path], args: argparse.Namespace) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/v1/audio/transcriptions"
    wall, lat, audio_s = load(url, clips, args.clients, args.repeat)
    return {"wall_s": wall, "audio_s": audio_s, "rtfx": audio_s / wall, "latencies": lat}


def summarise(name: str, rounds: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """One JSON line: median RTFx over the rounds (and p50/p95 over all their requests)."""
    rtfx = [r["rtfx"] for r in rounds]
    line: dict[str, Any] = {"bench": name, **extra, "rounds": len(rounds),
                            "audio_s_per_round": round(rounds[0]["audio_s"], 1),
                            "rtfx": round(float(np.median(rtfx)), 1),
                            "rtfx_rounds": [round(x, 1) for x in rtfx]}  # fmt: skip
    lat = [x for r in rounds for x in r.get("latencies", [])]
    if lat:
        line["p50_s"] = round(float(np.percentile(lat, 50)), 3)
        line["p95_s"] = round(float(np.percentile(lat, 95)), 3)
    return line


def run_rounds(model_path: Path, clips: list[Path], args: argparse.Namespace) -> None:
    """Interleave the three measurements round by round, so drifting machine load hits all alike."""
    offline = Offline(model_path, clips, args)
    ports = {"batched": args.port, "batch1": args.port + 1}
    procs = {
        "batched": start_server(model_path, ports["batched"], args.batch_size, args),
        "batch1": start_server(model_path, ports["batch1"], 1, args),
    }
    rounds: dict[str, list[dict[str, Any]]] = {"offline": [], "batched": [], "batch1": []}
    try:
        for key in ("batched", "batch1"):  # warm both servers
            load(f"http://127.0.0.1:{ports[key]}/v1/audio/transcriptions", clips, args.clients, 1)
        for _ in range(args.rounds):
            rounds["offline"].append(offline.run())
            rounds["batched"].append(server_round(ports["batched"], clips, args))
            rounds["batch1"].append(server_round(ports["batch1"], clips, args))
        mean_b = mean_batch(f"http://127.0.0.1:{ports['batched']}/metrics")
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=60)
    common = {"clients": args.clients, "requests_per_round": len(offline.arrays)}
    emit(summarise("offline_batched", rounds["offline"], {"batch_size": args.batch_size}))
    emit(summarise("server_batched", rounds["batched"],
                   {"max_batch_size": args.batch_size, **common, "mean_batch": mean_b}))  # fmt: skip
    emit(summarise("server_batch1", rounds["batch1"], {"max_batch_size": 1, **common}))
    vs_off = [
        b["rtfx"] / o["rtfx"] for b, o in zip(rounds["batched"], rounds["offline"], strict=True)
    ]
    vs_b1 = [
        b["rtfx"] / s["rtfx"] for b, s in zip(rounds["batched"], rounds["batch1"], strict=True)
    ]
    med_off, med_b1 = float(np.median(vs_off)), float(np.median(vs_b1))
    emit({"bench": "summary", "server_vs_offline": round(med_off, 2),
          "batched_vs_batch1": round(med_b1, 2),
          "server_vs_offline_rounds": [round(x, 2) for x in vs_off],
          "batched_vs_batch1_rounds": [round(x, 2) for x in vs_b1],
          "targets_met": med_off >= 0.8 and med_b1 >= 2.0})  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="tiny", help="medasr_cli.train.arch architecture")
    ap.add_argument("--clips", type=int, default=16, help="distinct espeak clips")
    ap.add_argument(
        "--sentences",
        default="1-1",
        help="sentences per clip, MIN-MAX: 1-1 = short requests (~3-6 s), "
        "2-4 = dictations of ~6-15 s",
    )
    ap.add_argument("--repeat", type=int, default=16, help="requests per clip")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=16, help="offline batch = server max batch")
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (model alone and server)"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--port", type=int, default=18777, help="this port and the next one")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument(
        "--clips-dir",
        type=Path,
        help="use the 16 kHz WAVs of this folder (the first --clips of them) instead of "
        "rendering espeak clips (for machines without espeak-ng)",
    )
    ap.add_argument("--model", type=Path, help="an existing .nemo instead of a fresh --arch model")
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
            clips = make_clips(folder, args.clips, (int(lo), int(hi or lo)))
            source = f"espeak, {args.sentences} sentence(s) per clip"
        model_path = args.model or build_model(folder, args.arch)
        emit({**machine(args.device, args.threads), "model": str(args.model or args.arch),
              "clips": source, "n_clips": len(clips)})  # fmt: skip
        run_rounds(model_path, clips, args)


if __name__ == "__main__":
    main()
