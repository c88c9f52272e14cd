"""Plain helpers and builders for the tests: no fixtures (those are in conftest.py and the
plugins it registers), imported by name: ``from helpers import run_cli``.

- the CLI in a subprocess (:func:`run_cli`, :func:`cli_env`) and its one-line errors
  (:func:`error_lines`, :func:`one_error_line`);
- speech from espeak-ng (:data:`SENTENCES`, :func:`espeak_to_wav`), WAV bytes
  (:func:`wav_bytes`), ffmpeg conversions and free loopback ports;
- ``medasr serve``: a real uvicorn server in a thread (:class:`ServerThread`), a process
  waited on until ``/ready`` (:func:`wait_process_ready`), the "wordy" tiny model
  (:func:`perturb_model`), and, for conditions the real model cannot produce on demand (a
  load that lasts until the test says so, an inference that hangs or crashes), stand-in
  runners (:class:`FakeRunner`, :func:`failing_runner`, :class:`FakeModel`) served through
  Starlette's TestClient (:func:`fake_client`).

FastAPI, uvicorn, NeMo and the OpenAI SDK are imported inside the helpers that need them, so
importing this module needs none of the optional extras.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from medasr_cli.infer.limits import PassLimits
from medasr_cli.infer.runner import InferItem, ModelRunner, RunnerOptions
from medasr_cli.infer.transcript import Transcript, Word, segments_from_words

# The sentences the session's espeak-ng speech (conftest ``speech_dir``) and tiny model are made of.
SENTENCES = [
    "The patient was started on metoprolol twice daily.",
    "Echocardiogram showed mild mitral regurgitation.",
    "Continue apixaban and review in clinic.",
    "She has a history of Crohn's disease.",
    "Haemoglobin was low on admission.",
    "No tenderness in the right iliac fossa.",
]

API_KEY = "test-key-123"  # the API key of the shared test server (fixtures_serve ``server``)
MODEL_ID = "parakeet-tdt-0.6b-v2"


# --- the CLI in a subprocess ----------------------------------------------------------------


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m medasr_cli *args`` in a subprocess, output captured as text, never raising on
    the exit code. ``env`` replaces the environment (as in :func:`subprocess.run`; build it with
    :func:`cli_env`); ``timeout`` raises :class:`subprocess.TimeoutExpired` when passed."""
    return subprocess.run(
        [sys.executable, "-m", "medasr_cli", *args], capture_output=True, text=True,
        check=False, env=env, cwd=cwd, timeout=timeout,
    )  # fmt: skip


def cli_env(*unset: str, **extra: str) -> dict[str, str]:
    """This process's environment without the variables ``unset`` and with ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(extra)
    return env


def error_lines(proc: subprocess.CompletedProcess[str], prefix: str = "") -> list[str]:
    """The non-blank lines of ``proc``'s stderr (only those starting with ``prefix``, if given)."""
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and ln.strip().startswith(prefix)]


def one_error_line(proc: subprocess.CompletedProcess[str], prefix: str = "") -> str:
    """The one stderr line (starting with ``prefix``) of a failed command; no traceback."""
    lines = error_lines(proc, prefix)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


# --- stage outputs ---------------------------------------------------------------------------


def jsonl_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSONL file (blank lines skipped)."""
    import json

    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def synth_fingerprint(out: Path, jsonl: Path) -> dict[str, tuple[str, str]]:
    """id -> (inputs hash, sha256 of the audio file) for every record of a synth run."""
    import hashlib

    return {
        rec["id"]: (
            rec["inputs_hash"],
            hashlib.sha256((out / rec["audio_filepath"]).read_bytes()).hexdigest(),
        )
        for rec in jsonl_records(jsonl)
    }


# --- audio and ports ------------------------------------------------------------------------


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


def wav_bytes(seconds: float, rate: int = 16000, amplitude: float = 0.01) -> bytes:
    """A WAV (16-bit PCM) in memory: seeded noise at ``amplitude``, or silence when it is 0."""
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(seconds * rate)) * amplitude).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    """Convert ``src`` with ffmpeg (codec chosen by ``dst``'s suffix unless given in ``args``)."""
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *args, str(dst)]
    subprocess.run(cmd, check=True)
    return dst


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- medasr serve: a real server --------------------------------------------------------------


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


def wait_process_ready(url: str, proc: subprocess.Popen[str], timeout: float) -> None:
    """Poll ``url``/ready until 200; fail with the output of ``proc`` (a server started with
    its stdout or stderr piped) if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pipe = proc.stdout or proc.stderr
            raise AssertionError(f"server exited {proc.returncode}: {pipe.read() if pipe else ''}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("server did not become ready")


def openai_client(srv: ServerThread, key: str = API_KEY, retries: int = 0) -> Any:
    """The real OpenAI SDK client pointed at the test server."""
    import openai

    return openai.OpenAI(base_url=srv.base_url + "/v1", api_key=key, max_retries=retries,
                         timeout=120)  # fmt: skip


def post_audio(client: Any, content: bytes, **data: str) -> Any:
    """POST a file to ``/v1/audio/transcriptions`` through a TestClient or httpx client."""
    return client.post(
        "/v1/audio/transcriptions", data={"model": MODEL_ID, **data},
        files={"file": ("clip.wav", content, "audio/wav")},
    )  # fmt: skip


def keep_from_nemo(caplog: pytest.LogCaptureFixture) -> None:
    """Detach this test phase's caplog handler from ``nemo_logger`` (see fixtures_serve
    ``serve_logs``)."""
    logging.getLogger("nemo_logger").removeHandler(caplog.handler)


def records_for(records: Sequence[logging.LogRecord], request_id: str) -> list[logging.LogRecord]:
    """The records whose structured ``fields`` carry ``request_id``."""
    return [r for r in records if getattr(r, "fields", {}).get("request_id") == request_id]


# --- medasr serve: stand-in model runners ---------------------------------------------------


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
        o = self.options
        single = o.max_single_pass_s or 1440.0
        self.limits = PassLimits(
            min(o.full_attention_s or single, single), single, o.chunk_overlap_s
        )
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


def failing_runner(n: int, message: str) -> FakeRunner:
    """A :class:`FakeRunner` whose ``n``-th inference call raises ``RuntimeError(message)``."""

    def infer(items: Sequence[InferItem]) -> list[Transcript]:
        if runner.calls == n:
            raise RuntimeError(message)
        return [fake_transcript(it) for it in items]

    runner = FakeRunner(infer_fn=infer)
    return runner


class FakeModel:
    """An ``infer`` for the batch engine alone: ``Transcript("n=<samples>")`` per item after
    ``delay`` seconds; records batch sizes and the threads it is called from."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.batches: list[int] = []
        self.threads: set[int] = set()
        self.concurrent = 0
        self.max_concurrent = 0
        self._lock = threading.Lock()

    def infer(self, items: Sequence[InferItem]) -> list[Transcript]:
        with self._lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        self.batches.append(len(items))
        with self._lock:
            self.concurrent -= 1
        return [Transcript(f"n={len(it.audio)}", it.duration) for it in items]


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
    runner.options = settings.runner_options()
    with TestClient(create_app(settings, runner)) as client:
        if ready:
            wait_ready(client)
        yield client
