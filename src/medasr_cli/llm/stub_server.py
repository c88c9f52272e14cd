"""A small OpenAI-compatible chat-completions server on 127.0.0.1.

For tests, benchmarks and offline demos of ``medasr script --backend openai``:
it answers ``POST /v1/chat/completions`` (and ``GET /v1/models``) like an LLM
endpoint. By default the reply is a template dictation for the target terms
it finds in the prompt, or, for the respelling prompt of ``lexicon --respell llm``,
a deterministic respelling of the term (:func:`naive_respelling`); a custom
``responder`` decides the status, body and delay of each reply, so tests can
inject malformed JSON, 429s and slow replies.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from medasr_cli.core.records import Term, TermCategory


@dataclass
class StubReply:
    """What the stub sends back: ``content`` becomes the assistant message (status 200)."""

    content: str | None = None
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    error: str = "stub error"


Responder = Callable[[dict[str, Any]], StubReply]
_TERM_LINE = re.compile(r'^- "(?P<text>[^"]+)" \((?P<cat>[a-z]+)', re.MULTILINE)
_RESPELL_TERM = re.compile(r'^Term: "(?P<text>[^"]+)" \((?P<cat>[a-z]+)\)', re.MULTILINE)
_SYLLABLE = re.compile(r"[^aeiouy]*[aeiouy]+(?:[^aeiouy]+$)?")


def prompt_text(body: dict[str, Any]) -> str:
    """All message contents of a chat request, joined."""
    return "\n".join(str(m.get("content", "")) for m in body.get("messages", []))


def prompt_terms(body: dict[str, Any]) -> list[Term]:
    """The target terms listed in a prompt rendered from the bundled template."""
    out = []
    for m in _TERM_LINE.finditer(prompt_text(body)):
        cat = m.group("cat")
        category = TermCategory(cat) if cat in TermCategory.__members__ else TermCategory.other
        out.append(Term(text=m.group("text"), category=category))
    return out


def respell_term(body: dict[str, Any]) -> str | None:
    """The term a respelling prompt asks about (None for another prompt)."""
    from medasr_cli.llm.respell import PROMPT_MARK

    text = prompt_text(body)
    m = _RESPELL_TERM.search(text)
    return m.group("text") if m and PROMPT_MARK in text else None


def naive_respelling(term: str) -> str:
    """A deterministic respelling in the project's convention: each word cut after its vowel
    groups, the second-last syllable stressed ("metoprolol" -> "me-to-PRO-lol"; a stressed
    syllable has two letters or more, so "ulna" -> "u-LNA")."""
    out = []
    for word in re.findall(r"[a-z]+", term.lower()):
        syllables = _SYLLABLE.findall(word) or [word]
        stress = max(0, len(syllables) - 2)
        if len(syllables[stress]) < 2 and len(syllables) > 1:  # "U-lna": stress "lna" instead
            stress = stress + 1
        out.append("-".join(s.upper() if i == stress else s for i, s in enumerate(syllables)))
    return " ".join(out)


def template_responder(body: dict[str, Any]) -> StubReply:
    """A good reply: a template dictation that uses every listed term, or a respelling."""
    from medasr_cli.llm.base import DictationRequest

    asked = respell_term(body)
    if asked is not None:
        return StubReply(content=json.dumps({"term": asked, "respelling": naive_respelling(asked)}))
    from medasr_cli.llm.template import compose

    terms = tuple(prompt_terms(body)) or (Term(text="auscultation"),)
    req = DictationRequest(
        id=f"stub-{body.get('seed', 0)}",
        terms=terms,
        note_type="clinic letter",
        specialty="general practice",
        style="formal",
        seed=int(body.get("seed") or 0),
    )
    reply = {"dictation": compose(req), "terms_used": [t.text for t in terms]}
    return StubReply(content=json.dumps(reply))


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]}, {})
        else:
            self._send(404, {"error": {"message": "not found"}}, {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "bad JSON"}}, {})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": "not found"}}, {})
            return
        self.server.count()
        reply = self.server.responder(body)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status != 200:
            self._send(reply.status, {"error": {"message": reply.error}}, reply.headers)
            return
        payload = _completion(str(body.get("model", "stub")), reply.content or "")
        self._send(200, payload, reply.headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, responder: Responder) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.responder = responder
        self.requests = 0
        self._lock = threading.Lock()

    def count(self) -> None:
        with self._lock:
            self.requests += 1


class StubChatServer:
    """Run the stub in a background thread: ``with StubChatServer() as s: s.base_url``."""

    def __init__(self, responder: Responder | None = None, port: int = 0) -> None:
        self._server = _Server(port, responder or template_responder)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def requests(self) -> int:
        """How many chat requests arrived."""
        return self._server.requests

    def start(self) -> StubChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StubChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
