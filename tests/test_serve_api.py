"""``medasr serve`` through the real ``openai`` SDK: every response_format, timestamps, streaming,
keywords, long audio, errors, models, health and metrics.

The server is a real uvicorn on 127.0.0.1 (a thread) serving a real NeMo TDT ``.nemo``.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import math
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import soundfile as sf

from helpers import (
    API_KEY,
    MODEL_ID,
    ServerThread,
    keep_from_nemo,
    openai_client,
    server_settings,
)

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

ROOT = Path(__file__).resolve().parents[1]


def _wav(speech_dir: Path, i: int = 0) -> Path:
    return speech_dir / f"utt{i:02d}.wav"


def _duration(path: Path) -> float:
    info = sf.info(str(path))
    return float(info.frames / info.samplerate)


@pytest.fixture(scope="module")
def offline_model(wordy_model: Path) -> Any:
    """The served model loaded by NeMo directly, to compare the server with."""
    from medasr_cli.core.asr_model import load_asr_model

    return load_asr_model(wordy_model, "cpu")


def _offline(model: Any, wav: Path) -> Any:
    """NeMo's own ``transcribe([...], timestamps=True)`` Hypothesis for ``wav``."""
    from medasr_cli.core.asr_model import transcribe_arrays

    audio, _ = sf.read(wav, dtype="float32")
    return transcribe_arrays(model, [audio], batch_size=1, timestamps=True)[0]


def test_json_matches_offline_nemo(
    server: ServerThread, speech_dir: Path, offline_model: Any
) -> None:
    wav = _wav(speech_dir)
    client = openai_client(server)
    raw = client.audio.transcriptions.with_raw_response.create(model=MODEL_ID, file=wav.open("rb"))
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.headers["x-request-id"].startswith("req_")
    body = json.loads(raw.text)
    assert body["usage"] == {"type": "duration", "seconds": math.ceil(_duration(wav))}
    result = raw.parse()
    assert isinstance(result, openai.types.audio.Transcription)
    assert result.text == _offline(offline_model, wav).text.strip() != ""


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


def _in_audio(seconds: float, duration: float) -> float:
    """docs/serve.md: NeMo's times rounded to the millisecond and clamped to the audio."""
    return min(round(max(seconds, 0.0), 3), round(duration, 3))


def test_verbose_json_word_and_segment_times(
    server: ServerThread, speech_dir: Path, offline_model: Any
) -> None:
    client = openai_client(server)
    wav = _wav(speech_dir, 2)
    dur = _duration(wav)
    assert dur < server.settings.max_single_pass_s and dur < server.settings.max_segment_s
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

    # the times are NeMo's own: transcribe(..., timestamps=True) on the same audio, offline
    hyp = _offline(offline_model, wav)
    frame_s = (
        offline_model.cfg.preprocessor.window_stride * offline_model.encoder.subsampling_factor
    )
    nemo_words, nemo_segments = hyp.timestamp["word"], hyp.timestamp["segment"]
    assert [w.word for w in res.words] == [w["word"] for w in nemo_words]
    for got, want in zip(res.words, nemo_words, strict=True):
        assert want["start"] == pytest.approx(want["start_offset"] * frame_s)  # frames x stride
        assert want["end"] == pytest.approx(want["end_offset"] * frame_s)
        assert got.start == pytest.approx(_in_audio(want["start"], dur), abs=1e-3)
        assert got.end == pytest.approx(_in_audio(want["end"], dur), abs=1e-3)
    assert [s.text for s in res.segments] == [s["segment"] for s in nemo_segments]
    for got_s, want_s in zip(res.segments, nemo_segments, strict=True):
        assert got_s.start == pytest.approx(_in_audio(want_s["start"], dur), abs=1e-3)
        assert got_s.end == pytest.approx(_in_audio(want_s["end"], dur), abs=1e-3)


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


def test_batch_mixing_keywords_and_plain_requests(
    server: ServerThread, wordy_model: Path, speech_dir: Path
) -> None:
    """A request with keywords[] and a plain one decoded in the same model call (the runner's
    boosted path with a ``None`` biasing entry): the plain transcript is what it is alone."""
    wav = _wav(speech_dir, 0)
    alone = openai_client(server)  # same model and boosting settings as the server below
    plain_alone = alone.audio.transcriptions.create(model=MODEL_ID, file=wav.open("rb"))
    boosted_alone = alone.audio.transcriptions.create(
        model=MODEL_ID, file=wav.open("rb"), keywords=["metoprolol"]
    )
    # a batch of 2 waits up to 5 s for its second request, so the two always share one call
    srv = ServerThread(server_settings(
        wordy_model, max_batch_size=2, max_wait_ms=5000, keyword_boost_alpha=5.0,
        keyword_context_score=5.0,
    )).start()  # fmt: skip
    try:
        client = openai_client(srv, key="anything")
        create = client.audio.transcriptions.with_raw_response.create
        with cf.ThreadPoolExecutor(2) as pool:
            boosted_job = pool.submit(
                create, model=MODEL_ID, file=wav.open("rb"), keywords=["metoprolol"]
            )
            plain_job = pool.submit(create, model=MODEL_ID, file=wav.open("rb"))
            boosted, plain = boosted_job.result(), plain_job.result()
        metrics = httpx.get(srv.base_url + "/metrics").text
    finally:
        srv.stop()
    assert boosted.status_code == plain.status_code == 200
    assert "medasr_batch_size_count 1.0" in metrics and "medasr_batch_size_sum 2.0" in metrics
    assert plain.parse().text == plain_alone.text
    assert "metoprolol" not in plain.parse().text
    assert boosted.parse().text == boosted_alone.text and "metoprolol" in boosted_alone.text


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


def test_cors_preflight(server: ServerThread, wordy_model: Path, speech_dir: Path) -> None:
    url = "/v1/audio/transcriptions"
    asks = {"Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip
    srv = ServerThread(server_settings(wordy_model, cors_origins=["https://a.example"])).start()
    try:
        pre = httpx.options(srv.base_url + url, headers={"Origin": "https://a.example", **asks})
        other = httpx.options(srv.base_url + url, headers={"Origin": "https://b.example", **asks})
        real = httpx.post(
            srv.base_url + url, headers={"Origin": "https://a.example"}, data={"model": MODEL_ID},
            files={"file": ("a.wav", _wav(speech_dir).read_bytes(), "audio/wav")}, timeout=60,
        )  # fmt: skip
    finally:
        srv.stop()
    assert pre.status_code == 200, pre.text
    assert pre.headers["access-control-allow-origin"] == "https://a.example"
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert {"authorization", "content-type"} <= {
        h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")
    }
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert real.status_code == 200 and real.json()["text"]
    assert real.headers["access-control-allow-origin"] == "https://a.example"
    assert "x-request-id" in real.headers["access-control-expose-headers"].lower()
    off = httpx.options(server.base_url + url, headers={"Origin": "https://a.example", **asks})
    assert "access-control-allow-origin" not in off.headers  # CORS is off unless configured


def test_open_server_warns_at_start(wordy_model: Path, serve_logs: Any) -> None:
    def warnings() -> list[str]:
        return [r.getMessage() for r in serve_logs.records
                if r.name == "medasr_cli.serve.app" and r.levelno == logging.WARNING]  # fmt: skip

    keep_from_nemo(serve_logs)
    ServerThread(server_settings(wordy_model)).start().stop()
    (warning,) = warnings()
    assert "no API keys configured" in warning and "MEDASR_API_KEYS" in warning
    serve_logs.clear()
    ServerThread(server_settings(wordy_model, api_keys=[API_KEY])).start().stop()
    assert warnings() == []
    assert any(r.getMessage().startswith("ready: ") for r in serve_logs.records)  # still captured


def test_readme_serve_examples(
    wordy_model: Path, speech_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """README's curl and openai-SDK examples, run as written against a real server on this
    test's port, and their URL and model id are the server's defaults."""
    from medasr_cli.serve.settings import ServeSettings

    section = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Serving\n")[1]
    section = section.split("\n## ")[0]
    bash, python = (re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
                    for lang in ("bash", "python"))  # fmt: skip
    defaults = ServeSettings.model_fields
    url = f"http://{defaults['host'].default}:{defaults['port'].default}"
    model_id = defaults["model_id"].default
    assert "medasr serve --model run/model.nemo" in bash
    curl = next(line for line in bash.splitlines() if line.startswith("curl "))
    assert f"{url}/v1/audio/transcriptions" in curl and f"model={model_id}" in curl
    assert f'base_url="{url}/v1"' in python and f'model="{model_id}"' in python
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    shutil.copy(_wav(speech_dir, 5), tmp_path / "clip.wav")
    monkeypatch.chdir(tmp_path)
    srv = ServerThread(server_settings(wordy_model)).start()
    try:
        here = srv.base_url
        expected = (
            openai_client(srv)
            .audio.transcriptions.create(model=MODEL_ID, file=(tmp_path / "clip.wav").open("rb"))
            .text
        )
        out = subprocess.run(["bash", "-c", curl.replace(url, here)], capture_output=True,
                             text=True, check=True, timeout=60)  # fmt: skip
        capsys.readouterr()
        exec(compile(python.replace(url, here), "README.md", "exec"), {})
        printed = capsys.readouterr().out
    finally:
        srv.stop()
    assert json.loads(out.stdout)["text"] == expected != ""
    assert printed == expected + "\n"
