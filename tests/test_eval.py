"""`medasr eval`: WER/CER against NeMo and jiwer, term recall/precision, report, sources."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jiwer
import pytest
import soundfile as sf

from helpers import run_cli
from medasr_cli.core.records import Term, TermCategory
from medasr_cli.evaluate.metrics import Pair, evaluate_pairs

WORDS = [
    "the",
    "patient",
    "was",
    "given",
    "metoprolol",
    "and",
    "apixaban",
    "for",
    "atrial",
    "fibrillation",
    "today",
]


def _random_pairs(n: int, seed: int = 0) -> list[Pair]:
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
        hyp = [w for w in ref if rng.random() > 0.15]
        for _ in range(rng.randint(0, 2)):
            hyp.insert(rng.randint(0, len(hyp)), rng.choice(WORDS))
        hyp = [rng.choice(WORDS) if rng.random() < 0.1 else w for w in hyp]
        pairs.append(Pair(id=str(i), reference=" ".join(ref), hypothesis=" ".join(hyp)))
    return pairs


def test_wer_equals_nemo_and_jiwer() -> None:
    pytest.importorskip("nemo.collections.asr")
    from nemo.collections.asr.metrics.wer import word_error_rate

    pairs = _random_pairs(300)
    report = evaluate_pairs(pairs, normalizer="none")
    refs = [p.reference for p in pairs]
    hyps = [p.hypothesis for p in pairs]
    assert report.overall.wer == pytest.approx(word_error_rate(hypotheses=hyps, references=refs))
    assert report.overall.wer == pytest.approx(jiwer.wer(refs, hyps))
    assert report.overall.cer == pytest.approx(
        word_error_rate(hypotheses=hyps, references=refs, use_cer=True)
    )
    assert report.overall.wer > 0.05  # the pairs really contain errors


def _term_report(ref: str, hyp: str, terms: list[Term], normalizer: str = "whisper"):
    return evaluate_pairs([Pair("u", ref, hyp)], normalizer=normalizer, terms=terms)


def _term(text: str, cat: TermCategory = TermCategory.drug, forms: list[str] | None = None) -> Term:
    return Term(text=text, category=cat, spoken_forms=forms or [])


def test_multiword_term_hit_and_miss() -> None:
    term = _term("atrial fibrillation", TermCategory.condition)
    hit = _term_report(
        "known atrial fibrillation on warfarin", "known atrial fibrillation on warfarin", [term]
    )
    assert (hit.per_term[0].expected, hit.per_term[0].hits) == (1, 1)
    sub = _term_report(
        "known atrial fibrillation on warfarin", "known a trial fibrillation on warfarin", [term]
    )
    assert (sub.per_term[0].expected, sub.per_term[0].hits) == (1, 0)
    assert sub.per_term[0].recall == 0.0
    ins = _term_report("atrial fibrillation", "atrial the fibrillation", [term])
    assert ins.per_term[0].hits == 0  # an insertion inside the term breaks it
    dele = _term_report("atrial fibrillation noted", "fibrillation noted", [term])
    assert dele.per_term[0].hits == 0


def test_false_positive_and_precision() -> None:
    term = _term("apixaban")
    r = _term_report("started on rivaroxaban", "started on apixaban", [term])
    (row,) = r.per_term
    assert (row.expected, row.hits, row.false_positives) == (0, 0, 1)
    assert row.recall is None and row.precision == 0.0
    r2 = _term_report("apixaban then apixaban", "apixaban then apixaban", [term])
    assert (r2.per_term[0].hits, r2.per_term[0].false_positives) == (2, 0)


def test_normaliser_applies_to_terms_british_and_possessive() -> None:
    terms = [
        _term("haemoglobin", TermCategory.other),
        _term("Crohn's disease", TermCategory.condition),
    ]
    r = _term_report(
        "Haemoglobin low; known Crohn's disease.", "hemoglobin low known crohn's disease", terms
    )
    by = {t.term: t for t in r.per_term}
    assert by["haemoglobin"].hits == 1 and by["Crohn's disease"].hits == 1
    assert r.overall.wer == 0.0
    # With no normalisation the British/American spellings differ.
    raw = _term_report("haemoglobin low", "hemoglobin low", terms[:1], normalizer="none")
    assert raw.per_term[0].hits == 0


def test_spoken_forms_count_as_the_term() -> None:
    term = _term("b.i.d.", TermCategory.abbreviation, forms=["twice daily"])
    r = _term_report("metoprolol twice daily", "metoprolol twice daily", [term])
    assert r.per_term[0].hits == 1


def test_categories_and_breakdowns() -> None:
    pairs = [
        Pair("a", "give apixaban now", "give apixaban now", {"voice": "en-gb", "snr_db": 12.0}),
        Pair(
            "b", "give apixaban now", "give a picks a band now", {"voice": "en-us", "snr_db": 22.0}
        ),
        Pair("c", "the femur is fine", "the femur is fine", {"voice": "en-us", "snr_db": 23.0}),
    ]
    terms = [_term("apixaban"), _term("femur", TermCategory.anatomy)]
    r = evaluate_pairs(pairs, normalizer="basic", terms=terms, by=["voice", "snr_bucket"])
    cats = {c.category: c for c in r.per_category}
    assert (cats["drug"].expected, cats["drug"].hits) == (2, 1)
    assert cats["anatomy"].recall == 1.0
    voice = {g.value: g for g in r.breakdowns["voice"]}
    assert voice["en-gb"].counts.wer == 0.0 and voice["en-us"].counts.wer > 0
    assert {g.value for g in r.breakdowns["snr_bucket"]} == {"10-15 dB", "20-25 dB"}
    assert r.per_term[0].term == "apixaban"  # lowest recall first
    assert "a picks a band" in r.per_term[0].missed_as[0]


def _pred_manifest(speech_dir: Path, tmp: Path) -> Path:
    rows = []
    for i, wav in enumerate(sorted(speech_dir.glob("*.wav"))):
        ref = wav.with_suffix(".txt").read_text().strip()
        pred = ref.replace("metoprolol", "meta pro lol") if i == 0 else ref
        rows.append({"audio_filepath": str(wav), "duration": sf.info(wav).duration, "text": ref,
                     "pred_text": pred, "voice": "en-us" if i % 2 == 0 else "en-gb"})  # fmt: skip
    path = tmp / "pred.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_eval_cli_with_predictions_writes_report_and_plot(speech_dir: Path, tmp_path: Path) -> None:
    manifest = _pred_manifest(speech_dir, tmp_path)
    terms = tmp_path / "terms.txt"
    terms.write_text("metoprolol\tdrug\napixaban\tdrug\nmitral regurgitation\tcondition\n")
    report, plot = tmp_path / "report.json", tmp_path / "report.png"
    proc = run_cli("eval", "--manifest", str(manifest), "--terms", str(terms), "--by", "voice",
                   "--report", str(report), "--plot", str(plot))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    per_term = {t["term"]: t for t in data["per_term"]}
    assert per_term["metoprolol"]["recall"] == 0.0 and per_term["apixaban"]["recall"] == 1.0
    assert data["overall"]["utterances"] == 6 and data["overall"]["wer"] > 0
    assert {g["value"] for g in data["breakdowns"]["voice"]} == {"en-us", "en-gb"}
    assert data["utterances"][0]["hypothesis"].startswith("The patient was started on meta pro lol")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "metoprolol" in proc.stdout


def test_eval_cli_bad_inputs(speech_dir: Path, tmp_path: Path) -> None:
    no_pred = tmp_path / "m.jsonl"
    wav = str(speech_dir / "utt00.wav")
    no_pred.write_text(json.dumps({"audio_filepath": wav, "duration": 1, "text": "x"}) + "\n")
    report = tmp_path / "r.json"
    cases = [
        (["--manifest", str(tmp_path / "missing.jsonl")], "not found"),
        (["--manifest", str(tmp_path)], "is a directory"),
        (["--manifest", str(no_pred)], "m.jsonl:1: no 'pred_text'"),
        (["--manifest", str(no_pred), "--normalize", "fancy"], "unknown normaliser"),
        (
            ["--manifest", str(no_pred), "--model", str(tmp_path / "nope.nemo")],
            "model file not found",
        ),
        (["--manifest", str(no_pred), "--endpoint", "ftp://x"], "not an http(s) URL"),
    ]
    for args, expected in cases:
        proc = run_cli("eval", *args, "--report", str(report))
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stderr, (args, proc.stderr)
        assert not report.exists()


def test_eval_unreachable_endpoint(speech_dir: Path, tmp_path: Path, port: int) -> None:
    manifest = _pred_manifest(speech_dir, tmp_path)
    proc = run_cli("eval", "--manifest", str(manifest), "--endpoint", f"http://127.0.0.1:{port}/v1")
    assert proc.returncode == 2
    assert f"http://127.0.0.1:{port}/v1: cannot connect" in proc.stderr


class _Transcriber(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible transcription endpoint: echoes the uploaded file's name.

    It stands in for any OpenAI-compatible server so this test checks our side of
    the wire (multipart upload through the real openai SDK, auth header, parsing).
    """

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = (
            self.path == "/v1/audio/transcriptions" and self.headers["Authorization"] == "Bearer k1"
        )
        name = body.split(b'filename="')[1].split(b'"')[0].decode() if ok else ""
        text = Path(name).stem.replace("_", " ")
        payload = json.dumps({"text": text} if ok else {"error": {"message": "bad key"}}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def test_eval_through_openai_compatible_endpoint(speech_dir: Path, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Transcriber)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wav = tmp_path / "give_apixaban_now.wav"
        wav.write_bytes((speech_dir / "utt00.wav").read_bytes())
        manifest = tmp_path / "m.jsonl"
        manifest.write_text(json.dumps({"audio_filepath": str(wav), "duration": 1.0,
                                        "text": "Give apixaban now."}) + "\n")  # fmt: skip
        url = f"http://127.0.0.1:{server.server_address[1]}"
        report = tmp_path / "r.json"
        proc = run_cli("eval", "--manifest", str(manifest), "--endpoint", url, "--api-key", "k1",
                       "--concurrency", "2", "--report", str(report))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(report.read_text())["overall"]["wer"] == 0.0
        proc = run_cli("eval", "--manifest", str(manifest), "--endpoint", url, "--api-key", "bad")
        assert proc.returncode == 2 and "authentication failed" in proc.stderr
    finally:
        server.shutdown()


def test_eval_with_nemo_model_transcribes(
    tiny_model: Path, speech_dir: Path, tmp_path: Path
) -> None:
    manifest = _pred_manifest(speech_dir, tmp_path)
    report = tmp_path / "r.json"
    preds = tmp_path / "preds.jsonl"
    proc = run_cli("eval", "--manifest", str(manifest), "--model", str(tiny_model), "--batch-size",
                   "4", "--device", "cpu", "--report", str(report), "--predictions", str(preds))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["source"]["model"] == str(tiny_model)
    assert data["overall"]["utterances"] == 6
    missing = tmp_path / "missing_audio.jsonl"
    missing.write_text(
        json.dumps({"audio_filepath": "gone.wav", "duration": 1, "text": "x"}) + "\n"
    )
    proc = run_cli("eval", "--manifest", str(missing), "--model", str(tiny_model))
    assert proc.returncode == 2 and "missing_audio.jsonl:1: audio file not found" in proc.stderr
    # The untrained model's output is not the reference; the pipeline is real end to end.
    from nemo.collections.asr.models import ASRModel

    model = ASRModel.restore_from(str(tiny_model), map_location="cpu")
    direct = model.transcribe(
        [str(sorted(speech_dir.glob("*.wav"))[0])], batch_size=1, verbose=False
    )
    assert data["utterances"][0]["hypothesis"] == direct[0].text
    rescored = run_cli("eval", "--manifest", str(preds))
    assert rescored.returncode == 0, rescored.stderr
