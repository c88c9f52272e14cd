"""Throughput of ``medasr script``, as JSON lines.

* ``template``: dictations per second of the offline backend, end to end through
  :func:`generate_scripts` (plan, compose, term check, near-duplicate check,
  append to JSONL) for the hardest ``--terms`` seed terms at ``--per-term``;
* ``openai``: requests per second of the openai backend (the real ``openai``
  SDK) at ``--concurrency`` against the local stub endpoint on 127.0.0.1, once
  with instant replies (client + stub overhead) and once with ``--latency`` ms
  of simulated model latency per reply (how well concurrency hides latency).

Run: ``python bench/script_speed.py`` (about half a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from medasr_cli.lexicon import LexiconRequest, build_lexicon
from medasr_cli.llm import BackendOptions, create_backend
from medasr_cli.llm.stub_server import StubChatServer, StubReply, template_responder
from medasr_cli.llm.template import TemplateBackend
from medasr_cli.script import ScriptRequest, generate_scripts


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def bench_template(terms: list[Any], per_term: int, tmp: Path) -> dict[str, Any]:
    out = tmp / "template.jsonl"
    start = time.perf_counter()
    result = generate_scripts(terms, out, TemplateBackend(), ScriptRequest(per_term=per_term))
    seconds = time.perf_counter() - start
    return {
        "bench": "script",
        "backend": "template",
        "terms": len(terms),
        "per_term": per_term,
        "dictations": result.written,
        "duplicates_dropped": len(result.duplicates),
        "seconds": round(seconds, 3),
        "dictations_per_s": round(result.written / seconds, 1),
        "machine": _machine(),
    }


def bench_openai(
    terms: list[Any], concurrency: int, latency_ms: float, tmp: Path
) -> dict[str, Any]:
    def responder(body: dict[str, Any]) -> StubReply:
        reply = template_responder(body)
        reply.delay = latency_ms / 1000
        return reply

    os.environ.setdefault("MEDASR_BENCH_KEY", "sk-bench")
    out = tmp / f"openai-{latency_ms:g}.jsonl"
    with StubChatServer(responder) as server:
        config = BackendOptions(
            model="stub", base_url=server.base_url, api_key_env="MEDASR_BENCH_KEY",
            concurrency=concurrency, timeout=30, retries=0,
        )  # fmt: skip
        backend = create_backend("openai", config)
        start = time.perf_counter()
        result = generate_scripts(terms, out, backend, ScriptRequest(per_term=1, max_terms=1))
        seconds = time.perf_counter() - start
        backend.close()
        requests = server.requests
    return {
        "bench": "script",
        "backend": "openai (local stub endpoint)",
        "concurrency": concurrency,
        "simulated_latency_ms": latency_ms,
        "requests": requests,
        "dictations": result.written,
        "failures": len(result.failures),
        "seconds": round(seconds, 3),
        "requests_per_s": round(requests / seconds, 1),
        "machine": _machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terms", type=int, default=1000, help="seed terms for the template run")
    parser.add_argument("--per-term", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300, help="requests per openai run")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=100.0, help="simulated model ms")
    args = parser.parse_args()
    terms = build_lexicon(LexiconRequest(seed=True, limit=max(args.terms, args.requests))).terms
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(bench_template(terms[: args.terms], args.per_term, Path(tmp))))
        for latency in (0.0, args.latency):
            record = bench_openai(terms[: args.requests], args.concurrency, latency, Path(tmp))
            print(json.dumps(record))


if __name__ == "__main__":
    main()
