"""The one inference path of ``eval --model`` and ``serve``: same text, long audio, OOM splitting.

Real parts throughout: NeMo's FastConformer-TDT (the session's ``wordy_model``), its
``transcribe()``, ``change_attention_model`` for local attention, the ``medasr`` CLI in a
subprocess, a real uvicorn server and the ``openai`` SDK. The one stand-in is the out-of-memory
error, which a CPU cannot be made to raise on demand: a runner raises the real
``torch.OutOfMemoryError`` type for batches above a size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import soundfile as sf

from helpers import (
    MODEL_ID,
    FakeRunner,
    ServerThread,
    fake_client,
    fake_transcript,
    free_port,
    jsonl_records,
    openai_client,
    post_audio,
    run_cli,
    server_settings,
    wait_process_ready,
    wav_bytes,
)
from medasr_cli.infer.files import BatchLimits, fits, transcribe_paths
from medasr_cli.infer.limits import ModelShape, PassLimits, estimate_limits
from medasr_cli.infer.runner import InferItem, ModelRunner, PieceTooLarge, RunnerOptions
from medasr_cli.infer.transcript import Transcript

pytest.importorskip("nemo.collections.asr")

# Small limits so a one-minute file exercises all three regimes: full attention up to 20 s,
# local attention up to 40 s, overlapping chunks beyond.
LIMITS = {"full_attention_s": 20.0, "max_single_pass_s": 40.0, "chunk_overlap_s": 4.0}
FLAGS = ["--full-attention-s", "20", "--max-single-pass-s", "40", "--chunk-overlap-s", "4"]


def _speech(speech_dir: Path) -> np.ndarray:
    parts = []
    for wav in sorted(speech_dir.glob("utt*.wav")):
        audio, _ = sf.read(wav, dtype="float32")
        parts += [audio, np.zeros(8000, dtype=np.float32)]
    return np.concatenate(parts)


def _recording(speech_dir: Path, seconds: float, path: Path) -> Path:
    """``seconds`` of the session's espeak speech, repeated, as 16 kHz FLAC."""
    one = _speech(speech_dir)
    n = int(seconds * 16000)
    sf.write(path, np.tile(one, n // len(one) + 1)[:n], 16000, format="FLAC")
    return path


@pytest.fixture(scope="module")
def mixed_manifest(speech_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Short utterances, a 30 s file (local attention) and a 65 s file (two chunks)."""
    root = tmp_path_factory.mktemp("mixed")
    rows = []
    for wav in sorted(speech_dir.glob("utt*.wav")):
        text = wav.with_suffix(".txt").read_text().strip()
        rows.append({"audio_filepath": str(wav), "duration": sf.info(wav).duration, "text": text})
    for secs in (30, 65):
        path = _recording(speech_dir, secs, root / f"long{secs}.flac")
        rows.append({"audio_filepath": str(path), "duration": float(secs), "text": "long"})
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def _eval_texts(manifest: Path, model: Path, out: Path, *flags: str) -> list[str]:
    preds = out / "preds.jsonl"
    proc = run_cli("eval", "--manifest", str(manifest), "--model", str(model), "--device", "cpu",
                   "--predictions", str(preds), "--report", str(out / "r.json"), *flags)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [r["pred_text"] for r in jsonl_records(preds)]


def test_eval_model_and_serve_give_the_same_text(
    mixed_manifest: Path, wordy_model: Path, tmp_path: Path
) -> None:
    """Same file, same settings: eval --model, the server, and eval --endpoint agree word for word."""
    texts = _eval_texts(mixed_manifest, wordy_model, tmp_path, "--batch-size", "4", *FLAGS)
    report = json.loads((tmp_path / "r.json").read_text())
    how = report["source"]["inference"]
    assert how["full_attention_s"] == 20 and how["max_single_pass_s"] == 40
    assert how["precision"] == "fp32" and how["device"] == "cpu"
    rows = jsonl_records(mixed_manifest)
    assert all(texts) and len(texts[-1].split()) > len(texts[-2].split()) > len(texts[0].split())

    srv = ServerThread(server_settings(wordy_model, max_batch_size=4, **LIMITS)).start()
    try:
        client = openai_client(srv)
        served = []
        for r in rows:
            with Path(r["audio_filepath"]).open("rb") as fh:
                served.append(client.audio.transcriptions.create(model=MODEL_ID, file=fh).text)
        via_endpoint = _endpoint_texts(mixed_manifest, srv, tmp_path)
    finally:
        srv.stop()
    assert served == texts
    assert via_endpoint == texts


def _endpoint_texts(manifest: Path, srv: ServerThread, out: Path) -> list[str]:
    preds = out / "endpoint.jsonl"
    proc = run_cli("eval", "--manifest", str(manifest), "--endpoint", srv.base_url + "/v1",
                   "--predictions", str(preds))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [r["pred_text"] for r in jsonl_records(preds)]


def test_batch_company_does_not_change_a_pieces_text(wordy_model: Path, speech_dir: Path) -> None:
    """A long (local-attention) piece in a batch of short ones decodes as it does alone."""
    runner = ModelRunner(RunnerOptions(model=str(wordy_model), device="cpu", **LIMITS))
    runner.load()
    speech = _speech(speech_dir)
    long_piece = InferItem(np.tile(speech, 2)[: 30 * 16000])
    shorts = [InferItem(speech[: k * 16000]) for k in (3, 5, 8)]
    alone = [runner.infer([it])[0].text for it in [*shorts, long_piece]]
    together = [t.text for t in runner.infer([shorts[0], long_piece, *shorts[1:]])]
    assert together == [alone[0], alone[3], alone[1], alone[2]]
    # local attention was switched back: short pieces decode as before the long one
    assert [runner.infer([it])[0].text for it in shorts] == alone[:3]


def test_long_pieces_use_local_attention(wordy_model: Path, speech_dir: Path) -> None:
    """Past the full-attention limit NeMo's local attention runs, then the model's own returns."""
    runner = ModelRunner(RunnerOptions(model=str(wordy_model), device="cpu", **LIMITS))
    runner.load()
    seen: list[str] = []
    encoder = runner.model.encoder
    original = encoder.forward

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(encoder.self_attention_model)
        return original(*args, **kwargs)

    encoder.forward = spy
    speech = np.tile(_speech(speech_dir), 2)
    runner.infer([InferItem(speech[: 10 * 16000])])
    runner.infer([InferItem(speech[: 30 * 16000])])
    runner.infer([InferItem(speech[: 10 * 16000])])
    assert seen == ["rel_pos", "rel_pos_local_attn", "rel_pos"]
    assert encoder.att_context_size == [-1, -1]


def test_pass_limits_follow_free_memory() -> None:
    parakeet = ModelShape(heads=8, d_model=1024, frames_per_s=12.5, mel_per_s=100, features=128,
                          conv_channels=256, ff_expansion=4)  # fmt: skip
    gib = 1024**3
    small = estimate_limits(parakeet, 8 * gib, 2)
    large = estimate_limits(parakeet, 140 * gib, 2)
    assert small.full_attention_s < large.full_attention_s <= 1440
    assert small.full_attention_s % 60 == 0 and small.full_attention_s >= 60
    assert small.single_pass_s > small.full_attention_s  # local attention reaches further
    assert large.single_pass_s == 3 * 3600
    limits = PassLimits(full_attention_s=600, single_pass_s=3600)
    assert not limits.needs_local(600) and limits.needs_local(601)


def test_batches_respect_the_padded_audio_cap() -> None:
    assert fits([], 10**9, 1.0)  # a piece alone always runs
    assert fits([16000], 16000, 2.0) and not fits([16000], 16000, 1.9)
    assert not fits([16000 * 10], 16000, 15.0)  # padded to the longest: 2 x 10 s


def test_files_are_batched_longest_first_and_returned_in_order(
    wordy_model: Path, mixed_manifest: Path
) -> None:
    rows = jsonl_records(mixed_manifest)
    runner = ModelRunner(RunnerOptions(model=str(wordy_model), device="cpu", **LIMITS))
    runner.load()
    batches: list[list[float]] = []
    infer = runner.infer

    def record(items: Sequence[InferItem]) -> list[Transcript]:
        batches.append([round(it.duration, 1) for it in items])
        return infer(items)

    runner.infer = record  # type: ignore[method-assign]
    paths = [r["audio_filepath"] for r in rows]
    out = transcribe_paths(runner, paths, [r["duration"] for r in rows],
                           limits=BatchLimits(max_batch_size=4, max_batch_audio_s=60))  # fmt: skip
    assert [t.duration for t in out] == pytest.approx([r["duration"] for r in rows], abs=0.01)
    lengths = [d for b in batches for d in b]
    assert lengths[:2] == [40.0, 29.0]  # the 65 s file first, as two chunks (4 s overlap)
    assert lengths[2:] == sorted(lengths[2:], reverse=True)  # then longest first: little padding
    assert all((len(b) <= 4 and max(b) * len(b) <= 60) or len(b) == 1 for b in batches)
    assert len(lengths) == len(rows) + 1


@pytest.mark.slow
def test_thirty_minute_recording_eval_and_serve(
    wordy_model: Path, speech_dir: Path, tmp_path: Path
) -> None:
    """A 30-minute consultation on the shipped defaults: finishes, bounded memory, same text.

    Before the shared runner, eval sent such a file to full attention in one pass and tried to
    allocate 28 GB. Peak RSS of each process is printed for the record.
    """
    audio = _recording(speech_dir, 1800, tmp_path / "consultation.flac")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(audio), "duration": 1800.0, "text": "x"}))
    code = (
        "import resource, sys; from medasr_cli.cli.app import main; "
        "sys.argv = ['medasr'] + sys.argv[1:]\n"
        "try: main()\n"
        "finally: print('PEAK_RSS_MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,"
        " file=sys.stderr)"
    )
    preds = tmp_path / "p.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", code, "eval", "--manifest", str(manifest), "--model", str(wordy_model),
         "--device", "cpu", "--predictions", str(preds)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    eval_peak = int(proc.stderr.rsplit("PEAK_RSS_MB", 1)[1].split()[0])
    eval_text = jsonl_records(preds)[0]["pred_text"]
    assert len(eval_text.split()) > 1000

    served, serve_peak = _serve_once(wordy_model, audio)
    print(f"30-minute recording: eval peak RSS {eval_peak} MB, serve peak RSS {serve_peak} MB")
    assert served == eval_text
    assert eval_peak < 6000 and serve_peak < 6000  # one full-attention pass: tens of GB


def _serve_once(model: Path, audio: Path) -> tuple[str, int]:
    """Transcribe one file with a ``medasr serve`` subprocess; its text and peak RSS (MB)."""
    import openai

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "medasr_cli", "serve", "--model", str(model), "--port", str(port),
         "--device", "cpu", "--max-upload-mb", "100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_process_ready(base, proc, 180)
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", timeout=900, max_retries=0)
        text = client.audio.transcriptions.create(model=MODEL_ID, file=audio.open("rb")).text
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak_kb = int(next(ln for ln in status.splitlines() if ln.startswith("VmHWM")).split()[1])
        return text, peak_kb // 1024
    finally:
        proc.terminate()
        proc.wait(30)


# --- out of memory ----------------------------------------------------------------------------


class OomRunner(FakeRunner):
    """The real splitting logic of :class:`ModelRunner` over a decoder that raises the real
    ``torch.OutOfMemoryError`` type for more than ``fit`` pieces (a stand-in: a CPU cannot be
    made to run out of GPU memory on demand)."""

    def __init__(self, fit: int) -> None:
        super().__init__()
        self.fit = fit
        self.sizes: list[int] = []

    infer = ModelRunner.infer  # type: ignore[assignment]

    def _decode(self, items: Sequence[InferItem], local: bool) -> list[Transcript]:
        import torch

        self.sizes.append(len(items))
        if len(items) > self.fit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [fake_transcript(it) for it in items]


def test_out_of_memory_splits_the_batch_until_it_fits() -> None:
    runner = OomRunner(fit=2)
    runner.load()
    items = [InferItem(np.full(16000 * (k + 1), 0.1, dtype=np.float32)) for k in range(5)]
    out = runner.infer(items)
    assert [t.text for t in out] == [fake_transcript(it).text for it in items]
    assert runner.sizes == [5, 2, 3, 1, 2]
    assert runner.oom_splits == 2


def test_a_piece_that_never_fits_is_an_error_that_says_why() -> None:
    runner = OomRunner(fit=0)
    runner.load()
    with pytest.raises(PieceTooLarge, match="does not fit in the free memory"):
        runner.infer([InferItem(np.zeros(16000 * 3, dtype=np.float32))])


def test_serve_splits_on_oom_and_answers_413_for_what_cannot_fit() -> None:
    runner = OomRunner(fit=1)
    with fake_client(runner, max_batch_size=8, max_wait_ms=200) as client:
        results: list[Any] = []

        def send() -> None:
            results.append(post_audio(client, wav_bytes(2.0, amplitude=0.1)))

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in results] == [200] * 4
        assert max(runner.sizes) > 1  # a batch formed, ran out of memory and was split
        metrics = client.get("/metrics").text
        splits = next(ln for ln in metrics.splitlines() if ln.startswith("medasr_oom_splits_total"))
        assert float(splits.split()[-1]) >= 1
        runner.fit = 0
        res = post_audio(client, wav_bytes(2.0, amplitude=0.1))
        assert res.status_code == 413
        assert res.json()["error"]["code"] == "audio_too_long"
        assert "free memory" in res.json()["error"]["message"]


# --- eval --endpoint: long requests are not sent twice ------------------------------------------


class _Flaky(BaseHTTPRequestHandler):
    """An endpoint stand-in (the real server cannot be made to answer 503 then 200 on cue)."""

    plan: ClassVar[list[str]] = []
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        action = self.plan.pop(0) if self.plan else "ok"
        self.seen.append(action)
        if action == "503":
            self._send(503, {"error": {"message": "busy", "type": "server_error"}}, retry="0")
        elif action == "slow":
            time.sleep(3)
            self._send(200, {"text": "late"})
        else:
            self._send(200, {"text": "hello"})

    def _send(self, status: int, body: dict[str, Any], retry: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry is not None:
            self.send_header("Retry-After", retry)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Flaky.seen = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_endpoint_retries_only_requests_the_server_did_not_take(
    flaky: str, speech_dir: Path, tmp_path: Path
) -> None:
    from medasr_cli.core.errors import MedasrError
    from medasr_cli.evaluate.sources import load_manifest, pairs_from_endpoint, request_timeout

    wav = sorted(speech_dir.glob("utt*.wav"))[0]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(wav), "duration": 1.0, "text": "x"}))
    entries = load_manifest(manifest)
    _Flaky.plan = ["503", "503", "ok"]
    pairs = pairs_from_endpoint(flaky, entries, concurrency=1)
    assert pairs[0].hypothesis == "hello" and _Flaky.seen == ["503", "503", "ok"]

    _Flaky.seen, _Flaky.plan = [], ["slow"]
    with pytest.raises(MedasrError, match="no answer within"):
        pairs_from_endpoint(flaky, entries, concurrency=1, timeout=0.5)
    time.sleep(3)
    assert _Flaky.seen == ["slow"]  # a timed-out request is not sent again
    assert request_timeout(1800.0, 120.0) > request_timeout(10.0, 120.0) >= 120.0


# --- streaming ----------------------------------------------------------------------------------


def test_stream_sends_each_chunks_text_before_the_next_chunk_is_decoded() -> None:
    """stream=true decodes in --stream-chunk-s chunks, and the first text leaves before the last
    chunk has been decoded: the runner holds the last chunk until the client has read a delta
    (a buffered stream would never release it)."""
    first_delta = threading.Event()

    def infer(items: Sequence[InferItem]) -> list[Transcript]:
        if runner.calls == 3 and not first_delta.wait(20):
            raise RuntimeError("no text reached the client before the last chunk")
        return [fake_transcript(it) for it in items]

    runner = FakeRunner(infer_fn=infer)
    with fake_client(runner, stream_chunk_s=5, chunk_overlap_s=1, max_batch_size=1) as client:
        events = []
        with client.stream("POST", "/v1/audio/transcriptions",
                           data={"model": MODEL_ID, "stream": "true"},
                           files={"file": ("a.wav", wav_bytes(12.0), "audio/wav")}) as res:  # fmt: skip
            assert res.status_code == 200
            for line in res.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    first_delta.set()
        assert runner.calls == 3  # 12 s in chunks of 5 s with 1 s overlap
        assert events[-1]["type"] == "transcript.text.done"
        assert "".join(e["delta"] for e in events[:-1]) == events[-1]["text"]
        runner.calls = 0
        assert post_audio(client, wav_bytes(12.0)).status_code == 200
        assert runner.calls == 1  # without stream: one pass (the single-pass limit is far longer)
