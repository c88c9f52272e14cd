"""Shared pieces of the ``medasr serve`` tests (imported by the test_serve_* modules).

- ``wordy_model``: the conftest ``tiny_model`` with its joint network
  re-initialised from a fixed seed and a louder encoder, so the untrained
  model emits many different "words" (an untrained model repeats one token,
  which cannot exercise word and segment timestamps). Still a real NeMo
  FastConformer-TDT ``.nemo``, decoded by NeMo's own ``transcribe()``.
- ``ServerThread``: ``create_app`` under a real uvicorn on 127.0.0.1 in a
  thread, waited on until ``/ready``.
- audio made with espeak-ng (conftest) and converted with ffmpeg.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from conftest import free_port

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

API_KEY = "test-key-123"
MODEL_ID = "parakeet-tdt-0.6b-v2"
_CACHE: dict[str, Any] = {}


def perturb_model(src: Path, dst: Path, seed: int = 1) -> Path:
    """Re-initialise the joint of a tiny model so its (meaningless) output has many words."""
    import torch
    from nemo.collections.asr.models import ASRModel

    model = ASRModel.restore_from(str(src), map_location="cpu")
    torch.manual_seed(seed)  # every weight from this seed: the conftest build is unseeded
    with torch.no_grad():
        for module in model.modules():
            if module is not model and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for p in model.joint.parameters():
            p.normal_(0, 1.0 / p.shape[-1] ** 0.5 if p.dim() > 1 else 0.1)
        for p in model.encoder.parameters():
            if p.dim() > 1:
                p.mul_(2.0)
    model.save_to(str(dst))
    return dst


@pytest.fixture(scope="session")
def wordy_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if "model" not in _CACHE:
        out = tmp_path_factory.mktemp("wordy") / "model.nemo"
        _CACHE["model"] = perturb_model(tiny_model, out)
    path: Path = _CACHE["model"]
    return path


def server_settings(model: Path, **overrides: Any) -> Any:
    """Settings for a test server: loopback, a free port, one CPU thread (a shared 2-core box)."""
    from medasr_cli.serve.settings import ServeSettings

    base: dict[str, Any] = dict(
        model=str(model), host="127.0.0.1", port=free_port(), cpu_threads=1, device="cpu",
        max_wait_ms=20, max_batch_size=8,
    )  # fmt: skip
    base.update(overrides)
    return ServeSettings(**base)


class ServerThread:
    """A real uvicorn server for ``create_app(settings)`` on 127.0.0.1, run in a thread."""

    def __init__(self, settings: Any) -> None:
        import uvicorn

        from medasr_cli.serve.app import create_app

        self.settings = settings
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app, host=settings.host, port=settings.port, log_config=None,
            access_log=False, lifespan="on", timeout_graceful_shutdown=10,
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base_url = f"http://127.0.0.1:{settings.port}"

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def start(self, timeout: float = 180.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base_url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.runtime.load_error is not None:
                raise RuntimeError(f"model failed to load: {self.runtime.load_error}")
            time.sleep(0.2)
        raise TimeoutError("server did not become ready")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


@pytest.fixture(scope="session")
def server(wordy_model: Path, request: pytest.FixtureRequest) -> Iterator[ServerThread]:
    """The shared server: API key on, 2 MiB uploads, chunking above 8 s, strong keyword boost."""
    if "server" not in _CACHE:
        settings = server_settings(
            wordy_model, api_keys=[API_KEY], max_upload_mb=2, max_single_pass_s=8,
            chunk_overlap_s=2, max_segment_s=5, keyword_boost_alpha=5.0, keyword_context_score=5.0,
        )  # fmt: skip
        srv = ServerThread(settings).start()
        _CACHE["server"] = srv
        request.addfinalizer(srv.stop)
    srv_: ServerThread = _CACHE["server"]
    yield srv_


def openai_client(srv: ServerThread, key: str = API_KEY, retries: int = 0) -> Any:
    """The real OpenAI SDK client pointed at the test server."""
    import openai

    return openai.OpenAI(base_url=srv.base_url + "/v1", api_key=key, max_retries=retries,
                         timeout=120)  # fmt: skip


def ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    """Convert ``src`` with ffmpeg (codec chosen by ``dst``'s suffix unless given in ``args``)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *args, str(dst)]
    subprocess.run(cmd, check=True)
    return dst


@pytest.fixture(scope="session")
def long_wav(speech_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~20 s of speech (all espeak sentences with pauses): longer than the 8 s single pass."""
    parts = []
    for wav in sorted(speech_dir.glob("utt*.wav")):
        audio, _ = sf.read(wav, dtype="float32")
        parts += [audio, np.zeros(8000, dtype=np.float32)]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return path
