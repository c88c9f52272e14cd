"""``medasr manifest``: build, validate and summarise NeMo JSONL manifests."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from medasr_cli.cli.common import console, err_console, progress_bar
from medasr_cli.core.errors import InputError
from medasr_cli.core.jsonl import write_jsonl
from medasr_cli.manifest import (
    build_manifest,
    manifest_stats,
    parse_split_spec,
    split_entries,
    validate_manifest,
)
from medasr_cli.manifest.build import relativize
from medasr_cli.manifest.validate import PARAKEET_MAX_DURATION_S, load_charset

app = typer.Typer(
    help="Build, split, validate and summarise NeMo JSONL manifests.", no_args_is_help=True
)


@app.command("build")
def build(
    sources: list[Path] = typer.Argument(
        ...,
        help="Inputs: synth utterances JSONL (or existing manifests), folders of audio with "
        "sidecar .txt transcripts, or CSV/TSV tables with path,text columns. Several are merged.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output manifest file, or the output folder when --split is given."
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="Split into files, e.g. train=0.9,val=0.05,test=0.05 (written as NAME.jsonl in --out). "
        "Utterances of one script/text always share a split.",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed for the split."),
    stratify_by: str | None = typer.Option(
        None, "--stratify-by", help="Metadata field to stratify the split by, e.g. voice."
    ),
    resample: int | None = typer.Option(
        None, "--resample", help="Convert every file to mono PCM WAV at this rate (e.g. 16000)."
    ),
    audio_out: Path | None = typer.Option(
        None, "--audio-out", help="Folder for converted audio (needed with --resample)."
    ),
    relative: bool = typer.Option(
        False,
        "--relative/--absolute",
        help="Write audio paths relative to the manifest's folder (NeMo resolves them) "
        "instead of absolute.",
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip unreadable items with a warning instead of failing."
    ),
) -> None:
    """Build a NeMo manifest (audio_filepath, duration, text + metadata) from audio sources."""
    ratios = parse_split_spec(split) if split else None
    if ratios is None and out.is_dir():
        raise InputError(f"{out}: is a directory; give a manifest file name (or use --split)")
    with progress_bar("reading audio") as update:
        result = build_manifest(
            sources, resample=resample, audio_out=audio_out, skip_bad=skip_bad, progress=update
        )
    if result.skipped:
        err_console.print(f"[yellow]skipped {len(result.skipped)} bad item(s)[/]")
    outputs = (
        {out / f"{name}.jsonl": part for name, part in split_entries(
            result.entries, ratios, seed=seed, stratify_by=stratify_by).items()}
        if ratios
        else {out: result.entries}
    )  # fmt: skip
    table = Table(title="manifest build")
    for col in ("file", "utterances", "hours"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for path, entries in outputs.items():
        rows = relativize(entries, path.parent) if relative else entries
        write_jsonl(path, rows)
        hours = sum(e.duration for e in entries) / 3600
        table.add_row(str(path), str(len(entries)), f"{hours:.3f}")
        if not entries:
            err_console.print(f"[yellow]warning: {path} is empty (too little data to split)[/]")
    console.print(table)


@app.command("validate")
def validate(
    manifest: Path = typer.Argument(..., help="The NeMo JSONL manifest to check."),
    sample_rate: int = typer.Option(
        16000, "--sample-rate", help="Expected sample rate in Hz (0 to skip the check)."
    ),
    channels: int = typer.Option(1, "--channels", help="Expected channel count (0 to skip)."),
    charset: str | None = typer.Option(
        None, "--charset", help="Allowed transcript characters: a string, or a file holding them."
    ),
    tokenizer: str | None = typer.Option(
        None,
        "--tokenizer",
        help="The model whose tokenizer the text must fit: a .nemo file, a hub name "
        "(nvidia/parakeet-tdt-0.6b-v2), a SentencePiece .model or a tokenizer folder.",
    ),
    max_duration: float = typer.Option(
        PARAKEET_MAX_DURATION_S,
        "--max-duration",
        help="Longest allowed utterance in seconds (default: Parakeet's 24-minute single pass).",
    ),
    tolerance: float = typer.Option(
        0.1, "--tolerance", help="Allowed gap between the manifest duration and the audio's (s)."
    ),
    max_errors: int = typer.Option(50, "--max-errors", help="How many problems to print."),
) -> None:
    """Check every line: audio exists and decodes, rate/channels, duration, text. Exit 2 on any problem."""
    chars = load_charset(charset, tokenizer)
    with progress_bar("validating") as update:
        report = validate_manifest(
            manifest,
            sample_rate=sample_rate or None,
            channels=channels or None,
            charset=chars,
            max_duration=max_duration,
            duration_tolerance=tolerance,
            progress=update,
        )
    if report.problems:
        for problem in report.problems[:max_errors]:
            err_console.print(str(problem), highlight=False, markup=False, soft_wrap=True)
        more = len(report.problems) - max_errors
        if more > 0:
            err_console.print(f"... and {more} more")
        raise InputError(
            f"{manifest}: {len(report.problems)} problem(s) in {report.lines} line(s); "
            f"{report.ok} line(s) OK"
        )
    table = Table(title=f"{manifest}: valid")
    table.add_column("lines", justify="right")
    table.add_column("hours", justify="right")
    table.add_row(str(report.ok), f"{report.hours:.3f}")
    console.print(table)


@app.command("stats")
def stats(
    manifest: Path = typer.Argument(..., help="The NeMo JSONL manifest to summarise."),
    by: list[str] = typer.Option(
        [],
        "--by",
        help="Metadata field to break down by (repeatable; default: categorical fields).",
    ),
    bins: int = typer.Option(10, "--bins", help="Duration histogram bins."),
) -> None:
    """Hours, utterance count, duration histogram and per-metadata breakdowns."""
    stats = manifest_stats(manifest, by=by or None, bins=bins)
    console.print(
        f"[bold]{manifest}[/]: {stats.utterances} utterances, {stats.hours:.3f} h "
        f"(duration min {stats.min_duration:.2f} s, mean {stats.mean_duration:.2f} s, "
        f"max {stats.max_duration:.2f} s)"
    )
    hist = Table(title="duration histogram")
    hist.add_column("seconds")
    hist.add_column("count", justify="right")
    hist.add_column("")
    peak = max((c for _, _, c in stats.histogram), default=1) or 1
    for lo, hi, count in stats.histogram:
        hist.add_row(f"{lo:6.2f} – {hi:6.2f}", str(count), "█" * round(30 * count / peak))
    console.print(hist)
    for field_name, groups in stats.breakdowns.items():
        table = Table(title=f"by {field_name}")
        for col in (field_name, "utterances", "hours"):
            table.add_column(col, justify="left" if col == field_name else "right")
        for value, g in groups.items():
            table.add_row(value, str(g.utterances), f"{g.hours:.3f}")
        console.print(table)
