"""``medasr lexicon``: compile the target terms into ``terms.txt`` and ``lexicon.jsonl``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from medasr_cli.cli.common import console, err_console, progress_bar
from medasr_cli.core.errors import InputError
from medasr_cli.core.text import NORMALIZERS
from medasr_cli.lexicon import LexiconRequest, LexiconResult, build_lexicon, write_lexicon
from medasr_cli.lexicon.build import LEXICON_JSONL
from medasr_cli.lexicon.rare import DEFAULT_MAX_ZIPF
from medasr_cli.llm import BackendOptions

HELP = "Compile target terms (low eval recall, rare, with spoken forms) into terms.txt + lexicon.jsonl."
RESPELL = ("none", "llm")


def lexicon_command(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder for terms.txt and lexicon.jsonl."
    ),
    terms_file: list[Path] = typer.Option(
        [], "--terms-file", "-t", help="terms.txt (term[TAB]category) or lexicon.jsonl; repeatable."
    ),
    seed: bool = typer.Option(
        False, "--seed", help="Add the bundled offline seed vocabulary (about 3,600 terms)."
    ),
    from_eval: Path | None = typer.Option(
        None, "--from-eval", help="A `medasr eval --report` JSON: use its per-term recall."
    ),
    hunspell: Path | None = typer.Option(
        None,
        "--hunspell",
        help="A Hunspell .dic word list, e.g. /usr/share/hunspell/en_med_glut.dic (hunspell-en-med).",
    ),
    max_recall: float | None = typer.Option(
        None, "--max-recall", help="Drop measured terms whose recall is above this (e.g. 0.8)."
    ),
    min_occurrences: int = typer.Option(
        1, "--min-occurrences", help="Trust a measured recall only with this many occurrences."
    ),
    category: list[str] = typer.Option(
        [], "--category", "-c", help="Keep only these categories, e.g. drug,anatomy (repeatable)."
    ),
    exclude_common: bool = typer.Option(
        False, "--exclude-common", help="Drop terms made only of ordinary English words."
    ),
    limit: int | None = typer.Option(
        None, "--limit", "-k", help="Keep the K hardest terms (lowest recall, then rarest)."
    ),
    normalize: str | None = typer.Option(
        None,
        "--normalize",
        help=f"Normaliser for spoken forms ({'|'.join(NORMALIZERS)}); default: the report's, "
        "else whisper.",
    ),
    pronunciations: Path | None = typer.Option(
        None,
        "--pronunciations",
        help="term<TAB>respelling TSV that overrides the bundled TTS respellings.",
    ),
    rare_words: bool = typer.Option(
        False,
        "--rare-words/--no-rare-words",
        help="With --from-eval: also propose words of the references that are rare in English "
        "(see --rare-max-zipf), that the model missed and that no vocabulary lists, marked "
        "source rare-word:REPORT. Off by default: they come from your own references, which "
        "can hold names of patients, staff or places, so a person should opt in and review "
        "them before they reach an LLM (script) or training data.",
    ),
    rare_max_zipf: float = typer.Option(
        DEFAULT_MAX_ZIPF,
        "--rare-max-zipf",
        help="A word is rare below this Zipf frequency in wordfreq's English list "
        "(3 = once per million words; 'fossa' 2.6, 'apixaban' 1.2, 'patient' 4.8).",
    ),
    respell: str = typer.Option(
        "none",
        "--respell",
        help="TTS respellings (pronunciation, e.g. uh-PIX-uh-ban) for terms without one: none, "
        "or llm to ask the OpenAI-compatible chat endpoint of --base-url/--model (as `script "
        "--backend openai`); answers are checked, cached in the output lexicon.jsonl and "
        "marked pronunciation_source llm:MODEL for review.",
    ),
    base_url: str | None = typer.Option(
        None, "--base-url", envvar="OPENAI_BASE_URL", help="OpenAI-compatible server (…/v1)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Chat model (--respell llm)."),
    api_key_env: str = typer.Option(
        "OPENAI_API_KEY", "--api-key-env", help="Environment variable that holds the API key."
    ),
    concurrency: int = typer.Option(8, "--concurrency", help="Parallel LLM requests."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds before one request times out."),
    retries: int = typer.Option(4, "--retries", help="Retries on 429/5xx/timeouts, with backoff."),
    backoff: float = typer.Option(1.0, "--backoff", help="First retry delay in seconds (doubles)."),
    max_attempts: int = typer.Option(
        3, "--max-attempts", help="Tries per term when an answer is not a valid respelling."
    ),
    temperature: float = typer.Option(0.2, "--temperature", help="Sampling temperature."),
    show: int = typer.Option(15, "--show", help="Lowest-recall terms to print."),
) -> None:
    """Merge term sources, keep the hard ones, add spoken forms, and write both outputs."""
    if respell not in RESPELL:
        raise InputError(f"--respell: use one of {', '.join(RESPELL)}, not '{respell}'")
    llm = None
    if respell == "llm":
        llm = BackendOptions(
            model=model, base_url=base_url, api_key_env=api_key_env, concurrency=concurrency,
            timeout=timeout, retries=retries, max_attempts=max_attempts,
            temperature=temperature, backoff=backoff,
        )  # fmt: skip
    request = LexiconRequest(
        terms_files=terms_file,
        seed=seed,
        from_eval=from_eval,
        hunspell=hunspell,
        max_recall=max_recall,
        min_occurrences=min_occurrences,
        categories=category,
        exclude_common=exclude_common,
        limit=limit,
        normalizer=normalize,
        pronunciations=pronunciations,
        rare_words=rare_words,
        rare_max_zipf=rare_max_zipf,
        respell=llm,
        respell_cache=out / LEXICON_JSONL,
    )
    if llm is None:
        result = build_lexicon(request)
    else:
        with progress_bar("respelling (llm)") as update:
            result = build_lexicon(request, progress=update)
    txt, jsonl = write_lexicon(result, out)
    _print_summary(result, show)
    console.print(f"wrote [bold]{txt}[/] and [bold]{jsonl}[/]")


def _print_summary(result: LexiconResult, show: int) -> None:
    table = Table(
        title=f"lexicon: {len(result.terms)} of {result.read} terms ({result.normalizer} normaliser)"
    )
    table.add_column("category")
    table.add_column("terms", justify="right")
    for name, count in result.per_category().items():
        table.add_row(name, str(count))
    for reason, count in sorted(result.dropped.items()):
        table.add_row(f"[dim]dropped: {reason}[/]", f"[dim]{count}[/]")
    proposed = result.proposed
    table.add_row("[yellow]rare words proposed (review)[/]", f"[yellow]{len(proposed)}[/]")
    console.print(table)
    if proposed and show:
        rare = Table(title="rare words proposed (in no vocabulary; source rare-word: review)")
        for col in ("word", "recall", "occurrences", "heard as"):
            rare.add_column(col, justify="right" if col in ("recall", "occurrences") else "left")
        for term in proposed[:show]:
            rare.add_row(term.text, f"{100 * (term.prior_recall or 0.0):.1f}%",
                         str(result.occurrences.get(term.text, "")),
                         ", ".join(result.missed_as.get(term.text, [])[:3]))  # fmt: skip
        console.print(rare)
    stats = result.respell
    if stats is not None:
        console.print(
            f"respellings (llm:{stats.model}): {stats.made} new, {stats.cached} from "
            f"{LEXICON_JSONL}, {len(stats.failed)} failed; review pronunciation_source llm:*"
        )
        for text, why in stats.failed[:10]:
            err_console.print(f"[yellow]no respelling[/] {text}: {why}", highlight=False)
    measured = [t for t in result.terms if t.prior_recall is not None]
    if measured and show:
        low = Table(title="lowest-recall terms")
        for col in ("term", "category", "recall", "occurrences", "spoken forms"):
            low.add_column(col, justify="right" if col in ("recall", "occurrences") else "left")
        for term in sorted(measured, key=lambda t: t.prior_recall or 0.0)[:show]:
            low.add_row(
                term.text,
                term.category.value,
                f"{100 * (term.prior_recall or 0.0):.1f}%",
                str(result.occurrences.get(term.text, "")),
                ", ".join(term.spoken_forms[:3]),
            )
        console.print(low)
