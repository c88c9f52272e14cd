"""Shared fixtures: real speech from espeak-ng, a tiny NeMo FastConformer-TDT, free ports.

Everything is built here from scratch: no model or data is downloaded.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SENTENCES = [
    "The patient was started on metoprolol twice daily.",
    "Echocardiogram showed mild mitral regurgitation.",
    "Continue apixaban and review in clinic.",
    "She has a history of Crohn's disease.",
    "Haemoglobin was low on admission.",
    "No tenderness in the right iliac fossa.",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests on machines without CUDA (CI runs everything else)."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def espeak_to_wav(text: str, path: Path, voice: str = "en-us", rate: int = 16000) -> Path:
    """Speak ``text`` with espeak-ng and write a mono WAV at ``rate`` Hz."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    audio, sr = sf.read(raw, dtype="float32")
    raw.unlink()
    if sr != rate:
        from scipy.signal import resample_poly

        g = np.gcd(sr, rate)
        audio = resample_poly(audio, rate // g, sr // g).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 16 kHz mono espeak-ng WAVs with sidecar .txt transcripts."""
    root = tmp_path_factory.mktemp("speech")
    for i, text in enumerate(SENTENCES):
        voice = "en-us" if i % 2 == 0 else "en-gb"
        espeak_to_wav(text, root / f"utt{i:02d}.wav", voice=voice)
        (root / f"utt{i:02d}.txt").write_text(text + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[list[str]], Path]:
    """Build (untrained) tiny FastConformer-TDT ``.nemo`` files from a config dict."""
    pytest.importorskip("nemo.collections.asr")
    from medasr_cli.train.arch import build_model, train_tokenizer

    def make(texts: list[str], arch: str = "tiny") -> Path:
        root = tmp_path_factory.mktemp("tiny_model")
        tok = train_tokenizer(texts, root / "tokenizer", vocab_size=64)
        model = build_model(arch, tok)
        path = root / "model.nemo"
        model.save_to(str(path))
        return path

    return make


@pytest.fixture(scope="session")
def tiny_model(tiny_model_factory: Callable[[list[str]], Path]) -> Path:
    """An untrained tiny TDT model (real NeMo classes; output is not meaningful text)."""
    return tiny_model_factory(SENTENCES * 3)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()
