"""Shared fixtures: real speech from espeak-ng, a tiny NeMo FastConformer-TDT, free ports.

Everything is built here from scratch: no model or data is downloaded. Plain helpers and
builders are in helpers.py; the serve fixtures are in fixtures_serve.py (``pytest_plugins``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.register_assert_rewrite("helpers")

from helpers import SENTENCES, espeak_to_wav, free_port  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Fixtures of the serve tests, in a plugin module registered here, once for the whole session.
pytest_plugins = ["fixtures_serve"]


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


@pytest.fixture
def port() -> int:
    return free_port()
