#!/usr/bin/env python3
"""The closed-loop report, written from the run's own files.

    report.py OUT --set medical:NAME [--set general:NAME ...] [--docs docs/results.md]

Reads OUT/eval/{base,tuned,tuned_noreplay}_NAME.json (``medasr eval`` reports),
OUT/times.tsv (stage wall times), the manifests and the selected terms, and writes
OUT/results.json (every figure), OUT/results.md (the tables) and OUT/results.png (the plot).
With --docs, the tables replace the part of that Markdown file between the
``<!-- results:begin -->`` and ``<!-- results:end -->`` lines, and the plot is copied beside it.

Targets (issue "The loop, proven"): on the first medical set (seen voices) the term miss
rate (1 - recall) falls by >= 50 % relative, on the other medical sets by >= 30 %; on every
general set the tuned model's WER rises by <= 5 % relative. Time budget: the whole recipe
runs in <= 90 min on 2 CPU cores; when the base model needs longer, the base model is its own
stage (5) that later runs reuse (``run.sh --stage 6``) and the loop turn (stages 6-11) runs in
<= 90 min. The base model's aim: WER <= 30 % on the first general set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import MedasrError
from medasr_cli.core.jsonl import iter_jsonl

MODELS = {"base": "base", "tuned": "tuned (replay)", "tuned_noreplay": "tuned (no replay)"}
MISS_CUT = {"first": 0.50, "other": 0.30}  # relative fall of the miss rate, at least
GENERAL_RISE = 0.05  # relative rise of general WER, at most
BUDGET_S = 90 * 60  # the whole recipe, or else the loop turn with the base model reused
BASE_STAGE = 5  # stages after it are the loop turn
BASE_AIM_WER = 0.30  # the base model's WER on the first general set, at most (an aim)
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _manifest(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    rows = [row for _, row in iter_jsonl(path)]
    return {
        "utterances": len(rows),
        "hours": round(sum(float(r["duration"]) for r in rows) / 3600, 3),
        "voices": sorted({str(r.get("voice")) for r in rows if r.get("voice")}),
        "noise_types": sorted({str(r.get("noise_type")) for r in rows if r.get("noise_type")}),
    }


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = round(pages / 2**30, 1)
    except (OSError, ValueError):
        pass
    versions = {}
    for name in ("torch", "nemo", "lightning"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "python": platform.python_version(),
        **versions,
    }


def _scores(report: dict[str, Any]) -> dict[str, Any]:
    terms = report["terms"]
    recall = terms.get("recall")
    return {
        "utterances": report["overall"]["utterances"],
        "ref_words": report["overall"]["ref_words"],
        "wer": report["overall"]["wer"],
        "term_occurrences": terms["expected"],
        "term_hits": terms["hits"],
        "term_recall": recall,
        "miss_rate": None if recall is None else 1.0 - recall,
        "medical_wer": terms.get("medical_wer"),
        "per_category": {
            c["category"]: {"expected": c["expected"], "recall": c["recall"]}
            for c in report.get("per_category", [])
            if c.get("category")
        },
        "per_term": {
            t["term"]: {"expected": t["expected"], "hits": t["hits"], "recall": t["recall"]}
            for t in report.get("per_term", [])
            if t.get("term")
        },
    }


def _rel(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return (after - before) / before


def collect(out: Path, sets: list[tuple[str, str]]) -> dict[str, Any]:
    scores: dict[str, dict[str, Any]] = {}
    for model in MODELS:
        for _, name in sets:
            report = _read_json(out / "eval" / f"{model}_{name}.json")
            if report is not None:
                scores.setdefault(model, {})[name] = _scores(report)
    if "base" not in scores:
        sys.exit(f"error: no base eval reports in {out}/eval (run stage 6)")
    targets = []
    first_medical = next((n for k, n in sets if k == "medical"), None)
    for variant in ("tuned", "tuned_noreplay"):
        for kind, name in sets:
            before = scores["base"].get(name)
            after = scores.get(variant, {}).get(name)
            if before is None or after is None:
                continue
            if kind == "medical":
                change = _rel(before["miss_rate"], after["miss_rate"])
                need = MISS_CUT["first" if name == first_medical else "other"]
                met = change is not None and change <= -need
                what = f"term miss rate falls by >= {need:.0%} relative"
                figures = (before["miss_rate"], after["miss_rate"])
            else:
                change = _rel(before["wer"], after["wer"])
                met = change is not None and change <= GENERAL_RISE
                what = f"WER rises by <= {GENERAL_RISE:.0%} relative"
                figures = (before["wer"], after["wer"])
            targets.append({
                "model": variant, "set": name, "kind": kind, "target": what,
                "before": figures[0], "after": figures[1], "relative_change": change, "met": met,
            })  # fmt: skip
    data = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "out": str(out),
        "machine": _machine(),
        "sets": [{"kind": k, "name": n} for k, n in sets],
        "scores": scores,
        "targets": targets,
        "selected_terms": _selected_terms(out),
        "data": {
            name: _manifest(out / "manifests" / f"{name}.jsonl")
            for name in ("base_train", "base_val", "turn_train", "turn_val", *(n for _, n in sets))
        },
        "times": _times(out),
        "training": {m: _training(out / m) for m in MODELS if (out / m / "plan.json").is_file()},
    }
    data["budget"] = budget(data["times"], data["training"].get("base"))
    first_general = next((n for k, n in sets if k == "general"), None)
    base_wer = scores["base"].get(first_general, {}).get("wer") if first_general else None
    data["base_aim"] = {
        "set": first_general, "wer_at_most": BASE_AIM_WER, "wer": base_wer,
        "met": base_wer is not None and base_wer <= BASE_AIM_WER,
    }  # fmt: skip
    return data


def budget(times: list[dict[str, Any]], base_training: dict[str, Any] | None) -> dict[str, Any]:
    """The time target: the whole recipe within BUDGET_S, or else (the base model needs longer)
    the loop turn within it, the base model being its own stage that later runs reuse.

    ``times`` are the stages' wall times (``_times``); ``base_training`` the base model's
    ``_training`` record, whose validation curve says when the base model reached its aim.
    """
    seconds = {t["stage"]: t["seconds"] for t in times}
    whole = sum(seconds.values())
    turn = sum(s for n, s in seconds.items() if n > BASE_STAGE)
    base = seconds.get(BASE_STAGE)
    curve = (base_training or {}).get("val_wer_by_step", {}).get("val_wer", [])
    reached = next((int(step) for step, wer in curve if wer <= BASE_AIM_WER), None)
    whole_ok, turn_ok = whole <= BUDGET_S, turn <= BUDGET_S
    met_by = "whole recipe" if whole_ok else "loop turn, base model reused" if turn_ok else None
    return {
        "budget_s": BUDGET_S,
        "whole_s": whole,
        "base_s": base,
        "turn_s": turn,
        "whole_within": whole_ok,
        "turn_within": turn_ok,
        "met": met_by is not None,
        "met_by": met_by,
        "base_steps": (base_training or {}).get("total_steps"),
        "base_reached_aim_at_step": reached,
    }


def _training(run: Path) -> dict[str, Any]:
    """The run's plan (steps, epochs, data, learning rate) and its validation WER by step."""
    plan = _read_json(run / "plan.json") or {}
    keep = ("utterances", "hours", "replay_utterances", "steps_per_epoch", "epochs",
            "total_steps", "warmup_steps", "peak_lr", "final_lr")  # fmt: skip
    curve: dict[str, list[list[float]]] = {}
    db = run / "mlflow.db"
    if db.is_file():
        with closing(sqlite3.connect(db)) as con:
            rows = con.execute(
                "SELECT m.key, m.step, m.value, m.run_uuid FROM metrics m "
                "JOIN runs r ON r.run_uuid = m.run_uuid WHERE m.key LIKE '%val_wer%' "
                "AND m.key != 'best_val_wer' ORDER BY r.start_time DESC, r.run_uuid, m.step"
            ).fetchall()
        # the folder may hold several runs: a resumed run continues an earlier one's steps, a
        # re-run starts again; the newest run's points win, older ones fill in before them
        by_run: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for key, step, value, run_id in rows:
            by_run.setdefault((key, run_id), []).append((int(step) + 1, float(value)))
        for (key, _), points in by_run.items():
            first = min((pt[0] for pt in curve.get(key, [])), default=None)
            kept = [[step, round(v, 4)] for step, v in points if first is None or step < first]
            curve[key] = kept + curve.get(key, [])
    return {**{k: plan.get(k) for k in keep}, "val_wer_by_step": curve}


def _selected_terms(out: Path) -> list[dict[str, Any]]:
    path = out / "lexicon" / "turn" / "lexicon.jsonl"
    if not path.is_file():
        return []
    rows = [row for _, row in iter_jsonl(path)]
    return [
        {"term": r["text"], "category": r.get("category"), "prior_recall": r.get("prior_recall")}
        for r in rows
    ]


def _times(out: Path) -> list[dict[str, Any]]:
    path = out / "times.tsv"
    if not path.is_file():
        return []
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stage, name, seconds = line.split("\t")
        rows[int(stage)] = {
            "stage": int(stage),
            "name": name,
            "seconds": int(seconds),
        }  # last run wins
    return [rows[k] for k in sorted(rows)]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _signed(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:+.0f} %"


def markdown(data: dict[str, Any], plot_name: str) -> str:
    scores = data["scores"]
    models = [m for m in MODELS if m in scores]
    lines = [f"![before/after]({plot_name})", ""]
    lines += [
        "### Targets",
        "",
        "| model | set | target | before | after | change | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in data["targets"]:
        lines.append(
            f"| {MODELS[t['model']]} | {t['set']} | {t['target']} | {_pct(t['before'])} "
            f"| {_pct(t['after'])} | {_signed(t['relative_change'])} | {'yes' if t['met'] else '**no**'} |"
        )
    lines += _budget_lines(data)
    lines += [
        "",
        "### Every held-out set",
        "",
        "WER and term recall (medical sets: the target terms; general sets: the base vocabulary's own terms, a check that known terms are not forgotten).",
        "",
    ]
    head = (
        "| set | utterances | "
        + " | ".join(f"WER {MODELS[m]} | recall {MODELS[m]}" for m in models)
        + " |"
    )
    lines += [head, "|" + "---|" * (2 + 2 * len(models))]
    for s in data["sets"]:
        base = scores["base"].get(s["name"])
        if base is None:
            continue
        cells = []
        for m in models:
            sc = scores[m].get(s["name"], {})
            cells += [
                _pct(sc.get("wer")),
                f"{_pct(sc.get('term_recall'))} ({sc.get('term_hits', '–')}/{sc.get('term_occurrences', '–')})",
            ]
        lines.append(
            f"| {s['kind']}: {s['name']} | {base['utterances']} | " + " | ".join(cells) + " |"
        )
    medical = [s["name"] for s in data["sets"] if s["kind"] == "medical"]
    categories = sorted(
        {c for n in medical for c in scores["base"].get(n, {}).get("per_category", {})}
    )
    if categories:
        lines += [
            "",
            "### Term recall per category (medical sets)",
            "",
            "| set | category | occurrences | " + " | ".join(MODELS[m] for m in models) + " |",
            "|" + "---|" * (3 + len(models)),
        ]
        for n in medical:
            for c in categories:
                base = scores["base"].get(n, {}).get("per_category", {}).get(c)
                if base is None:
                    continue
                vals = [
                    _pct(scores[m].get(n, {}).get("per_category", {}).get(c, {}).get("recall"))
                    for m in models
                ]
                lines.append(f"| {n} | {c} | {base['expected']} | " + " | ".join(vals) + " |")
    if medical:
        first = medical[0]
        terms = sorted(scores["base"].get(first, {}).get("per_term", {}))
        if terms:
            lines += [
                "",
                f"### Per term ({first})",
                "",
                "| term | occurrences | " + " | ".join(MODELS[m] for m in models) + " |",
                "|" + "---|" * (2 + len(models)),
            ]
            for term in terms:
                base = scores["base"][first]["per_term"][term]
                vals = [
                    _pct(scores[m].get(first, {}).get("per_term", {}).get(term, {}).get("recall"))
                    for m in models
                ]
                lines.append(f"| {term} | {base['expected']} | " + " | ".join(vals) + " |")
    if data.get("training"):
        lines += [
            "",
            "### Training",
            "",
            "| model | utterances (replay) | hours | steps | epochs | peak LR | validation WER by step |",
            "|---|---|---|---|---|---|---|",
        ]
        for m, t in data["training"].items():
            curves = "; ".join(
                f"{key}: " + ", ".join(f"{step}: {100 * v:.0f} %" for step, v in points)
                for key, points in t["val_wer_by_step"].items()
                if key != "val_wer_select"
                and not (key == "val_wer" and len(t["val_wer_by_step"]) > 2)
            )
            hours = "–" if t["hours"] is None else f"{t['hours']:.2f}"
            lines.append(
                f"| {MODELS[m]} | {t['utterances']} ({t['replay_utterances']}) | {hours} | {t['total_steps']} | {t['epochs']} | {t['peak_lr']} | {curves} |"
            )
    lines += [
        "",
        "### Data",
        "",
        "| manifest | utterances | hours | voices | noise |",
        "|---|---|---|---|---|",
    ]
    for name, d in data["data"].items():
        if d:
            lines.append(
                f"| {name} | {d['utterances']} | {d['hours']:.2f} | {', '.join(d['voices'])} | {', '.join(d['noise_types'])} |"
            )
    if data["times"]:
        total = sum(t["seconds"] for t in data["times"])
        lines += ["", "### Wall time per stage", "", "| stage | | minutes |", "|---|---|---|"]
        lines += [
            f"| {t['stage']} | {t['name']} | {t['seconds'] / 60:.1f} |" for t in data["times"]
        ]
        lines.append(f"| | **total** | **{total / 60:.1f}** |")
    m = data["machine"]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; Python {m['python']}, torch {m['torch']}, NeMo {m['nemo']}, Lightning {m['lightning']}. Written {data['created']} from `{data['out']}`.",
        "",
    ]
    return "\n".join(lines)


def _budget_lines(data: dict[str, Any]) -> list[str]:
    b, aim = data.get("budget"), data.get("base_aim")
    if not b:
        return []
    limit = b["budget_s"] / 60

    def row(what: str, s: int | None, within: bool | None) -> str:
        verdict = "–" if within is None else "yes" if within else "**no**"
        minutes = "–" if s is None else f"{s / 60:.1f}"
        return f"| {what} | {minutes} | {verdict} |"

    lines = [
        "",
        "### Time budget",
        "",
        f"| part | minutes | within {limit:.0f} min |",
        "|---|---|---|",
    ]
    lines += [
        row("whole recipe (stages 1-11)", b["whole_s"], b["whole_within"]),
        row(f"base model (stage {BASE_STAGE}; later runs reuse it)", b["base_s"], None),
        row(f"loop turn (stages {BASE_STAGE + 1}-11)", b["turn_s"], b["turn_within"]),
    ]
    met = f"met by the {b['met_by']}" if b["met"] else "**not met**"
    lines += ["", f"Time target: {met}."]
    if aim and aim.get("wer") is not None:
        points = data["training"].get("base", {}).get("val_wer_by_step", {}).get("val_wer", [])
        curve = ", ".join(f"{step}: {100 * wer:.1f} %" for step, wer in points)
        reached = b["base_reached_aim_at_step"]
        lines[-1] += (
            f" Base model: WER {_pct(aim['wer'])} on {aim['set']} (aim <= {aim['wer_at_most']:.0%}:"
            f" {'met' if aim['met'] else 'not met'}); its validation WER reached the aim "
            + (f"at step {reached} of {b['base_steps']}" if reached else "at no step")
            + (f" (by step: {curve})." if curve else ".")
        )
    return lines


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = data["scores"]
    models = [m for m in MODELS if m in scores]
    colors = {"base": "tab:gray", "tuned": "tab:blue", "tuned_noreplay": "tab:orange"}
    medical = [s["name"] for s in data["sets"] if s["kind"] == "medical"]
    names = [s["name"] for s in data["sets"] if s["name"] in scores["base"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(models)
    for ax, sets, key, title in (
        (axes[0], medical, "miss_rate", "Target-term miss rate (1 - recall)"),
        (axes[1], names, "wer", "WER on every held-out set"),
    ):
        for i, m in enumerate(models):
            vals = [scores[m].get(n, {}).get(key) or 0.0 for n in sets]
            xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(sets))]
            ax.bar(xs, vals, width, label=MODELS[m], color=colors[m])
        ax.set_xticks(range(len(sets)))
        ax.set_xticklabels(sets, rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out", type=Path, help="the recipe's output folder")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KIND:NAME",
        help="medical:NAME or general:NAME, in order",
    )
    p.add_argument("--docs", type=Path, help="Markdown file whose results section to replace")
    args = p.parse_args()
    sets = []
    for item in args.set:
        kind, _, name = item.partition(":")
        if kind not in ("medical", "general") or not name:
            p.error(f"--set {item}: use medical:NAME or general:NAME")
        sets.append((kind, name))
    if not sets:
        p.error("give the test sets with --set")
    try:
        data = collect(args.out, sets)
    except (KeyError, ValueError, MedasrError) as exc:  # a truncated or foreign file
        sys.exit(f"error: {args.out}: an eval report or manifest is malformed ({exc!r})")
    except sqlite3.Error as exc:  # a training folder's mlflow.db that is not MLflow's
        sys.exit(f"error: {args.out}: a training run's mlflow.db cannot be read ({exc})")
    (args.out / "results.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    plot(data, args.out / "results.png")
    (args.out / "results.md").write_text(markdown(data, "results.png"), encoding="utf-8")
    if args.docs is not None:
        text = args.docs.read_text(encoding="utf-8")
        if BEGIN not in text or END not in text:
            sys.exit(f"error: {args.docs} has no {BEGIN} ... {END} section")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        image = args.docs.with_name("results.png")
        shutil.copyfile(args.out / "results.png", image)
        body = markdown(data, image.name)
        args.docs.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}", encoding="utf-8")
        (args.docs.with_name("results.json")).write_text(
            json.dumps(data, indent=2) + "\n", encoding="utf-8"
        )
    for t in data["targets"]:
        print(json.dumps({"metric": "target", **t}))
    print(json.dumps({"metric": "budget", **data["budget"]}))


if __name__ == "__main__":
    main()
