"""The ``openai`` backend through the real ``openai`` SDK against a real HTTP server on loopback.

A hosted LLM cannot run here, so the far side of the wire is
:class:`~medasr_cli.llm.stub_server.StubChatServer` (a ThreadingHTTPServer on
127.0.0.1) with canned replies: good ones, malformed JSON, replies missing the
target term, 429s, 500s, slow replies that trip the client timeout, and 401s.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import cli_env, one_error_line, run_cli
from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import read_records
from medasr_cli.core.records import Script, Term, TermCategory
from medasr_cli.llm import BackendOptions, create_backend
from medasr_cli.llm.stub_server import StubChatServer, StubReply, prompt_terms, template_responder
from medasr_cli.script import ScriptRequest, generate_scripts

TERMS = [
    Term(text=name, category=TermCategory.drug)
    for name in ("alphacillin", "betazolam", "gammadex", "deltamab", "epsilonide", "zetavir")
]


class Scenario:
    """Per-term canned behaviour; counts the calls each term received."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> StubReply:
        (term,) = [t.text for t in prompt_terms(body)]
        with self.lock:
            self.calls[term] += 1
            n = self.calls[term]
        return self._reply(term, n, body)

    def _reply(self, term: str, n: int, body: dict[str, Any]) -> StubReply:
        good = template_responder(body)
        if term == "alphacillin" and n == 1:
            return StubReply(status=429, headers={"Retry-After": "0"}, error="slow down")
        if term == "betazolam" and n == 1:
            return StubReply(content='{"dictation": "unterminated')
        if term == "gammadex":  # always answers without the term
            text = (
                "The patient was reviewed in clinic today and is doing well on current treatment."
            )
            return StubReply(content=json.dumps({"dictation": text}))
        if term == "deltamab" and n == 1:
            return StubReply(content=good.content, delay=1.5)  # longer than the client timeout
        if term == "epsilonide" and n == 1:
            return StubReply(status=503, error="overloaded")
        if term == "zetavir":
            time.sleep(0.2)
        return good


@pytest.fixture
def scenario() -> Iterator[tuple[StubChatServer, Scenario]]:
    sc = Scenario()
    with StubChatServer(sc) as server:
        yield server, sc


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDASR_TEST_KEY", "sk-test")


def _config(server: StubChatServer, **kw: Any) -> BackendOptions:
    base: dict[str, Any] = {
        "model": "stub-model",
        "base_url": server.base_url,
        "api_key_env": "MEDASR_TEST_KEY",
        "timeout": 0.5,
        "retries": 2,
        "backoff": 0.01,
        "max_attempts": 3,
        "concurrency": 8,
        "temperature": 0.7,
    }
    base.update(kw)
    return BackendOptions(**base)


def test_retries_and_error_reporting(
    scenario: tuple[StubChatServer, Scenario], api_key: None, tmp_path: Path
) -> None:
    server, sc = scenario
    backend = create_backend("openai", _config(server))
    out = tmp_path / "scripts.jsonl"
    try:
        result = generate_scripts(TERMS, out, backend, ScriptRequest(per_term=1, max_terms=1))
    finally:
        backend.close()
    records = [s for _, s in read_records(out, Script)]
    written = {r.terms[0] for r in records}
    assert written == {"alphacillin", "betazolam", "deltamab", "epsilonide", "zetavir"}
    for rec in records:
        assert rec.terms[0] in rec.text
        g = rec.generator
        assert g.backend == "openai" and g.model == "stub-model" and g.temperature == 0.7
        assert g.prompt_id and g.prompt_id.startswith("dictation_v1@") and g.seed is not None
    # the reply that never contained its term: retried, then reported, never written
    (failure,) = result.failures
    assert failure.request.term_texts == ["gammadex"] and failure.attempts == 3
    assert "lacks target term(s): gammadex" in (failure.error or "")
    assert [t for t, _, _ in result.short()] == ["gammadex"]
    assert sc.calls["gammadex"] == 3
    assert sc.calls["alphacillin"] == 2  # 429 then success
    assert sc.calls["betazolam"] == 2  # malformed JSON then success
    assert sc.calls["deltamab"] == 2  # timeout then success
    assert sc.calls["epsilonide"] == 2  # 503 then success


def test_transport_failures_are_reported_after_retries(api_key: None, tmp_path: Path) -> None:
    always_429 = lambda body: StubReply(status=429, headers={"Retry-After": "0"})  # noqa: E731
    with StubChatServer(always_429) as server:
        backend = create_backend("openai", _config(server, retries=2, max_attempts=2))
        out = tmp_path / "s.jsonl"
        result = generate_scripts(TERMS[:2], out, backend, ScriptRequest(per_term=1, max_terms=1))
        backend.close()
        assert server.requests == 2 * 2 * 3  # 2 requests x 2 attempts x (1 + 2 retries)
    assert len(result.failures) == 2 and all("HTTP 429" in (f.error or "") for f in result.failures)
    assert not out.exists()  # nothing half-written


def test_concurrency_limit_is_respected(api_key: None, tmp_path: Path) -> None:
    lock = threading.Lock()
    state = {"now": 0, "max": 0}

    def slow(body: dict[str, Any]) -> StubReply:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        try:
            time.sleep(0.15)
            return template_responder(body)
        finally:
            with lock:
                state["now"] -= 1

    terms = [Term(text=f"zetavir{i}") for i in range(12)]
    with StubChatServer(slow) as server:
        backend = create_backend("openai", _config(server, concurrency=3, timeout=5))
        start = time.perf_counter()
        opts = ScriptRequest(per_term=1, max_terms=1)
        result = generate_scripts(terms, tmp_path / "s.jsonl", backend, opts)
        elapsed = time.perf_counter() - start
        backend.close()
    assert result.written == 12 and not result.failures
    assert state["max"] == 3  # never more than --concurrency at once, and it was reached
    assert elapsed < 12 * 0.15  # the requests did overlap


@pytest.fixture
def terms_file(tmp_path: Path) -> Path:
    path = tmp_path / "terms.txt"
    path.write_text("metoprolol\tdrug\nhaematoma\tcondition\nscaphoid\tanatomy\n")
    return path


def _env(**extra: str) -> dict[str, str]:
    """The environment without the developer's own OpenAI settings."""
    return cli_env("OPENAI_API_KEY", "OPENAI_BASE_URL", **extra)


def test_cli_openai_end_to_end_then_resume(terms_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "scripts.jsonl"
    with StubChatServer() as server:
        args = ("--terms", str(terms_file), "--out", str(out), "--backend", "openai",
                "--base-url", server.base_url, "--model", "stub", "--per-term", "2")  # fmt: skip
        proc = run_cli("script", *args, env=_env(OPENAI_API_KEY="sk-test"))
        assert proc.returncode == 0, proc.stderr
        first = server.requests
        records = [s for _, s in read_records(out, Script)]
        assert len(records) == first and "all 3 terms reached their target" in proc.stdout
        proc = run_cli("script", *args, env=_env(OPENAI_API_KEY="sk-test"))
        assert proc.returncode == 0 and server.requests == first  # nothing missing, no calls


def test_cli_unreachable_endpoint(terms_file: Path, tmp_path: Path, port: int) -> None:
    out = tmp_path / "scripts.jsonl"
    url = f"http://127.0.0.1:{port}/v1"  # a free port: nothing listens there
    proc = run_cli("script", "--terms", str(terms_file), "--out", str(out), "--backend",
                   "openai", "--base-url", url, "--model", "m", "--retries", "1", "--backoff",
                   "0.01", env=_env(OPENAI_API_KEY="sk-test"))  # fmt: skip
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "cannot reach the LLM endpoint" in line and url in line
    assert not out.exists()


def test_cli_missing_api_key(terms_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "scripts.jsonl"
    args = ("--terms", str(terms_file), "--out", str(out), "--backend", "openai",
            "--base-url", "http://127.0.0.1:9/v1", "--model", "m")  # fmt: skip
    proc = run_cli("script", *args, env=_env())
    assert proc.returncode == 2
    assert "no API key: set the environment variable OPENAI_API_KEY" in one_error_line(proc)
    proc = run_cli("script", *args, "--api-key-env", "MY_LLM_KEY", env=_env())
    assert proc.returncode == 2 and "MY_LLM_KEY" in one_error_line(proc)
    assert not out.exists()


def test_cli_rejected_api_key(terms_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "scripts.jsonl"
    with StubChatServer(lambda body: StubReply(status=401, error="bad key")) as server:
        proc = run_cli("script", "--terms", str(terms_file), "--out", str(out), "--backend",
                       "openai", "--base-url", server.base_url, "--model", "m",
                       env=_env(OPENAI_API_KEY="sk-wrong"))  # fmt: skip
    assert proc.returncode == 2
    assert "rejected the API key (HTTP 401)" in one_error_line(proc)
    assert not out.exists()


def test_cli_prompt_file_missing_placeholders(terms_file: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Write a dictation using $terms.\n")
    out = tmp_path / "scripts.jsonl"
    proc = run_cli("script", "--terms", str(terms_file), "--out", str(out), "--backend",
                   "openai", "--model", "m", "--prompt-file", str(prompt),
                   env=_env(OPENAI_API_KEY="sk-test"))  # fmt: skip
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "prompt.txt" in line and "$note_type, $specialty, $style" in line
    assert not out.exists()


def test_missing_model_is_an_input_error(api_key: None) -> None:
    with pytest.raises(InputError, match="--model is required"):
        create_backend("openai", BackendOptions(api_key_env="MEDASR_TEST_KEY"))
