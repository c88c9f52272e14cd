"""Load: many concurrent OpenAI-SDK clients against one server and one model.

200 requests from 16 clients must all succeed with exactly the transcript a
lone request gets (dynamic batching must not change results), batches must
really form, memory must stay flat, and a full queue must answer 503 with
Retry-After rather than fall over.
"""

from __future__ import annotations

import concurrent.futures as cf
import re
from pathlib import Path

import httpx
import pytest

from helpers import MODEL_ID, ServerThread, openai_client, server_settings

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _metric(srv: ServerThread, name: str) -> float:
    text = httpx.get(srv.base_url + "/metrics").text
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.slow
def test_200_requests_16_clients(server: ServerThread, speech_dir: Path) -> None:
    wavs = sorted(speech_dir.glob("utt*.wav"))
    clients = [openai_client(server, retries=0) for _ in range(16)]
    expected = {w: clients[0].audio.transcriptions.create(model=MODEL_ID, file=w.open("rb")).text
                for w in wavs}  # fmt: skip
    batches_before = _metric(server, "medasr_batch_size_count")
    pieces_before = _metric(server, "medasr_batch_size_sum")

    def one(i: int) -> tuple[Path, str]:
        wav = wavs[i % len(wavs)]
        client = clients[i % len(clients)]
        return wav, client.audio.transcriptions.create(model=MODEL_ID, file=wav.open("rb")).text

    def run(n: int) -> list[tuple[Path, str]]:
        with cf.ThreadPoolExecutor(16) as pool:
            return list(pool.map(one, range(n)))

    run(48)  # warm every code path before measuring memory
    rss_start = _rss_mb()
    results = run(200)
    rss_end = _rss_mb()
    assert len(results) == 200
    mismatched = [(w.name, got) for w, got in results if got != expected[w]]
    assert not mismatched, mismatched[:3]
    batches = _metric(server, "medasr_batch_size_count") - batches_before
    pieces = _metric(server, "medasr_batch_size_sum") - pieces_before
    assert pieces / batches > 1.5, "concurrent requests were not batched"
    assert rss_end - rss_start < 150, (rss_start, rss_end)


@pytest.mark.slow
def test_queue_full_is_503_not_a_crash(wordy_model: Path, long_wav: Path) -> None:
    srv = ServerThread(server_settings(
        wordy_model, queue_size=2, max_batch_size=1, retry_after_s=3, max_single_pass_s=60,
    )).start()  # fmt: skip
    try:
        audio = long_wav.read_bytes()

        def post(_: int) -> httpx.Response:
            return httpx.post(
                srv.base_url + "/v1/audio/transcriptions", data={"model": MODEL_ID},
                files={"file": ("long.wav", audio)}, timeout=120,
            )  # fmt: skip

        with cf.ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(post, range(16)))
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 503}, codes
        assert codes.count(503) >= 1 and codes.count(200) >= 3, codes
        busy = next(r for r in responses if r.status_code == 503)
        assert busy.headers["retry-after"] == "3"
        assert busy.json()["error"]["code"] == "server_overloaded"
        texts = {r.json()["text"] for r in responses if r.status_code == 200}
        assert len(texts) == 1  # every accepted request got the full, same transcript
        assert httpx.get(srv.base_url + "/health").status_code == 200
        assert post(0).status_code == 200  # and it still serves afterwards
        assert 'medasr_requests_total{response_format="json",status="503"}' in httpx.get(
            srv.base_url + "/metrics").text  # fmt: skip
    finally:
        srv.stop()
