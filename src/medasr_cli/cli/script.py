"""``medasr script``: clinical dictations that use every target term, into scripts.jsonl."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from medasr_cli.cli.common import console, err_console, progress_bar
from medasr_cli.core.errors import MedasrError
from medasr_cli.core.shard import parse_shard
from medasr_cli.core.terms import load_terms
from medasr_cli.llm import BACKENDS, BackendOptions, create_backend, grammar
from medasr_cli.script import (
    ScriptRequest,
    ScriptRunResult,
    generate_scripts,
    write_report,
)
from medasr_cli.script.plan import check_choices

HELP = "Generate clinical dictations that use each target term (template offline, or an LLM)."


def script_command(
    terms: Path = typer.Option(
        ..., "--terms", "-t", help="lexicon.jsonl (preferred: carries spoken forms) or terms.txt."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="scripts.jsonl to create or extend (resumable)."
    ),
    backend: str = typer.Option(
        "template", "--backend", "-b", help=f"Generator: {' | '.join(BACKENDS)}."
    ),
    per_term: int = typer.Option(
        3, "--per-term", "-n", help="Dictations each term must appear in."
    ),
    max_terms: int = typer.Option(3, "--max-terms", help="Target terms per dictation (1..N)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the plan and the generators."),
    shard: str | None = typer.Option(
        None, "--shard", help="K/N: generate only shard K of N (a partition by record id)."
    ),
    note_type: list[str] = typer.Option(
        [], "--note-type", help=f"Note types to use (comma list): {', '.join(grammar.NOTE_TYPES)}."
    ),
    specialty: list[str] = typer.Option([], "--specialty", help="Specialties to use (comma list)."),
    style: list[str] = typer.Option(
        [], "--style", help=f"Speaker styles: {', '.join(grammar.STYLES)}."
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", envvar="OPENAI_BASE_URL", help="OpenAI-compatible server (…/v1)."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Chat model name (openai backend)."
    ),
    api_key_env: str = typer.Option(
        "OPENAI_API_KEY", "--api-key-env", help="Environment variable that holds the API key."
    ),
    concurrency: int = typer.Option(8, "--concurrency", help="Parallel LLM requests."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds before one request times out."),
    retries: int = typer.Option(4, "--retries", help="Retries on 429/5xx/timeouts, with backoff."),
    backoff: float = typer.Option(1.0, "--backoff", help="First retry delay in seconds (doubles)."),
    max_attempts: int = typer.Option(
        3, "--max-attempts", help="Tries per dictation when a reply is malformed or lacks a term."
    ),
    temperature: float = typer.Option(
        0.9, "--temperature", help="Sampling temperature (recorded)."
    ),
    prompt_file: Path | None = typer.Option(
        None, "--prompt-file", help="Prompt template with $terms $note_type $specialty $style."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Write the coverage report (JSON) here."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Exit 1 if any term falls short of --per-term."
    ),
) -> None:
    """Plan dictations so each term appears --per-term times, generate the missing ones, append."""
    shard_kn = parse_shard(shard)
    request = ScriptRequest(
        per_term=per_term,
        max_terms=max_terms,
        seed=seed,
        shard=shard_kn,
        note_types=check_choices(note_type, grammar.NOTE_TYPES, "--note-type"),
        specialties=check_choices(specialty, grammar.SPECIALTIES, "--specialty"),
        styles=check_choices(style, grammar.STYLES, "--style"),
    )
    term_list = load_terms(terms)
    config = BackendOptions(
        model=model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
        timeout=timeout, retries=retries, max_attempts=max_attempts, temperature=temperature,
        backoff=backoff, prompt_file=prompt_file,
    )  # fmt: skip
    gen = create_backend(backend, config)
    try:
        with progress_bar(f"generating ({backend})") as update:
            result = generate_scripts(term_list, out, gen, request, progress=update)
    finally:
        gen.close()
    if report is not None:
        write_report(result, report, request)
    _print_summary(result, out, shard)
    if strict and result.short():
        raise MedasrError(f"{len(result.short())} term(s) fell short of --per-term {per_term}")


def _print_summary(result: ScriptRunResult, out: Path, shard: str | None) -> None:
    title = f"script → {out}" + (f" (shard {shard})" if shard else "")
    table = Table(title=title)
    for col in ("planned", "already there", "written", "duplicates dropped", "failed"):
        table.add_column(col, justify="right")
    table.add_row(
        str(result.planned), str(result.existing), str(result.written),
        str(len(result.duplicates)), str(len(result.failures)),
    )  # fmt: skip
    console.print(table)
    for outcome in result.failures[:10]:
        err_console.print(
            f"[yellow]failed[/] {outcome.request.id} ({', '.join(outcome.request.term_texts)}): "
            f"{outcome.error}",
            highlight=False,
        )
    short = result.short()
    if short:
        cov = Table(title=f"coverage: {len(short)} term(s) short")
        for col in ("term", "dictations", "needed"):
            cov.add_column(col, justify="left" if col == "term" else "right")
        for term, have, need in short[:20]:
            cov.add_row(term, str(have), str(need))
        console.print(cov)
    else:
        console.print(f"coverage: all {len(result.needed)} terms reached their target")
