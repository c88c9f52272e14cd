"""``medasr serve`` through the real ``openai`` SDK: every response_format, timestamps, streaming,
keywords, long audio, errors, models, health and metrics.

The server is a real uvicorn on 127.0.0.1 (a thread) serving a real NeMo TDT ``.nemo``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path

import httpx
import openai
import pytest
import soundfile as sf

from test_serve_support import *  # noqa: F403  (fixtures: wordy_model, server, long_wav)
from test_serve_support import (
    API_KEY,
    MODEL_ID,
    ServerThread,
    openai_client,
    server_settings,
)


def _wav(speech_dir: Path, i: int = 0) -> Path:
    return speech_dir / f"utt{i:02d}.wav"


def _duration(path: Path) -> float:
    info = sf.info(str(path))
    return float(info.frames / info.samplerate)


def test_json_matches_offline_nemo(
    server: ServerThread, speech_dir: Path, wordy_model: Path
) -> None:
    from medasr_cli.core.asr_model import load_asr_model, transcribe_arrays

    wav = _wav(speech_dir)
    client = openai_client(server)
    raw = client.audio.transcriptions.with_raw_response.create(model=MODEL_ID, file=wav.open("rb"))
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.headers["x-request-id"].startswith("req_")
    body = json.loads(raw.text)
    assert body["usage"] == {"type": "duration", "seconds": math.ceil(_duration(wav))}
    result = raw.parse()
    assert isinstance(result, openai.types.audio.Transcription)
    model = load_asr_model(wordy_model, "cpu")
    audio, _ = sf.read(wav, dtype="float32")
    offline = transcribe_arrays(model, [audio], batch_size=1, timestamps=True)[0]
    assert result.text == offline.text.strip() != ""


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("text", "text/plain"), ("srt", "application/x-subrip"), ("vtt", "text/vtt")],
)
def test_plain_text_formats(
    server: ServerThread, speech_dir: Path, fmt: str, media_type: str
) -> None:
    client = openai_client(server)
    wav = _wav(speech_dir, 1)
    plain = client.audio.transcriptions.create(model=MODEL_ID, file=wav.open("rb"))
    raw = client.audio.transcriptions.with_raw_response.create(
        model=MODEL_ID,
        file=wav.open("rb"),
        response_format=fmt,  # type: ignore[arg-type]
    )
    assert raw.headers["content-type"].startswith(media_type)
    text = raw.parse()
    assert isinstance(text, str) and not text.startswith('"')
    if fmt == "text":
        assert text == plain.text + "\n"
        return
    clock = r"\d\d:\d\d:\d\d" + ("," if fmt == "srt" else r"\.") + r"\d\d\d"
    cue = re.compile(rf"({clock}) --> ({clock})\n(.+)\n")
    cues = cue.findall(text)
    assert cues, text
    assert " ".join(c[2] for c in cues).split() == plain.text.split()
    if fmt == "vtt":
        assert text.startswith("WEBVTT\n\n")
    else:
        assert text.startswith("1\n")


def test_verbose_json_word_and_segment_times(server: ServerThread, speech_dir: Path) -> None:
    client = openai_client(server)
    wav = _wav(speech_dir, 2)
    dur = _duration(wav)
    res = client.audio.transcriptions.create(
        model=MODEL_ID, file=wav.open("rb"), response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )  # fmt: skip
    assert res.duration == pytest.approx(dur, abs=0.01)
    assert res.language == "english"
    assert res.words and res.segments
    assert " ".join(w.word for w in res.words).split() == res.text.split()
    starts = [w.start for w in res.words]
    assert starts == sorted(starts) and len(set(starts)) > 1
    for w in res.words:
        assert 0.0 <= w.start <= w.end <= dur + 1e-3
    seg = res.segments[0]
    assert seg.id == 0 and seg.start == pytest.approx(res.words[0].start)
    assert res.segments[-1].end == pytest.approx(res.words[-1].end)
    assert seg.tokens and all(isinstance(t, int) for t in seg.tokens)
    assert seg.temperature == 0.0 and seg.compression_ratio > 0
    assert res.usage is not None and res.usage.type == "duration"


def test_verbose_json_default_is_segments_only(server: ServerThread, speech_dir: Path) -> None:
    client = openai_client(server)
    res = client.audio.transcriptions.create(
        model=MODEL_ID, file=_wav(speech_dir, 3).open("rb"), response_format="verbose_json"
    )
    assert res.segments and res.words is None
    only_words = client.audio.transcriptions.create(
        model=MODEL_ID, file=_wav(speech_dir, 3).open("rb"), response_format="verbose_json",
        timestamp_granularities=["word"],
    )  # fmt: skip
    assert only_words.words and only_words.segments is None


def test_streaming_sse(server: ServerThread, speech_dir: Path) -> None:
    client = openai_client(server)
    wav = _wav(speech_dir, 4)
    plain = client.audio.transcriptions.create(model=MODEL_ID, file=wav.open("rb"))
    events = list(
        client.audio.transcriptions.create(model=MODEL_ID, file=wav.open("rb"), stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"}
    assert len(kinds) > 2
    deltas = "".join(e.delta for e in events[:-1])  # type: ignore[union-attr]
    assert deltas == events[-1].text == plain.text  # type: ignore[union-attr]


def test_long_audio_is_chunked_not_truncated(server: ServerThread, long_wav: Path) -> None:
    client = openai_client(server)
    dur = _duration(long_wav)
    assert dur > 2 * server.settings.max_single_pass_s
    res = client.audio.transcriptions.create(
        model=MODEL_ID, file=long_wav.open("rb"), response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )  # fmt: skip
    assert res.duration == pytest.approx(dur, abs=0.01)
    assert res.words is not None and res.segments is not None
    starts = [w.start for w in res.words]
    assert starts == sorted(starts)
    assert starts[0] < 2.0 and res.words[-1].end > dur - 3.0  # words from the last chunk too
    assert len(res.segments) > 1
    assert all(s.end - s.start <= server.settings.max_segment_s + 1e-6 for s in res.segments)
    streamed = list(client.audio.transcriptions.create(
        model=MODEL_ID, file=long_wav.open("rb"), stream=True))  # fmt: skip
    assert streamed[-1].text == res.text  # type: ignore[union-attr]


def test_keywords_bias_decoding(server: ServerThread, speech_dir: Path) -> None:
    client = openai_client(server)
    wav = _wav(speech_dir, 0)
    plain = client.audio.transcriptions.create(model=MODEL_ID, file=wav.open("rb"))
    boosted = client.audio.transcriptions.create(
        model=MODEL_ID, file=wav.open("rb"), keywords=["metoprolol"], prompt="ignored text"
    )
    assert "metoprolol" not in plain.text
    assert "metoprolol" in boosted.text
    again = client.audio.transcriptions.create(model=MODEL_ID, file=wav.open("rb"))
    assert again.text == plain.text  # boosting is per request


def test_form_fields_not_query_string(server: ServerThread, speech_dir: Path) -> None:
    r = httpx.post(
        server.base_url + "/v1/audio/transcriptions?response_format=json&model=nope",
        headers={"Authorization": f"Bearer {API_KEY}"},
        data={"model": MODEL_ID, "response_format": "text"},
        files={"file": ("a.wav", _wav(speech_dir).read_bytes(), "audio/wav")},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")


def _error(exc: openai.APIStatusError) -> dict[str, object]:
    body = exc.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


def test_error_shapes_key_model_format(server: ServerThread, speech_dir: Path) -> None:
    wav = _wav(speech_dir)
    with pytest.raises(openai.AuthenticationError) as bad_key:
        openai_client(server, key="wrong").audio.transcriptions.create(
            model=MODEL_ID, file=wav.open("rb")
        )
    assert _error(bad_key.value)["code"] == "invalid_api_key"
    no_key = httpx.post(
        server.base_url + "/v1/audio/transcriptions", files={"file": wav.read_bytes()}
    )
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "invalid_api_key"
    client = openai_client(server)
    with pytest.raises(openai.NotFoundError) as bad_model:
        client.audio.transcriptions.create(model="whisper-9", file=wav.open("rb"))
    err = _error(bad_model.value)
    assert err["param"] == "model" and err["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad_fmt:
        client.audio.transcriptions.create(model=MODEL_ID, file=wav.open("rb"),
                                           response_format="mp3")  # type: ignore[arg-type]  # fmt: skip
    assert _error(bad_fmt.value)["param"] == "response_format"
    assert bad_fmt.value.response.headers["x-request-id"].startswith("req_")


def test_models_health_ready(server: ServerThread) -> None:
    client = openai_client(server)
    assert [m.id for m in client.models.list()] == [MODEL_ID]
    assert client.models.retrieve(MODEL_ID).id == MODEL_ID
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")
    with pytest.raises(openai.AuthenticationError):
        openai_client(server, key="wrong").models.list()
    assert httpx.get(server.base_url + "/health").json() == {"status": "ok"}
    assert httpx.get(server.base_url + "/ready").json()["status"] == "ready"


def test_health_answers_while_model_is_busy(server: ServerThread, long_wav: Path) -> None:
    import concurrent.futures as cf

    client = openai_client(server)
    with cf.ThreadPoolExecutor(4) as pool:
        jobs = [pool.submit(client.audio.transcriptions.create, model=MODEL_ID, file=long_wav.open("rb"))
                for _ in range(4)]  # fmt: skip
        time.sleep(0.5)
        worst = 0.0
        for _ in range(10):
            t0 = time.perf_counter()
            assert httpx.get(server.base_url + "/health", timeout=5).status_code == 200
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.05)
        assert all(j.result().text for j in jobs)
    assert worst < 0.5


class _Records(logging.Handler):
    """Collects records of one logger (caplog's handler levels are changed by NeMo's logger)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_metrics_keda_gauge_and_request_log(wordy_model: Path, speech_dir: Path) -> None:
    srv = ServerThread(server_settings(wordy_model, latency_window_s=2.0)).start()
    try:

        def gauge() -> float:
            text = httpx.get(srv.base_url + "/metrics").text
            m = re.search(r"^nemo_asr_request_latency_seconds_avg ([0-9.e+-]+)$", text, re.M)
            assert m, "KEDA gauge missing"
            return float(m.group(1))

        assert gauge() == 0.0
        client = openai_client(srv, key="anything")  # no keys configured: open server
        access, seen = logging.getLogger("medasr_cli.serve.access"), _Records()
        access.addHandler(seen)
        access.setLevel(logging.INFO)
        try:
            for i in range(3):
                client.audio.transcriptions.create(
                    model=MODEL_ID, file=_wav(speech_dir, i).open("rb")
                )
            deadline = time.monotonic() + 5  # the line is written once the body has been sent
            while len(seen.records) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            access.removeHandler(seen)
            access.setLevel(logging.NOTSET)
        assert gauge() > 0.0
        text = httpx.get(srv.base_url + "/metrics").text
        assert 'medasr_requests_total{response_format="json",status="200"} 3.0' in text
        for name in ("medasr_request_latency_seconds_bucket", "medasr_audio_seconds_total",
                     "medasr_real_time_factor_bucket", "medasr_batch_size_bucket",
                     "medasr_queue_depth", "medasr_model_load_seconds", "process_resident_memory_bytes"):  # fmt: skip
            assert name in text, name
        time.sleep(2.5)
        assert gauge() == 0.0  # moving window: idle again
        fields = seen.records[-1].fields  # type: ignore[attr-defined]
        assert {"request_id", "status", "audio_s", "latency_s", "batch_size"} <= set(fields)
        assert "text" not in fields  # no transcripts in logs by default
    finally:
        srv.stop()
