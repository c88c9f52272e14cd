"""What the inference benchmarks share: one seeded model, espeak clips, eval in a child process.

``bench/serve_load.py`` and ``bench/eval_speed.py`` both transcribe with
:func:`bench_model`, so their RTFx figures come from the same weights. An
untrained model's decoding cost depends on how many tokens it happens to emit,
so every weight here comes from a fixed torch seed, the tokenizer from fixed
text, and the joint is re-initialised at unit output scale (as
``tests/helpers.py`` ``perturb_model`` does) so the model emits a steady stream
of tokens rather than almost none. The ``.nemo`` is cached under
``~/.cache/medasr-bench/<arch>-seed<seed>-r<recipe>/`` (``--workdir`` or
``MEDASR_BENCH_CACHE`` to move it) with a fingerprint of its weights, which
the benchmarks print, so two runs can be checked to have used the same model.

Run as a script (``python bench/common.py eval-files SPEC_JSON``) it is the
``eval --model`` side of the long-recording cases: a fresh process loads a
:class:`~medasr_cli.infer.runner.ModelRunner` and transcribes files with
:func:`~medasr_cli.infer.files.transcribe_paths`, then prints one JSON line
(texts, seconds without the model load, peak RSS of that process).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
"""What the clips say, and the tokenizer's training text (x4)."""

VOCAB_SIZE = 64
RECIPE = 1
"""Bump when :func:`_build` changes, so cached models of the old recipe are not reused."""

SAMPLE_RATE = 16000


def emit(line: dict[str, Any]) -> None:
    """One JSON line on stdout (the benchmarks' only output)."""
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def load_avg() -> float:
    """The machine's 1-minute load average (the VM is shared)."""
    return round(os.getloadavg()[0], 2)


def machine(device: str, threads: int) -> dict[str, Any]:
    """The ``machine`` line: CPU, GPU, versions and load."""
    import torch

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"bench": "machine", "cpu": cpu, "cpus": os.cpu_count(), "mem_gib": round(mem_gib, 1),
            "gpu": gpu, "device": device, "torch_threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "load_avg_1m": load_avg()}  # fmt: skip


# --- the model --------------------------------------------------------------------------------


def cache_root(workdir: Path | None = None) -> Path:
    """Where seeded models are kept: ``workdir``, ``$MEDASR_BENCH_CACHE`` or ~/.cache."""
    if workdir is not None:
        return workdir
    env = os.environ.get("MEDASR_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "medasr-bench"


def bench_model(arch: str, seed: int, workdir: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """The seeded ``arch`` model as a cached ``.nemo``, and its description (with fingerprint)."""
    folder = cache_root(workdir) / f"{arch}-seed{seed}-r{RECIPE}"
    path, info_path = folder / "model.nemo", folder / "model.json"
    if path.exists() and info_path.exists():
        return path, json.loads(info_path.read_text())
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-") as tmp:
        staging = Path(tmp) / "model"
        staging.mkdir()
        info = _build(arch, seed, staging)
        (staging / "model.json").write_text(json.dumps(info) + "\n")
        if not folder.exists():  # another run may have built it meanwhile: keep the first
            staging.rename(folder)
    return path, json.loads(info_path.read_text())


def _build(arch: str, seed: int, out: Path) -> dict[str, Any]:
    """Build, perturb and save the model; every random draw comes from ``seed``."""
    import torch

    from medasr_cli.core.asr_model import quiet_nemo
    from medasr_cli.train.arch import build_model, train_tokenizer

    quiet_nemo()
    tok = train_tokenizer(SENTENCES * 4, out / "tokenizer", vocab_size=VOCAB_SIZE)
    torch.manual_seed(seed)
    model = build_model(arch, tok)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # untrained output at unit scale: many tokens, the same every run
        for p in model.joint.parameters():
            std = 1.0 / p.shape[-1] ** 0.5 if p.dim() > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=gen) * std)
        for p in model.encoder.parameters():
            if p.dim() > 1:
                p.mul_(2.0)
    model.eval()
    model.save_to(str(out / "model.nemo"))
    shutil.rmtree(out / "tokenizer")
    return {"arch": arch, "seed": seed, "recipe": RECIPE, "vocab": model.tokenizer.vocab_size,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
            "weights_sha256": weights_fingerprint(model)}  # fmt: skip


def weights_fingerprint(model: Any) -> str:
    """First 16 hex digits of the SHA-256 of the tokenizer's pieces and every weight."""
    h = hashlib.sha256("\n".join(model.tokenizer.vocab).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def count_tokens(tokenize: Any, texts: Sequence[str]) -> int:
    """Tokens of ``texts`` in the model's tokenizer (``ModelRunner.tokenize``)."""
    return sum(len(tokenize(t)) for t in texts)


class ModelAlone:
    """The model alone: ``ModelRunner.infer`` (the server's model call) on pre-decoded arrays.

    The clips ``repeat`` times over, in that order, in batches of ``batch``:
    the "model alone" that both benchmarks compare against.
    """

    def __init__(self, runner: Any, clips: Sequence[Path], repeat: int, batch: int) -> None:
        from medasr_cli.core.audio import decode_audio
        from medasr_cli.infer.runner import InferItem

        self.runner = runner
        self.items = [InferItem(decode_audio(c)) for c in clips] * repeat
        self.batch = batch
        runner.infer(self.items[:batch])  # warm-up

    def run(self) -> dict[str, Any]:
        """One pass over every item: wall and CPU seconds, audio seconds, RTFx, texts."""
        cpu, started = time.process_time(), time.perf_counter()
        texts: list[str] = []
        for i in range(0, len(self.items), self.batch):
            texts += [t.text for t in self.runner.infer(self.items[i : i + self.batch])]
        wall = time.perf_counter() - started
        audio_s = sum(it.duration for it in self.items)
        return {"wall_s": wall, "audio_s": audio_s, "rtfx": audio_s / wall,
                "cpu_s": time.process_time() - cpu, "texts": texts}  # fmt: skip


# --- audio ------------------------------------------------------------------------------------


def make_clips(folder: Path, n: int, sentences: tuple[int, int]) -> list[Path]:
    """``n`` 16 kHz WAVs of ``sentences[0]``..``sentences[1]`` espeak sentences (~4 s each)."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed (apt-get install espeak-ng)")
    from scipy.signal import resample_poly

    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    lo, hi = sentences
    for i in range(n):
        text = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(lo + i % (hi - lo + 1)))
        raw = folder / f"raw{i}.wav"
        voice = ("en-us", "en-gb")[i % 2]
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
        audio, sr = sf.read(raw, dtype="float32")
        g = np.gcd(sr, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, sr // g)
        clips.append(folder / f"clip{i:03d}.wav")
        sf.write(clips[-1], audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        raw.unlink()
    return clips


def long_recording(clips: Sequence[Path], seconds: float, path: Path, start: int = 0) -> Path:
    """``seconds`` of the clips in turn from clip ``start``, 0.4 s of silence apart, as FLAC."""
    gap = np.zeros(int(0.4 * SAMPLE_RATE), dtype=np.float32)
    parts, total, i = [], 0, start
    need = int(seconds * SAMPLE_RATE)
    while total < need:
        audio = sf.read(clips[i % len(clips)], dtype="float32")[0]
        parts += [audio, gap]
        total += len(audio) + len(gap)
        i += 1
    sf.write(path, np.concatenate(parts)[:need], SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return path


# --- processes --------------------------------------------------------------------------------


def peak_rss_mb(pid: int | None = None) -> int:
    """Peak resident memory (VmHWM) of a process, in MiB."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    kb = next(ln for ln in status.splitlines() if ln.startswith("VmHWM")).split()[1]
    return int(kb) // 1024


def gpu_used_mb(pid: int) -> int | None:
    """GPU memory a process holds now, as nvidia-smi reports it (None without nvidia-smi).

    PyTorch's caching allocator keeps what it reserved, so after a request this is about
    the peak reservation of that request plus the CUDA context.
    """
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        p, _, mb = line.partition(",")
        if p.strip() == str(pid):
            return int(mb.strip())
    return None


def seconds_list(text: str) -> list[float]:
    """``"60,600,3600"`` -> [60.0, 600.0, 3600.0] (an argparse type)."""
    return [float(x) for x in text.split(",") if x.strip()]


def eval_files(spec: dict[str, Any]) -> dict[str, Any]:
    """``eval --model`` on some files in a fresh process (see the module doc); its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "eval-files", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"eval child failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _eval_files_child(spec: dict[str, Any]) -> None:
    from medasr_cli.core.asr_model import quiet_nemo
    from medasr_cli.infer.files import BatchLimits, transcribe_paths
    from medasr_cli.infer.runner import ModelRunner, RunnerOptions

    quiet_nemo()
    runner = ModelRunner(RunnerOptions(
        model=spec["model"], device=spec["device"], cpu_threads=spec["threads"],
        full_attention_s=spec.get("full_attention_s"),
        max_single_pass_s=spec.get("max_single_pass_s"),
    ))  # fmt: skip
    load_s = runner.load()
    limits = BatchLimits(spec["batch_size"], spec.get("max_batch_audio_s", 1440.0))
    paths = spec["paths"]
    durations = [sf.info(p).duration for p in paths]
    started = time.perf_counter()
    out = transcribe_paths(runner, paths, durations, limits=limits)
    wall = time.perf_counter() - started
    texts = [t.text for t in out]
    audio_s = sum(durations)
    gpu: dict[str, float | None] = {"peak_gpu_alloc_mb": None, "peak_gpu_reserved_mb": None}
    if runner.device.startswith("cuda"):
        import torch

        gpu = {"peak_gpu_alloc_mb": round(torch.cuda.max_memory_allocated() / 2**20),
               "peak_gpu_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20)}  # fmt: skip
    print(json.dumps({
        "texts": texts, "wall_s": wall, "audio_s": audio_s, "load_s": load_s,
        "rtfx": audio_s / wall, "tokens": count_tokens(runner.tokenize, texts),
        "peak_rss_mb": peak_rss_mb(), "full_attention_s": runner.limits.full_attention_s,
        "max_single_pass_s": runner.limits.single_pass_s, **gpu,
    }))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "eval-files":
        _eval_files_child(json.loads(sys.argv[2]))
    else:
        raise SystemExit("usage: python bench/common.py eval-files SPEC_JSON (used by the benches)")
