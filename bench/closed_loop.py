"""The closed-loop experiment as a benchmark: recipes/closed-loop/run.sh, figures as JSON lines.

    python bench/closed_loop.py [--out DIR] [-- RECIPE OPTIONS...]

Runs the recipe in DIR (default: $MEDASR_BENCH_CACHE/closed-loop, else
~/.cache/medasr-bench/closed-loop). The recipe's done-markers make a finished run free: a
second call only prints the figures again, and `-- --stage 6` re-runs the loop turn on the
same base model (stage 5). The recipe's own output goes to DIR/recipe.log.

Prints, one JSON object per line: the machine; this call's wall time; each stage's wall time
(from the run that produced it); WER and term recall of every model on every held-out set;
each target of the issue with its figures and whether it was met; the time target (the
report's rule: the whole recipe within 90 minutes, or else, the base model needing longer,
the loop turn within them with the base model reused); a summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import cache_root, emit, machine

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "closed-loop" / "run.sh"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, help="the recipe's output folder (reused when it exists)")
    p.add_argument("recipe_args", nargs="*", help="options for run.sh, after --")
    args = p.parse_args()
    out = (args.out or cache_root() / "closed-loop").resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    emit(machine("cpu", int(env.get("OMP_NUM_THREADS", os.cpu_count() or 1))))
    started = time.monotonic()
    with open(out / "recipe.log", "a", encoding="utf-8") as log:
        code = subprocess.run(["bash", str(RECIPE), "--out", str(out), *args.recipe_args],
                              stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode  # fmt: skip
    wall = time.monotonic() - started
    emit(
        {"bench": "closed_loop_call", "out": str(out), "exit_code": code, "wall_s": round(wall, 1)}
    )
    if code != 0:
        sys.exit(f"recipe failed (exit {code}); see {out / 'recipe.log'}")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    for t in results["times"]:
        emit({"bench": "closed_loop_stage", **t})
    if "budget" not in results:  # written by an older report stage
        sys.exit(f"{out / 'results.json'} has no time budget: re-run the report (-- --stage 11)")
    budget = results["budget"]
    emit({"bench": "closed_loop_budget", **budget})
    for model, sets in results["scores"].items():
        for name, s in sets.items():
            emit({"bench": "closed_loop_score", "model": model, "set": name, "wer": s["wer"],
                  "term_recall": s["term_recall"], "term_occurrences": s["term_occurrences"],
                  "utterances": s["utterances"]})  # fmt: skip
    for t in results["targets"]:
        emit({"bench": "closed_loop_target", **t})
    met = [t for t in results["targets"] if t["model"] == "tuned"]
    emit({"bench": "closed_loop", "targets_met": sum(t["met"] for t in met), "targets": len(met),
          "budget_met": budget["met"], "budget_met_by": budget["met_by"],
          "base_aim_met": results["base_aim"]["met"], "out": str(out)})  # fmt: skip


if __name__ == "__main__":
    main()
