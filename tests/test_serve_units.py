"""Pieces of ``medasr serve`` on their own: chunking, caption formats, settings, the batch engine."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("pydantic_settings")

import itertools

from helpers import FakeModel, wav_bytes
from medasr_cli.core.errors import InputError
from medasr_cli.infer.runner import InferItem
from medasr_cli.infer.transcript import (
    Segment,
    Transcript,
    Word,
    merge_chunks,
    plan_chunks,
    split_long_segments,
)
from medasr_cli.serve.engine import BatchEngine, EngineLimits, QueueFull
from medasr_cli.serve.formats import srt, text_pieces, vtt
from medasr_cli.serve.metrics import MovingAverage
from medasr_cli.serve.settings import load_settings


def test_short_audio_is_one_chunk() -> None:
    (only,) = plan_chunks(100.0, 1440.0, 10.0)
    assert (only.start, only.end) == (0.0, 100.0)


def test_chunks_cover_everything_with_overlap() -> None:
    chunks = plan_chunks(3600.0, 1440.0, 10.0)
    assert chunks[0].start == 0.0 and chunks[-1].end == 3600.0
    for a, b in itertools.pairwise(chunks):
        assert b.start < a.end and a.end - b.start == pytest.approx(10.0)
        assert a.keep_to == b.keep_from  # every instant owned by exactly one chunk
    assert all(c.end - c.start <= 1440.0 for c in chunks)


def test_merge_keeps_each_word_once() -> None:
    chunks = plan_chunks(25.0, 10.0, 4.0)  # [0,10] [6,16] [12,22] [18,25]
    words = [(float(t), f"w{t}") for t in range(25)]  # one word per second

    def part(c: object) -> Transcript:
        start, end = c.start, c.end  # type: ignore[attr-defined]
        inside = [
            Word(w, t - start, t - start + 0.5) for t, w in words if start <= t and t + 0.5 <= end
        ]
        return Transcript(" ".join(w.text for w in inside), end - start, inside)

    merged = merge_chunks(chunks, [part(c) for c in chunks], 25.0)
    assert [w.text for w in merged.words] == [w for _, w in words]
    assert merged.text == " ".join(w for _, w in words)
    assert merged.duration == 25.0 and merged.segments


def test_long_segments_split_at_words() -> None:
    words = [Word(f"w{i}", i * 2.0, i * 2.0 + 1.5) for i in range(30)]
    t = Transcript("x", 60.0, words, [Segment("all", 0.0, 59.5)])
    parts = split_long_segments(t, 10.0)
    assert len(parts) > 1 and all(p.end - p.start <= 10.0 for p in parts)
    assert " ".join(p.text for p in parts).split() == [w.text for w in words]


def test_srt_and_vtt_clock() -> None:
    segs = [Segment("hello there", 0.0, 1.5), Segment("general", 3661.25, 3662.0)]
    assert srt(segs) == (
        "1\n00:00:00,000 --> 00:00:01,500\nhello there\n\n2\n01:01:01,250 --> 01:01:02,000\ngeneral\n"
    )
    assert vtt(segs).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nhello there\n")
    assert vtt([]) == "WEBVTT\n\n" and srt([]) == ""


def test_text_pieces_rebuild_text() -> None:
    text = "a  bb c "
    assert "".join(text_pieces(text)) == text.rstrip()


def test_settings_env_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDASR_MODEL", "m.nemo")
    monkeypatch.setenv("MEDASR_API_KEYS", "k1, k2")
    monkeypatch.setenv("MEDASR_CORS_ORIGINS", '["https://a.example"]')
    monkeypatch.setenv("MEDASR_MAX_UPLOAD_MB", "1.5")
    s = load_settings(port=9000)
    assert s.api_key_values() == [b"k1", b"k2"]
    assert s.cors_origins == ["https://a.example"]
    assert s.max_upload_bytes == int(1.5 * 1024 * 1024) and s.port == 9000
    assert s.model_id in s.served_ids and not s.log_transcripts


def test_settings_errors_are_one_line() -> None:
    with pytest.raises(InputError, match="cors"):
        load_settings(model="m.nemo", cors_origins=["*"], cors_allow_credentials=True)
    with pytest.raises(InputError, match="MEDASR_QUEUE_SIZE"):
        load_settings(model="m.nemo", queue_size=0)


def test_moving_average_window() -> None:
    avg = MovingAverage(0.2)
    assert avg.value() == 0.0
    avg.observe(1.0)
    avg.observe(3.0)
    assert avg.value() == 2.0
    time.sleep(0.25)
    assert avg.value() == 0.0


def _item(n: int) -> InferItem:
    return InferItem(np.zeros(n, dtype=np.float32))


def test_engine_batches_on_one_thread() -> None:
    fake = FakeModel()

    async def main() -> list[str]:
        engine = BatchEngine(fake.infer, EngineLimits(max_batch_size=8, max_wait_s=0.02))
        engine.start()
        futs = [f for i in range(20) for f in engine.submit([_item(16000 + i)])]
        results = await asyncio.gather(*futs)
        await engine.stop()
        return [r.transcript.text for r in results]

    texts = asyncio.run(main())
    assert texts == [f"n={16000 + i}" for i in range(20)]  # each result to its own request
    assert max(fake.batches) > 1 and sum(fake.batches) == 20
    assert len(fake.threads) == 1 and fake.max_concurrent == 1


def test_engine_queue_full_and_drain_on_stop() -> None:
    fake = FakeModel(delay=0.1)

    async def main() -> tuple[int, int]:
        engine = BatchEngine(fake.infer, EngineLimits(max_batch_size=1, queue_size=2, max_wait_s=0))
        engine.start()
        accepted, refused = [], 0
        for _ in range(6):
            try:
                accepted += engine.submit([_item(100)])
            except QueueFull:
                refused += 1
        await engine.stop()  # drains what was accepted
        return sum(f.done() and not f.cancelled() for f in accepted), refused

    done, refused = asyncio.run(main())
    assert refused >= 1 and done == 6 - refused


def test_engine_caps_padded_audio_per_batch() -> None:
    fake = FakeModel(delay=0.0)

    async def main() -> None:
        limits = EngineLimits(max_batch_size=8, max_wait_s=0.05, max_batch_audio_s=10.0)
        engine = BatchEngine(fake.infer, limits)
        engine.start()
        futs = [f for _ in range(4) for f in engine.submit([_item(16000 * 4)])]  # 4 s each
        await asyncio.gather(*futs)
        await engine.stop()

    asyncio.run(main())
    assert max(fake.batches) <= 2  # 3 x 4 s would pad to 12 s > 10 s


def test_engine_holds_a_batch_for_requests_still_decoding() -> None:
    """A request still uploading or decoding joins the batch that is forming (up to max_hold)."""
    fake = FakeModel(delay=0.0)

    async def main(hold: float) -> None:
        limits = EngineLimits(max_batch_size=8, max_wait_s=0.01, max_hold_s=hold)
        engine = BatchEngine(fake.infer, limits)
        engine.start()

        async def late() -> None:
            with engine.incoming():
                await asyncio.sleep(0.1)  # decoding its upload
                futs.extend(engine.submit([_item(16000)]))

        futs = list(engine.submit([_item(16000)]))
        task = asyncio.create_task(late())
        await asyncio.sleep(0)
        await task
        await asyncio.gather(*futs)
        await engine.stop()

    asyncio.run(main(hold=1.0))
    assert fake.batches == [2]
    fake.batches.clear()
    asyncio.run(main(hold=0.0))  # only max_wait: the early request runs alone
    assert fake.batches == [1, 1]


def test_ffmpeg_decode_has_a_timeout() -> None:
    import io
    import shutil

    from medasr_cli.serve.decode import DECODE_TIMEOUT_S, DecodeTimeout, decode_upload
    from medasr_cli.serve.settings import ServeSettings

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    assert ServeSettings.model_fields["decode_timeout_s"].default == DECODE_TIMEOUT_S
    buf = io.BytesIO(wav_bytes(2.0, rate=8000, amplitude=0.0))  # 8 kHz: ffmpeg's path
    assert len(decode_upload(buf, 60.0)) == 32000
    started = time.perf_counter()
    with pytest.raises(DecodeTimeout, match=r"limit of 0\.001 s"):
        decode_upload(buf, 60.0, timeout_s=0.001)
    assert time.perf_counter() - started < 5
