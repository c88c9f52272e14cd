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

from helpers import MODEL_ID, cli_env, free_port, one_error_line, run_cli, wait_process_ready

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("pydantic_settings")


def test_help_documents_every_setting() -> None:
    from medasr_cli.serve.settings import ServeSettings

    proc = run_cli("serve", "--help", env=cli_env(COLUMNS="200"), timeout=120)
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
    proc = run_cli(
        "serve", "--model", str(tmp_path / "nope.nemo"), "--port", str(free_port()), timeout=120
    )
    assert proc.returncode == 2
    assert "nope.nemo" in one_error_line(proc, "error:") and "not found" in proc.stderr


def test_no_model_names_the_env_var() -> None:
    proc = run_cli("serve", env=cli_env("MEDASR_MODEL"))
    assert proc.returncode == 2
    assert "MEDASR_MODEL" in one_error_line(proc, "error:")


def test_cors_wildcard_with_credentials_refused(tmp_path: Path) -> None:
    proc = run_cli(
        "serve", "--model", "x.nemo", "--cors-origin", "*", "--cors-allow-credentials", timeout=120
    )
    assert proc.returncode == 2
    assert "cors" in one_error_line(proc, "error:").lower()


def test_env_prefix_is_read(tmp_path: Path) -> None:
    proc = run_cli(
        "serve", env=cli_env(MEDASR_MODEL=str(tmp_path / "env.nemo"), MEDASR_PORT="1"), timeout=120
    )
    assert proc.returncode == 2 and "env.nemo" in one_error_line(proc, "error:")


def test_busy_port_exit_2(wordy_model: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_cli("serve", "--model", str(wordy_model), "--port", str(port), timeout=120)
    assert proc.returncode == 2 and "cannot listen" in one_error_line(proc, "error:")


@pytest.mark.slow
def test_corrupt_model_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nemo"
    bad.write_bytes(os.urandom(4096))
    proc = run_cli("serve", "--model", str(bad), "--port", str(free_port()), timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "broken.nemo" in proc.stderr and "cannot load" in proc.stderr


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
        wait_process_ready(url, proc, timeout=240)
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
