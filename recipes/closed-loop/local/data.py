#!/usr/bin/env python3
"""Data steps of the closed-loop recipe that no medasr command does on its own.

data.py base-terms SEED_LEXICON TARGETS --count N --seed S --out base_terms.jsonl
    N terms of the seed lexicon that share no word with any target term (the base
    model's vocabulary; it must never hear a target term).
data.py split-scripts SCRIPTS --split train=0.85,val=0.05,test=0.10 --seed S --out DIR
    Split dictations by script id into DIR/NAME.jsonl (before synthesis, so a test
    script can be rendered again with held-out voices).
data.py keep-apart TRAIN_IN --out TRAIN_OUT --test M [--test M ...] [--absent TERMS]
    Copy a training manifest without the utterances whose normalised text is also in a
    test manifest, and (with --absent) without those that contain a target term. The
    test sets are never changed: training data is filtered against them. Prints one
    JSON line with the counts.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from medasr_cli.core.errors import MedasrError
from medasr_cli.core.jsonl import iter_jsonl, write_jsonl
from medasr_cli.core.terms import load_terms
from medasr_cli.core.text import get_normalizer
from medasr_cli.llm.match import term_present

normalize = get_normalizer("clinical")


def _words(text: str) -> set[str]:
    return set(normalize(text).split())


def base_terms(args: argparse.Namespace) -> None:
    targets = load_terms(args.targets)
    banned = set().union(*(_words(t.text) for t in targets))
    pool = [t for t in load_terms(args.seed_lexicon) if not _words(t.text) & banned]
    if len(pool) < args.count:
        sys.exit(f"error: only {len(pool)} seed terms share no word with the targets")
    random.Random(args.seed).shuffle(pool)
    rows = [t.model_dump(mode="json") for t in pool[: args.count]]
    write_jsonl(args.out, rows)
    print(json.dumps({"base_terms": len(rows), "pool": len(pool), "targets": len(targets)}))


def split_scripts(args: argparse.Namespace) -> None:
    shares = {}
    for part in args.split.split(","):
        name, _, share = part.partition("=")
        shares[name] = float(share)
    rows = [row for _, row in iter_jsonl(args.scripts)]
    ids = sorted({row["id"] for row in rows})
    random.Random(args.seed).shuffle(ids)
    total = sum(shares.values())
    bounds, start = {}, 0.0
    for name, share in shares.items():
        bounds[name] = (round(start / total * len(ids)), round((start + share) / total * len(ids)))
        start += share
    empty = [name for name, (lo, hi) in bounds.items() if hi <= lo]
    if empty:
        sys.exit(f"error: {len(ids)} scripts leave split(s) {', '.join(empty)} empty")
    which = {i: name for name, (lo, hi) in bounds.items() for i in ids[lo:hi]}
    args.out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in shares:
        counts[name] = write_jsonl(
            args.out / f"{name}.jsonl", [r for r in rows if which[r["id"]] == name]
        )
    print(json.dumps({"scripts": len(ids), **counts}))


def keep_apart(args: argparse.Namespace) -> None:
    test_texts = {normalize(row["text"]) for path in args.test for _, row in iter_jsonl(path)}
    targets = load_terms(args.absent) if args.absent else []
    kept, same_text, has_target = [], 0, 0
    for _, row in iter_jsonl(args.train):
        if normalize(row["text"]) in test_texts:
            same_text += 1
        elif any(term_present(row["text"], t) for t in targets):
            has_target += 1
        else:
            kept.append(row)
    if not kept:
        sys.exit(f"error: nothing of {args.train} is left")
    write_jsonl(args.out, kept)
    hours = sum(float(r["duration"]) for r in kept) / 3600
    print(
        json.dumps(
            {
                "manifest": str(args.out),
                "kept": len(kept),
                "hours": round(hours, 3),
                "dropped_same_text_as_test": same_text,
                "dropped_with_target_term": has_target,
            }
        )
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("base-terms")
    b.add_argument("seed_lexicon", type=Path)
    b.add_argument("targets", type=Path)
    b.add_argument("--count", type=int, required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("split-scripts")
    s.add_argument("scripts", type=Path)
    s.add_argument("--split", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, required=True)
    k = sub.add_parser("keep-apart")
    k.add_argument("train", type=Path)
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--test", type=Path, action="append", default=[])
    k.add_argument("--absent", type=Path)
    args = p.parse_args()
    command = {"base-terms": base_terms, "split-scripts": split_scripts, "keep-apart": keep_apart}
    try:
        command[args.cmd](args)
    except MedasrError as exc:  # a missing or malformed file: one line, nothing half-written
        sys.exit(f"error: {exc}")
    except KeyError as exc:
        sys.exit(f"error: a record has no {exc} field")
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
