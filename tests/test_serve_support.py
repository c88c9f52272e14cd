"""Shared pieces of the ``medasr serve`` tests (imported by the test_serve_* modules).

- ``wordy_model``: the conftest ``tiny_model`` with its joint network
  re-initialised from a fixed seed and a louder encoder, so the untrained
  model emits many different "words" (an untrained model repeats one token,
  which cannot exercise word and segment timestamps). Still a real NeMo
  FastConformer-TDT ``.nemo``, decoded by NeMo's own ``transcribe()``.
- ``ServerThread``: ``create_app`` under a real uvicorn on 127.0.0.1 in a
  thread, waited on until ``/ready``.
- audio made with espeak-ng (conftest) and converted with ffmpeg.
- ``FakeRunner`` and ``fake_client``: ``create_app`` with a stand-in model
  runner, through Starlette's TestClient, only for conditions the real model
  cannot produce on demand (a load that lasts until the test says so, an
  inference that hangs or crashes).
- ``serve_logs``: caplog for ``medasr_cli`` records (``keep_from_nemo`` when
  the real model runs: NeMo resets the level of handlers on its logger).
"""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from conftest import free_port

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from medasr_cli.serve.runner import InferItem, ModelRunner, RunnerOptions
from medasr_cli.serve.transcript import Transcript, Word, segments_from_words

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


@pytest.fixture
def serve_logs(caplog: pytest.LogCaptureFixture) -> Any:
    """caplog at INFO for ``medasr_cli``.

    pytest also attaches caplog's handler to non-propagating loggers, NeMo's ``nemo_logger``
    among them, and every NeMo ``transcribe()`` sets the level of all that logger's handlers
    (to ERROR once the server has quietened NeMo). A test that runs the real model and expects
    records below ERROR calls :func:`keep_from_nemo` first.
    """
    caplog.set_level(logging.INFO, logger="medasr_cli")
    return caplog


def keep_from_nemo(caplog: pytest.LogCaptureFixture) -> None:
    """Detach this test phase's caplog handler from ``nemo_logger`` (see ``serve_logs``)."""
    logging.getLogger("nemo_logger").removeHandler(caplog.handler)


def records_for(records: Sequence[logging.LogRecord], request_id: str) -> list[logging.LogRecord]:
    """The records whose structured ``fields`` carry ``request_id``."""
    return [r for r in records if getattr(r, "fields", {}).get("request_id") == request_id]


def fake_transcript(item: InferItem) -> Transcript:
    """One word per started second of audio (``w0 w1 ...``), each half a second long."""
    words = [Word(f"w{i}", float(i), i + 0.5) for i in range(max(1, int(item.duration)))]
    text = " ".join(w.text for w in words)
    return Transcript(text, item.duration, words, segments_from_words(words))


class FakeRunner(ModelRunner):
    """A stand-in for the NeMo model runner (see the module docstring for when it is used).

    ``load_gate``: ``load()`` blocks until the event is set. ``infer_fn``: replaces inference
    (default: :func:`fake_transcript` for each item). ``calls`` counts inference calls.
    """

    def __init__(
        self,
        load_gate: threading.Event | None = None,
        infer_fn: Callable[[Sequence[InferItem]], list[Transcript]] | None = None,
    ) -> None:
        super().__init__(RunnerOptions(model="fake.nemo", device="cpu"))
        self.load_gate = load_gate
        self.infer_fn = infer_fn
        self.calls = 0

    def load(self) -> float:
        if self.load_gate is not None and not self.load_gate.wait(10):
            raise TimeoutError("the test never released the fake model load")
        self.model = object()
        return 0.0

    def warmup(self) -> None:
        pass

    def infer(self, items: Sequence[InferItem]) -> list[Transcript]:
        self.calls += 1
        if self.infer_fn is not None:
            return self.infer_fn(items)
        return [fake_transcript(it) for it in items]

    def tokenize(self, text: str) -> list[int]:
        return []


def wait_ready(client: Any, timeout: float = 10.0) -> None:
    """Poll ``/ready`` of a TestClient until 200."""
    deadline = time.monotonic() + timeout
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < deadline, "fake server did not become ready"
        time.sleep(0.01)


@contextlib.contextmanager
def fake_client(runner: FakeRunner, ready: bool = True, **overrides: Any) -> Iterator[Any]:
    """``create_app`` with ``runner`` under Starlette's TestClient (lifespan on)."""
    from fastapi.testclient import TestClient

    from medasr_cli.serve.app import create_app
    from medasr_cli.serve.settings import ServeSettings

    settings = ServeSettings(**{"model": "fake.nemo", "device": "cpu", **overrides})
    with TestClient(create_app(settings, runner)) as client:
        if ready:
            wait_ready(client)
        yield client


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    """A WAV of quiet noise (16-bit PCM) in memory."""
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(seconds * rate)) * 0.01).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def post_audio(client: Any, content: bytes, **data: str) -> Any:
    """POST a file to ``/v1/audio/transcriptions`` through a TestClient or httpx client."""
    return client.post(
        "/v1/audio/transcriptions", data={"model": MODEL_ID, **data},
        files={"file": ("clip.wav", content, "audio/wav")},
    )  # fmt: skip
