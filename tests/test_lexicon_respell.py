"""``medasr lexicon --respell llm``: TTS respellings from an OpenAI-compatible chat endpoint.

A hosted LLM cannot run here, so the far side of the wire is the local stub server
(:class:`~medasr_cli.llm.stub_server.StubChatServer`, a real HTTP server on 127.0.0.1,
reached through the real ``openai`` SDK): by default it answers the respelling prompt with
a deterministic respelling (:func:`~medasr_cli.llm.stub_server.naive_respelling`); tests
that need bad answers give it their own responder.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers import cli_env, jsonl_records, one_error_line, run_cli
from medasr_cli.core.errors import InputError
from medasr_cli.core.spoken import check_respelling
from medasr_cli.core.terms import bundled_terms
from medasr_cli.lexicon import LexiconRequest, build_lexicon, write_lexicon
from medasr_cli.lexicon.sources import load_pronunciations
from medasr_cli.llm import BackendOptions
from medasr_cli.llm.stub_server import (
    StubChatServer,
    StubReply,
    naive_respelling,
    respell_term,
    template_responder,
)
from medasr_cli.synth.verbalize import Verbalizer, load_respellings

KEY_ENV = "MEDASR_TEST_KEY"


@pytest.fixture
def terms_file(tmp_path: Path) -> Path:
    """Two terms to ask about, and three that must not be asked."""
    path = tmp_path / "terms.txt"
    path.write_text(
        "metoprolol\tdrug\n"  # the bundled table has its respelling
        "tirzepatide\tdrug\n"  # asked
        "mitral regurgitation\tcondition\n"  # asked
        "COPD\tabbreviation\n"  # spoken from the abbreviation table, never respelled
        "heart\tanatomy\n",  # ordinary English: letter-to-sound rules read it right
        encoding="utf-8",
    )
    return path


def _llm(server: StubChatServer, **kw: Any) -> BackendOptions:
    base: dict[str, Any] = {"model": "stub-model", "base_url": server.base_url,
                            "api_key_env": KEY_ENV, "retries": 1, "backoff": 0.01}  # fmt: skip
    base.update(kw)
    return BackendOptions(**base)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")


class Asked:
    """The stub's default answers, counting the terms asked about."""

    def __init__(self) -> None:
        self.terms: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> StubReply:
        term = respell_term(body)
        assert term is not None, "not the respelling prompt"
        with self.lock:
            self.terms[term] += 1
        return template_responder(body)


# --- the convention ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("meh_TOH", "only letters a-z"),
        ("meh--toh", "empty syllable"),
        ("-meh", "empty syllable"),
        ("MeH-toh", "all lower case, or all capitals"),
        ("meh-toh-pruh-lol", "mark the stressed syllable"),
        ("A-pix-uh-ban", "two letters or more"),
        ("MEH-TOH", "mark the stressed syllable"),
        ("meh-TOH\nlol", "more than one line"),
        ("mɛˈtoʊ", "only letters a-z"),
        ("", "empty"),
        ("tirzepatide", "the term as written"),
        ("x" * 121, "longer than"),
    ],
)
def test_bad_respellings_are_refused_with_the_reason(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_respelling(value, "tirzepatide")


def test_the_bundled_respellings_and_the_stub_follow_the_convention() -> None:
    for term, respelling in load_pronunciations().items():
        assert check_respelling(respelling, term) == respelling
    assert check_respelling("IN-suh-lin  GLAR-jeen") == "IN-suh-lin GLAR-jeen"
    for term in bundled_terms()[:2000]:
        check_respelling(naive_respelling(term.text))


# --- the library ----------------------------------------------------------------


def test_respell_llm_fills_only_missing_respellings_and_marks_them(terms_file: Path) -> None:
    asked = Asked()
    with StubChatServer(asked) as server:
        result = build_lexicon(LexiconRequest(terms_files=[terms_file], respell=_llm(server)))
    assert asked.terms == {"tirzepatide": 1, "mitral regurgitation": 1}
    got = {t.text: (t.pronunciation, t.pronunciation_source) for t in result.terms}
    assert got == {
        "metoprolol": ("meh-TOH-pruh-lol", None),
        "tirzepatide": (naive_respelling("tirzepatide"), "llm:stub-model"),
        "mitral regurgitation": (naive_respelling("mitral regurgitation"), "llm:stub-model"),
        "COPD": (None, None),
        "heart": (None, None),
    }
    assert result.respell is not None
    assert (result.respell.made, result.respell.cached, result.respell.failed) == (2, 0, [])


def test_synth_speaks_the_llm_respelling(terms_file: Path, tmp_path: Path) -> None:
    with StubChatServer() as server:
        result = build_lexicon(LexiconRequest(terms_files=[terms_file], respell=_llm(server)))
    _, jsonl = write_lexicon(result, tmp_path / "lex")
    tts_input = Verbalizer(load_respellings(jsonl))("Started tirzepatide today.")
    respelled = naive_respelling("tirzepatide")
    assert respelled.lower() in tts_input.lower() and "tirzepatide" not in tts_input


def test_bad_answers_are_asked_again_then_reported(terms_file: Path) -> None:
    """tirzepatide: a wrong answer, then a good one; mitral regurgitation: never a good one."""
    calls: Counter[str] = Counter()

    def responder(body: dict[str, Any]) -> StubReply:
        term = respell_term(body) or ""
        calls[term] += 1
        if term == "tirzepatide" and calls[term] == 1:
            return StubReply(content=json.dumps({"respelling": "tir_ZEP/a-tide"}))
        if term == "mitral regurgitation":
            return StubReply(content="MY-trul ree-gur-jih-TAY-shun")  # not the JSON object
        return template_responder(body)

    with StubChatServer(responder) as server:
        result = build_lexicon(
            LexiconRequest(terms_files=[terms_file], respell=_llm(server, max_attempts=3))
        )
    assert calls == {"tirzepatide": 2, "mitral regurgitation": 3}
    got = {t.text: t.pronunciation for t in result.terms}
    assert got["tirzepatide"] == naive_respelling("tirzepatide")
    assert got["mitral regurgitation"] is None
    assert result.respell is not None
    assert result.respell.failed == [
        ("mitral regurgitation", "reply is not valid JSON (Expecting value)")
    ]


def test_no_api_key_or_model_is_an_input_error(
    terms_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StubChatServer() as server:
        with pytest.raises(InputError, match="--model is required with --respell llm"):
            build_lexicon(
                LexiconRequest(terms_files=[terms_file], respell=_llm(server, model=None))
            )
        monkeypatch.delenv(KEY_ENV)
        with pytest.raises(InputError, match=f"set the environment variable {KEY_ENV}"):
            build_lexicon(LexiconRequest(terms_files=[terms_file], respell=_llm(server)))
        assert server.requests == 0


# --- the command ------------------------------------------------------------------


def _respell_args(server: StubChatServer, terms_file: Path, out: Path) -> tuple[str, ...]:
    return ("lexicon", "--terms-file", str(terms_file), "-o", str(out), "--respell", "llm",
            "--base-url", server.base_url, "--model", "stub-model", "--api-key-env", KEY_ENV)  # fmt: skip


def test_cli_caches_answers_in_lexicon_jsonl(terms_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "lex"
    env = cli_env("OPENAI_API_KEY", "OPENAI_BASE_URL", **{KEY_ENV: "sk-test"})
    asked = Asked()
    with StubChatServer(asked) as server:
        proc = run_cli(*_respell_args(server, terms_file, out), env=env)
        assert proc.returncode == 0, proc.stderr
        assert "respellings (llm:stub-model): 2 new, 0 from lexicon.jsonl, 0 failed" in proc.stdout
        first = {t["text"]: t for t in jsonl_records(out / "lexicon.jsonl")}
        assert first["tirzepatide"]["pronunciation_source"] == "llm:stub-model"
        proc = run_cli(*_respell_args(server, terms_file, out), env=env)  # the same again
        assert proc.returncode == 0, proc.stderr
        assert "2 new" not in proc.stdout and "0 new, 2 from lexicon.jsonl" in proc.stdout
        assert server.requests == 2 and asked.terms == {"tirzepatide": 1, "mitral regurgitation": 1}
    assert {t["text"]: t for t in jsonl_records(out / "lexicon.jsonl")} == first


def test_cli_unreachable_endpoint_is_one_line_exit_2(
    terms_file: Path, tmp_path: Path, port: int
) -> None:
    out = tmp_path / "lex"
    env = cli_env("OPENAI_API_KEY", "OPENAI_BASE_URL", **{KEY_ENV: "sk-test"})
    proc = run_cli("lexicon", "--terms-file", str(terms_file), "-o", str(out), "--respell", "llm",
                   "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "m", "--api-key-env",
                   KEY_ENV, "--retries", "0", env=env)  # fmt: skip
    assert proc.returncode == 2
    assert "cannot reach the LLM endpoint" in one_error_line(proc)
    assert not out.exists()


def test_cli_unknown_respell_value(terms_file: Path, tmp_path: Path) -> None:
    proc = run_cli("lexicon", "--terms-file", str(terms_file), "-o", str(tmp_path / "x"),
                   "--respell", "espeak")  # fmt: skip
    assert proc.returncode == 2 and "--respell: use one of none, llm" in one_error_line(proc)
