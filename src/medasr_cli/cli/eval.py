"""``medasr eval``: WER/CER and medical-term recall of a model, endpoint or predictions."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from medasr_cli.cli.common import console, progress_bar
from medasr_cli.core.errors import InputError
from medasr_cli.core.terms import load_terms
from medasr_cli.core.text import NORMALIZERS, get_normalizer
from medasr_cli.evaluate.metrics import EvalReport
from medasr_cli.evaluate.run import run_eval, write_predictions, write_report
from medasr_cli.infer.files import BatchLimits
from medasr_cli.infer.runner import OPTION_HELP, RunnerOptions

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

HELP = "Score WER/CER and medical-term recall from a manifest, a NeMo model or an endpoint."


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def eval_command(
    manifest: Path = typer.Option(
        ..., "--manifest", "-m", help="NeMo JSONL manifest (audio_filepath, duration, text)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="A .nemo file or hub name to transcribe the manifest with."
    ),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="OpenAI-compatible server URL (e.g. http://127.0.0.1:8000/v1)."
    ),
    endpoint_model: str = typer.Option(
        "parakeet-tdt-0.6b-v2", "--endpoint-model", help="Model name sent to --endpoint."
    ),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="MEDASR_API_KEY",
        help="API key for --endpoint (or env MEDASR_API_KEY / OPENAI_API_KEY).",
    ),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Parallel endpoint requests."),
    timeout: float = typer.Option(
        120.0,
        "--timeout",
        min=1,
        help="Seconds to wait for one --endpoint answer, plus twice the audio's length (a "
        "timed-out request is not sent again; a connection error or 503 is, 3 times).",
    ),
    batch_size: int = typer.Option(
        16, "--batch-size", min=1, help="For --model: " + OPTION_HELP["max_batch_size"]
    ),
    max_batch_audio_s: float = typer.Option(
        1440.0, "--max-batch-audio-s", min=1, help=OPTION_HELP["max_batch_audio_s"]
    ),
    device: str = typer.Option("auto", "--device", help=OPTION_HELP["device"]),
    precision: str = typer.Option("auto", "--precision", help=OPTION_HELP["precision"]),
    cpu_threads: int | None = typer.Option(
        None, "--cpu-threads", min=1, help=OPTION_HELP["cpu_threads"]
    ),
    full_attention_s: float | None = typer.Option(
        None, "--full-attention-s", min=1, help=OPTION_HELP["full_attention_s"]
    ),
    max_single_pass_s: float | None = typer.Option(
        None, "--max-single-pass-s", min=2, help=OPTION_HELP["max_single_pass_s"]
    ),
    chunk_overlap_s: float = typer.Option(
        10.0, "--chunk-overlap-s", min=0, help=OPTION_HELP["chunk_overlap_s"]
    ),
    keywords: Path | None = typer.Option(
        None,
        "--keywords",
        help="terms.txt or lexicon.jsonl: boost these terms in every utterance, as serve does "
        "with a request's keywords[] (for --model).",
    ),
    terms: list[Path] = typer.Option(
        [],
        "--terms",
        help="terms.txt (term[TAB]category) or lexicon.jsonl for term recall (repeatable).",
    ),
    bundled_terms: bool | None = typer.Option(
        None,
        "--bundled-terms/--no-bundled-terms",
        help="Also measure every term of the bundled vocabulary (about 3,660 drugs, conditions, "
        "anatomy, procedures, abbreviations) found in the references. Default: on without "
        "--terms, off with it.",
        show_default=False,
    ),
    normalize: str = typer.Option(
        "clinical",
        "--normalizer",
        "--normalize",
        help=f"Text normaliser for refs, hyps and terms: {'|'.join(NORMALIZERS)}.",
    ),
    by: list[str] = typer.Option(
        [], "--by", help="Break results down by a metadata field (repeatable; snr_bucket derived)."
    ),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Write the full JSON report here (read by `medasr lexicon --from-eval`).",
    ),
    predictions: Path | None = typer.Option(
        None, "--predictions", help="Write the manifest with pred_text here."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG chart here."),
    show_terms: int = typer.Option(15, "--show-terms", help="Lowest-recall terms to print."),
) -> None:
    """Score transcripts against references with one normaliser for text and terms."""
    get_normalizer(normalize)  # fail fast on a bad name
    if endpoint and not api_key:
        api_key = os.environ.get("OPENAI_API_KEY")
    for out in (report, predictions, plot):
        if out is not None and out.is_dir():
            raise InputError(f"{out}: is a directory, expected a file path")
    if precision not in PRECISIONS:
        raise InputError(f"--precision: use one of {', '.join(PRECISIONS)}, not '{precision}'")
    runner = None
    if model is not None:
        runner = RunnerOptions(
            model=model,
            device=device,
            cpu_threads=cpu_threads,
            precision=precision,
            full_attention_s=full_attention_s,
            max_single_pass_s=max_single_pass_s,
            chunk_overlap_s=chunk_overlap_s,
        )
    boost = tuple(t.text for t in load_terms(keywords)) if keywords else ()
    with progress_bar("transcribing") as update:
        result = run_eval(
            manifest,
            model=runner,
            batch_limits=BatchLimits(batch_size, max_batch_audio_s),
            keywords=boost,
            endpoint=endpoint,
            endpoint_model=endpoint_model,
            api_key=api_key,
            concurrency=concurrency,
            timeout=timeout,
            terms_paths=terms,
            bundled=bundled_terms,
            normalizer=normalize,
            by=by,
            progress=update,
        )
    _print_summary(result, show_terms)
    if report:
        write_report(result, report)
    if predictions:
        write_predictions(result, predictions)
    if plot:
        from medasr_cli.evaluate.plot import plot_report

        plot_report(result, plot)


def _print_summary(report: EvalReport, show_terms: int) -> None:
    overall = report.overall
    table = Table(title=f"eval ({report.normalizer} normaliser)")
    for col in (
        "utterances",
        "words",
        "WER",
        "CER",
        "sub",
        "del",
        "ins",
        "term recall",
        "term precision",
        "M-WER",
    ):
        table.add_column(col, justify="right")
    table.add_row(
        str(overall.utterances), str(overall.ref_words), _pct(overall.wer), _pct(overall.cer),
        str(overall.substitutions), str(overall.deletions), str(overall.insertions),
        _pct(report.terms.recall), _pct(report.terms.precision), _pct(report.terms.medical_wer),
    )  # fmt: skip
    console.print(table)
    if report.source.get("terms"):
        console.print(f"[dim]terms from: {', '.join(map(str, report.source['terms']))}[/]")
    if report.per_category:
        categories = Table(title="terms by category")
        for col in ("category", "expected", "hits", "false +", "recall", "precision", "M-WER"):
            categories.add_column(col, justify="left" if col == "category" else "right")
        for row in report.per_category:
            categories.add_row(row.category or "", str(row.expected), str(row.hits),
                               str(row.false_positives), _pct(row.recall), _pct(row.precision),
                               _pct(row.medical_wer))  # fmt: skip
        console.print(categories)
    if report.per_term and show_terms:
        terms = Table(title=f"lowest-recall terms (of {len(report.per_term)})")
        for col in ("term", "category", "expected", "recall", "heard as"):
            terms.add_column(col, justify="right" if col in ("expected", "recall") else "left")
        for row in report.per_term[:show_terms]:
            terms.add_row(row.term or "", row.category or "", str(row.expected), _pct(row.recall),
                          ", ".join(row.missed_as[:3]))  # fmt: skip
        console.print(terms)
    for field_name, groups in report.breakdowns.items():
        breakdown = Table(title=f"by {field_name}")
        for col in (field_name, "utterances", "WER", "CER", "term recall", "M-WER"):
            breakdown.add_column(col, justify="left" if col == field_name else "right")
        for group in groups:
            breakdown.add_row(group.value, str(group.counts.utterances), _pct(group.counts.wer),
                              _pct(group.counts.cer), _pct(group.terms.recall),
                              _pct(group.terms.medical_wer))  # fmt: skip
        console.print(breakdown)
