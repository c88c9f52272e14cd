"""``medasr lexicon``: compile the target terms into ``terms.txt`` and ``lexicon.jsonl``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from medasr_cli.cli.common import console
from medasr_cli.core.text import NORMALIZERS
from medasr_cli.lexicon import LexiconRequest, LexiconResult, build_lexicon, write_lexicon

HELP = "Compile target terms (low eval recall, rare, with spoken forms) into terms.txt + lexicon.jsonl."


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
    show: int = typer.Option(15, "--show", help="Lowest-recall terms to print."),
) -> None:
    """Merge term sources, keep the hard ones, add spoken forms, and write both outputs."""
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
    )
    result = build_lexicon(request)
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
    console.print(table)
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
