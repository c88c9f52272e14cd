"""Bad and unusual inputs: every one is a clear 4xx or a correct transcript, never a 500.

Containers are made with ffmpeg from an espeak-ng WAV and uploaded with names
that do not say what they are (decoding is by content, not extension).
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from pathlib import Path

import httpx
import openai
import pytest
import soundfile as sf

from helpers import (
    API_KEY,
    MODEL_ID,
    ServerThread,
    ffmpeg,
    openai_client,
    server_settings,
)

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

AUTH = {"Authorization": "Bearer test-key-123"}


def _post(
    srv: ServerThread, content: bytes, name: str = "audio.wav", **data: str
) -> httpx.Response:
    fields = {"model": MODEL_ID, **data}
    return httpx.post(
        srv.base_url + "/v1/audio/transcriptions", headers=AUTH, data=fields,
        files={"file": (name, content, "application/octet-stream")}, timeout=60,
    )  # fmt: skip


def _assert_error(r: httpx.Response, status: int, param: str | None) -> dict[str, object]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param
    assert r.headers["x-request-id"]
    return dict(err)


@pytest.fixture(scope="module")
def wav(speech_dir: Path) -> Path:
    return speech_dir / "utt00.wav"


def test_empty_file(server: ServerThread) -> None:
    err = _assert_error(_post(server, b""), 400, "file")
    assert "empty" in str(err["message"])


def test_truncated_wav(server: ServerThread, wav: Path) -> None:
    data = wav.read_bytes()
    _assert_error(_post(server, data[:44]), 400, "file")  # header only, no samples
    half = _post(server, data[: len(data) // 2], response_format="verbose_json")
    assert half.status_code == 200  # what is there is transcribed, and the duration says so
    assert half.json()["duration"] == pytest.approx(sf.info(str(wav)).duration / 2, abs=0.05)


def test_random_bytes_named_wav(server: ServerThread) -> None:
    err = _assert_error(_post(server, os.urandom(20000), "speech.wav"), 400, "file")
    assert err["code"] == "invalid_file_format"


def test_pdf(server: ServerThread) -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    _assert_error(_post(server, pdf * 50, "report.pdf"), 400, "file")


@pytest.mark.parametrize(
    ("suffix", "args"),
    [("mp3", ()), ("ogg", ("-c:a", "libvorbis")), ("flac", ()), ("m4a", ("-c:a", "aac")),
     ("webm", ("-c:a", "libopus")), ("8k-stereo.wav", ("-ar", "8000", "-ac", "2"))],
)  # fmt: skip
def test_containers_decode_by_content(
    server: ServerThread, wav: Path, tmp_path: Path, suffix: str, args: tuple[str, ...]
) -> None:
    out = ffmpeg(wav, tmp_path / f"clip.{suffix}", *args)
    r = _post(server, out.read_bytes(), "upload.bin", response_format="verbose_json")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"]
    assert body["duration"] == pytest.approx(sf.info(str(wav)).duration, abs=0.1)
    if suffix == "flac":  # lossless: the same transcript as the WAV
        assert body["text"] == _post(server, wav.read_bytes()).json()["text"]


def test_audio_longer_than_max_is_400(
    wordy_model: Path, long_wav: Path, wav: Path, tmp_path: Path
) -> None:
    mp3 = ffmpeg(long_wav, tmp_path / "long.mp3", "-ar", "22050")  # not 16 kHz: ffmpeg decodes it
    srv = ServerThread(server_settings(wordy_model, api_keys=[API_KEY], max_audio_s=10)).start()
    try:
        # a 16 kHz WAV is refused from its header (libsndfile), the MP3 after ffmpeg's capped decode
        refused = [_post(srv, path.read_bytes(), "upload.bin") for path in (long_wav, mp3)]
        fits = _post(srv, wav.read_bytes())
    finally:
        srv.stop()
    assert sf.info(str(long_wav)).duration > 10
    for r in refused:
        err = _assert_error(r, 400, "file")
        assert err["code"] == "audio_too_long" and "limit of 10 s" in str(err["message"])
    assert fits.status_code == 200 and fits.json()["text"]


def test_slow_ffmpeg_decode_is_400(wordy_model: Path, wav: Path, tmp_path: Path) -> None:
    mp3 = ffmpeg(wav, tmp_path / "clip.mp3", "-ar", "22050")  # not 16 kHz: ffmpeg decodes it
    srv = ServerThread(server_settings(wordy_model, decode_timeout_s=0.001)).start()
    try:
        slow = _post(srv, mp3.read_bytes(), "upload.bin")  # ffmpeg cannot even start in 1 ms
        in_process = _post(srv, wav.read_bytes())  # 16 kHz WAV: libsndfile, no ffmpeg
    finally:
        srv.stop()
    err = _assert_error(slow, 400, "file")
    assert err["code"] == "decode_timeout" and "0.001 s" in str(err["message"])
    assert in_process.status_code == 200


def test_missing_file_and_wrong_content_type(server: ServerThread) -> None:
    r = httpx.post(server.base_url + "/v1/audio/transcriptions", headers=AUTH,
                   data={"model": MODEL_ID}, files={"other": ("x.txt", b"x")})  # fmt: skip
    _assert_error(r, 400, "file")
    r = httpx.post(server.base_url + "/v1/audio/transcriptions", headers=AUTH,
                   json={"model": MODEL_ID, "file": "abc"})  # fmt: skip
    assert _assert_error(r, 415, None)["code"] == "unsupported_media_type"


def test_parameter_errors(server: ServerThread, wav: Path) -> None:
    audio = wav.read_bytes()
    _assert_error(_post(server, audio, response_format="docx"), 400, "response_format")
    _assert_error(_post(server, audio, temperature="1.5"), 400, "temperature")
    _assert_error(_post(server, audio, temperature="hot"), 400, "temperature")
    _assert_error(_post(server, audio, **{"timestamp_granularities[]": "word"}), 400,
                  "timestamp_granularities")  # fmt: skip
    _assert_error(_post(server, audio, response_format="verbose_json",
                        **{"timestamp_granularities[]": "char"}), 400, "timestamp_granularities")  # fmt: skip
    _assert_error(_post(server, audio, stream="true", response_format="srt"), 400, "stream")
    _assert_error(_post(server, audio, language="not a language"), 400, "language")
    r = httpx.post(server.base_url + "/v1/audio/transcriptions", headers=AUTH,
                   files={"file": ("a.wav", audio)})  # fmt: skip
    _assert_error(r, 400, "model")


def test_temperature_out_of_range_through_sdk(server: ServerThread, wav: Path) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        openai_client(server).audio.transcriptions.create(model=MODEL_ID, file=wav.open("rb"),
                                                          temperature=1.5)  # fmt: skip
    assert exc.value.response.json()["error"]["param"] == "temperature"


def test_file_over_limit_413(server: ServerThread, wav: Path) -> None:
    limit = server.settings.max_upload_bytes
    big = wav.read_bytes() + b"\0" * (limit + 1000 - wav.stat().st_size)
    with pytest.raises(openai.APIStatusError) as exc:
        openai_client(server).audio.transcriptions.create(model=MODEL_ID, file=("big.wav", big))
    assert exc.value.status_code == 413
    assert exc.value.response.json()["error"]["code"] == "file_too_large"


def _read_response(sock: socket.socket) -> tuple[int, dict[str, object]]:
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _open(srv: ServerThread, extra_headers: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.settings.port), timeout=10)
    sock.sendall(
        (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
         f"Authorization: Bearer test-key-123\r\n"
         f"Content-Type: multipart/form-data; boundary=XyZ\r\n{extra_headers}\r\n").encode()
    )  # fmt: skip
    return sock


def test_413_on_declared_length_without_reading_body(server: ServerThread) -> None:
    sock = _open(server, f"Content-Length: {10 * 1024**3}\r\n")  # claims 10 GiB, sends none
    try:
        t0 = time.perf_counter()
        status, body = _read_response(sock)
        assert status == 413 and body["error"]["code"] == "file_too_large"  # type: ignore[index]
        assert time.perf_counter() - t0 < 5
    finally:
        sock.close()


def test_413_mid_stream_for_chunked_upload(server: ServerThread) -> None:
    """No Content-Length: the server counts while streaming and stops at the limit."""
    limit = server.settings.max_upload_bytes
    sock = _open(server, "Transfer-Encoding: chunked\r\n")
    part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
    piece = b"\0" * 65536
    sent, total = 0, 20 * limit
    try:
        sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered
            try:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(piece)
        status, body = _read_response(sock)
    finally:
        sock.close()
    assert status == 413 and body["error"]["param"] == "file"  # type: ignore[index]
    assert sent < total / 2  # cut off near the limit, not after the whole body
