"""``medasr serve`` as a process: help, exit codes, JSON logs and graceful shutdown."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from test_serve_support import *  # noqa: F403  (fixtures: wordy_model, long_wav)
from test_serve_support import MODEL_ID

pytest.importorskip("pydantic_settings")


def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "medasr_cli", *args], capture_output=True, text=True,
        check=False, timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip().startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_help_documents_every_setting() -> None:
    from medasr_cli.serve.settings import ServeSettings

    proc = _run("serve", "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0
    renamed = {
        "model_aliases": "--model-alias",
        "api_keys": "--api-key",
        "cors_origins": "--cors-origin",
    }
    for name in ServeSettings.model_fields:
        flag = renamed.get(name, "--" + name.replace("_", "-"))
        assert flag in proc.stdout, flag
        assert f"MEDASR_{name.upper()}" in proc.stdout.replace("\n", "").replace(" ", ""), name


def test_missing_model_file_exit_2(tmp_path: Path) -> None:
    proc = _run("serve", "--model", str(tmp_path / "nope.nemo"), "--port", str(free_port()))
    assert proc.returncode == 2
    assert "nope.nemo" in _error_line(proc) and "not found" in proc.stderr


def test_no_model_names_the_env_var() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MEDASR_MODEL"}
    proc = subprocess.run([sys.executable, "-m", "medasr_cli", "serve"], capture_output=True,
                          text=True, env=env, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert "MEDASR_MODEL" in _error_line(proc)


def test_cors_wildcard_with_credentials_refused(tmp_path: Path) -> None:
    proc = _run("serve", "--model", "x.nemo", "--cors-origin", "*", "--cors-allow-credentials")
    assert proc.returncode == 2
    assert "cors" in _error_line(proc).lower()


def test_env_prefix_is_read(tmp_path: Path) -> None:
    proc = _run("serve", env={"MEDASR_MODEL": str(tmp_path / "env.nemo"), "MEDASR_PORT": "1"})
    assert proc.returncode == 2 and "env.nemo" in _error_line(proc)


def test_busy_port_exit_2(wordy_model: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = _run("serve", "--model", str(wordy_model), "--port", str(port))
    assert proc.returncode == 2 and "cannot listen" in _error_line(proc)


@pytest.mark.slow
def test_corrupt_model_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nemo"
    bad.write_bytes(os.urandom(4096))
    proc = _run("serve", "--model", str(bad), "--port", str(free_port()), timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "broken.nemo" in proc.stderr and "cannot load" in proc.stderr


def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError("server not ready")


def _wait_in_flight(url: str, want: int, timeout: float = 10) -> int:
    """Poll /metrics until ``want`` transcription requests are in flight; return the last count."""
    deadline, seen = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and seen < want:
        for line in httpx.get(url + "/metrics", timeout=2).text.splitlines():
            if line.startswith("medasr_requests_in_flight "):
                seen = int(float(line.split()[1]))
        time.sleep(0.02)
    return seen


@pytest.mark.slow
def test_sigterm_finishes_in_flight_and_logs_json(wordy_model: Path, long_wav: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "medasr_cli", "serve", "--model", str(wordy_model), "--port", str(port),
         "--max-batch-size", "1", "--cpu-threads", "1", "--log-json", "--log-transcripts"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_ready(url, proc)
        audio = long_wav.read_bytes()

        def post(_: int) -> httpx.Response:
            return httpx.post(url + "/v1/audio/transcriptions", data={"model": MODEL_ID},
                              files={"file": ("a.wav", audio)}, timeout=120)  # fmt: skip

        with cf.ThreadPoolExecutor(6) as pool:
            jobs = [pool.submit(post, i) for i in range(6)]
            in_flight = _wait_in_flight(url, 6)
            proc.send_signal(signal.SIGTERM)
            codes = [j.result().status_code for j in jobs]
        assert in_flight >= 2
        assert codes == [200] * 6  # in-flight requests finished
        assert proc.wait(timeout=60) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = [json.loads(ln) for ln in (proc.stderr.read() if proc.stderr else "").splitlines()
            if ln.startswith("{")]  # fmt: skip
    requests = [r for r in logs if r.get("logger") == "medasr_cli.serve.access"]
    assert len(requests) == 6
    for r in requests:
        assert r["status"] == 200 and r["request_id"].startswith("req_")
        assert r["audio_s"] > 10 and r["batch_size"] == 1 and r["latency_s"] > 0
        assert isinstance(r["text"], str)  # --log-transcripts
