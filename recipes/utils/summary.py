#!/usr/bin/env python3
"""WER, medical WER and term recall from `medasr eval --report` files, one row per test set.

    summary.py demo/eval_train.json demo/eval_test.json
    summary.py --focus run/lexicon/lexicon.jsonl --out run/summary.txt \\
        run/eval/base_clinic.json:run/eval/tuned_clinic.json

A REPORT is one eval report (its figures), or BEFORE.json:AFTER.json (before -> after, e.g.
the base model and the fine-tuned one on the same test set). --focus adds the recall of the
terms in that lexicon (the terms the recipe trained on) out of each report's per-term counts.
Only the standard library: the recipes run it with any python3.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PREFIXES = ("eval_", "base_", "tuned_")


def _load(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.exit(f"summary.py: {path}: not a readable eval report ({exc})")
    if not isinstance(data, dict) or "overall" not in data:
        sys.exit(f"summary.py: {path}: not a `medasr eval --report` file (no 'overall')")
    return data


def _focus_terms(path: str) -> set[str]:
    terms = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            terms.add(json.loads(line)["text"].lower())
    return terms


def _figures(report: dict[str, Any], focus: set[str] | None) -> dict[str, float | None]:
    terms = report.get("terms") or {}
    figures = {
        "WER": report["overall"].get("wer"),
        "M-WER": terms.get("medical_wer"),
        "term recall": terms.get("recall"),
    }
    if focus is not None:
        rows = [r for r in report.get("per_term", []) if (r.get("term") or "").lower() in focus]
        expected = sum(r.get("expected", 0) for r in rows)
        figures["targeted recall"] = (
            sum(r.get("hits", 0) for r in rows) / expected if expected else None
        )
    return figures


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _name(path: str) -> str:
    stem = Path(path).stem
    for prefix in PREFIXES:
        stem = stem.removeprefix(prefix)
    return stem


def summary(reports: list[str], focus: set[str] | None) -> str:
    """The table as text: one row per report or before:after pair."""
    header: list[str] = []
    rows: list[list[str]] = []
    for spec in reports:
        before_path, _, after_path = spec.rpartition(":") if ":" in spec else ("", "", spec)
        after = _load(after_path)
        figures = _figures(after, focus)
        if before_path:
            old = _figures(_load(before_path), focus)
            cells = [f"{_pct(old[k])} -> {_pct(v)}" for k, v in figures.items()]
        else:
            cells = [_pct(v) for v in figures.values()]
        header = ["test set", "utterances", *figures]
        rows.append([_name(after_path), str(after["overall"].get("utterances", "")), *cells])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "reports", nargs="+", metavar="REPORT", help="REPORT.json or BEFORE.json:AFTER.json"
    )
    parser.add_argument("--focus", help="lexicon.jsonl: also the recall of these terms")
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args()
    table = summary(args.reports, _focus_terms(args.focus) if args.focus else None)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
