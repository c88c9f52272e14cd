"""Conditions the real model cannot produce on demand: a slow load, a hung or crashing inference.

These tests run ``create_app`` with a stand-in model runner (``FakeRunner``) through Starlette's
TestClient; everything else (routes, batch engine, middleware, metrics, logs) is the real server.
The real NeMo model loads in about a second and decodes short audio in milliseconds, so it cannot
be caught mid-load or mid-inference reliably, and it has no bug to trigger on purpose.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest

from helpers import (
    FakeRunner,
    failing_runner,
    fake_client,
    fake_transcript,
    post_audio,
    records_for,
    wait_ready,
    wav_bytes,
)
from medasr_cli.infer.runner import InferItem
from medasr_cli.infer.transcript import Transcript

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

ERROR_KEYS = {"message", "type", "param", "code"}


def _metric_lines(client: Any, name: str) -> list[str]:
    return [ln for ln in client.get("/metrics").text.splitlines() if ln.startswith(name)]


def test_model_loading_is_503_with_retry_after() -> None:
    """Fake runner: its load blocks until the test releases it (the real tiny model loads in ~1 s)."""
    gate = threading.Event()
    with fake_client(FakeRunner(load_gate=gate), ready=False, retry_after_s=7) as client:
        try:
            assert client.get("/health").json() == {"status": "ok"}
            ready = client.get("/ready")
            assert ready.status_code == 503 and ready.json() == {"status": "loading"}
            assert ready.headers["retry-after"] == "7"
            r = post_audio(client, wav_bytes(1.0))
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "7" and r.headers["x-request-id"]
            assert r.json() == {"error": {
                "message": "the model is still loading; retry shortly", "type": "server_error",
                "param": None, "code": "model_loading",
            }}  # fmt: skip
            assert "medasr_ready 0.0" in _metric_lines(client, "medasr_ready")
        finally:
            gate.set()
        wait_ready(client)
        assert client.get("/ready").json()["status"] == "ready"
        assert post_audio(client, wav_bytes(1.0)).json()["text"] == "w0"


def test_inference_bug_is_500_with_request_id_in_body_and_log(serve_logs: Any) -> None:
    """Fake runner: its first inference raises, as a bug in the model code would."""

    runner = failing_runner(1, "simulated bug in inference")
    with fake_client(runner) as client:
        r = post_audio(client, wav_bytes(1.0))
        after = post_audio(client, wav_bytes(1.0))  # the model thread survives the bug
        given = client.post(
            "/v1/audio/transcriptions", headers={"X-Request-ID": "trace-42"},
            files={"file": ("a.wav", b"", "audio/wav")},
        )  # fmt: skip
    assert r.status_code == 500, r.text
    rid = r.headers["x-request-id"]
    assert rid.startswith("req_")
    err = r.json()["error"]
    assert set(err) == ERROR_KEYS
    assert err["code"] == "internal_error" and err["type"] == "server_error"
    assert err["param"] is None
    assert rid in str(err["message"]) and "simulated bug" not in str(err["message"])
    logged = records_for(serve_logs.records, rid)
    tracebacks = [rec for rec in logged if rec.exc_info and rec.levelno == logging.ERROR]
    assert tracebacks and "simulated bug" in str(tracebacks[0].exc_info[1])  # type: ignore[index]
    assert any(getattr(rec, "fields", {}).get("status") == 500 for rec in logged)  # request line
    assert after.status_code == 200 and after.json()["text"] == "w0"
    assert given.headers["x-request-id"] == "trace-42"  # a gateway's id is kept for tracing


def test_health_answers_while_model_is_busy() -> None:
    """Fake runner: its inference blocks until the test releases it (or 5 s pass), so /health is
    asked while the request is certainly inside the model; the real model is too quick to hold."""
    inside, release = threading.Event(), threading.Event()

    def slow(items: Sequence[InferItem]) -> list[Transcript]:
        inside.set()
        release.wait(5)
        return [fake_transcript(it) for it in items]

    with fake_client(FakeRunner(infer_fn=slow)) as client, cf.ThreadPoolExecutor(1) as pool:
        try:
            job = pool.submit(post_audio, client, wav_bytes(1.0))
            assert inside.wait(10), "the request never reached the model"
            t0 = time.perf_counter()
            health = client.get("/health")
            took = time.perf_counter() - t0
            busy = not job.done() and not release.is_set()
        finally:
            release.set()
        assert job.result(timeout=10).status_code == 200
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert busy, "the transcription finished before /health answered"
    assert took < 0.5


def test_stream_failing_midway_counts_as_500(serve_logs: Any) -> None:
    """Fake runner: the second chunk of a long recording fails after the first was streamed."""

    runner = failing_runner(2, "simulated failure on chunk 2")
    settings = dict(max_single_pass_s=2.0, chunk_overlap_s=0.5, max_batch_size=1)
    with fake_client(runner, **settings) as client:
        r = post_audio(client, wav_bytes(5.0), stream="true")
        metrics = _metric_lines(client, "medasr_requests_total")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(ln[len("data: "):]) for ln in r.text.splitlines() if ln.startswith("data: ")]  # fmt: skip
    assert events[0] == {"type": "transcript.text.delta", "delta": "w0"}  # chunk 1 went out
    rid = r.headers["x-request-id"]
    last = events[-1]["error"]
    assert set(last) == ERROR_KEYS and last["code"] == "internal_error" and rid in last["message"]
    assert not any(e.get("type") == "transcript.text.done" for e in events)
    assert 'medasr_requests_total{response_format="json",status="500"} 1.0' in metrics
    assert not any('status="200"' in ln for ln in metrics), metrics
    line = [rec for rec in records_for(serve_logs.records, rid) if "status" in rec.fields]  # type: ignore[attr-defined]
    assert [rec.fields["status"] for rec in line] == [500]  # type: ignore[attr-defined]
    assert line[0].fields["error_code"] == "internal_error"  # type: ignore[attr-defined]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_stream_that_succeeds_counts_as_200(fmt: str) -> None:
    """Fake runner (as above, nothing fails): the 500 count is only for failed streams."""
    with fake_client(FakeRunner(), max_single_pass_s=2.0, chunk_overlap_s=0.5) as client:
        r = post_audio(client, wav_bytes(5.0), stream="true", response_format=fmt)
        metrics = _metric_lines(client, "medasr_requests_total")
    assert r.status_code == 200 and '"transcript.text.done"' in r.text
    assert f'medasr_requests_total{{response_format="{fmt}",status="200"}} 1.0' in metrics
