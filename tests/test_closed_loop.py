"""The closed-loop recipe (recipes/closed-loop): its data helpers, its dry run, and one whole
run at toy size through bench/closed_loop.py (real synthesis, training, eval and report).

The figures of the full-size run are in docs/results.md; here the sizes are cut so the run
takes minutes, and the test checks that every stage ran and the report holds every figure,
not the figures themselves (a 3-step model recognises nothing).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medasr_cli.core.jsonl import write_jsonl

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "closed-loop" / "run.sh"
LOCAL = ROOT / "recipes" / "closed-loop" / "local"
BIN = str(Path(sys.executable).parent)


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([*args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def _data(*args: str) -> subprocess.CompletedProcess[str]:
    return _run(sys.executable, str(LOCAL / "data.py"), *args)


def _read(path: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln]


def _report_module():  # recipes/closed-loop/local/report.py is a script, not a package
    spec = importlib.util.spec_from_file_location("closed_loop_report", LOCAL / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- local/data.py ------------------------------------------------------------------------------


def test_base_terms_share_no_word_with_the_targets(tmp_path: Path) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("apixaban\tdrug\natrial fibrillation\tcondition\n")
    seed = tmp_path / "seed.txt"
    seed.write_text("metoprolol\tdrug\nparoxysmal atrial flutter\tcondition\nfibrillation\tcondition\n"
                    "asthma\tcondition\nApixaban\tdrug\nwarfarin\tdrug\n")  # fmt: skip
    out = tmp_path / "base.jsonl"
    proc = _data(
        "base-terms", str(seed), str(targets), "--count", "3", "--seed", "1", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"base_terms": 3, "pool": 3, "targets": 2}
    assert sorted(r["text"] for r in _read(out)) == ["asthma", "metoprolol", "warfarin"]
    proc = _data("base-terms", str(seed), str(targets), "--count", "4", "--out", str(out))
    assert proc.returncode != 0 and "only 3 seed terms" in proc.stderr


def test_split_scripts_is_seeded_and_disjoint(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts.jsonl"
    write_jsonl(scripts, [{"id": f"s{i:02d}", "text": f"Sentence {i}."} for i in range(40)])
    parts = []
    for name in ("a", "b"):
        proc = _data("split-scripts", str(scripts), "--split", "train=0.8,val=0.05,test=0.15",
                     "--seed", "3", "--out", str(tmp_path / name))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"scripts": 40, "train": 32, "val": 2, "test": 6}
        parts.append(
            {
                s: [r["id"] for r in _read(tmp_path / name / f"{s}.jsonl")]
                for s in ("train", "val", "test")
            }
        )
    assert parts[0] == parts[1]
    ids = [i for split in parts[0].values() for i in split]
    assert sorted(ids) == [f"s{i:02d}" for i in range(40)]
    proc = _data(
        "split-scripts",
        str(scripts),
        "--split",
        "train=0.99,val=0.01",
        "--out",
        str(tmp_path / "c"),
    )
    assert proc.returncode != 0 and "leave split(s) val empty" in proc.stderr


def test_keep_apart_drops_test_sentences_and_target_terms_but_never_changes_a_test_set(
    tmp_path: Path,
) -> None:
    test = tmp_path / "test.jsonl"
    write_jsonl(test, [{"audio_filepath": "t.wav", "duration": 1.0, "text": "Nil by mouth."}])
    before = test.read_text()
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [
        {"audio_filepath": "1.wav", "duration": 2.0, "text": "nil by mouth"},  # same, normalised
        {"audio_filepath": "2.wav", "duration": 3.0, "text": "Started apixaban today."},
        {"audio_filepath": "3.wav", "duration": 4.0, "text": "Chest clear."},
    ])  # fmt: skip
    terms = tmp_path / "terms.txt"
    terms.write_text("apixaban\tdrug\n")
    out = tmp_path / "kept.jsonl"
    proc = _data(
        "keep-apart", str(train), "--test", str(test), "--absent", str(terms), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)
    assert (
        counts["kept"],
        counts["dropped_same_text_as_test"],
        counts["dropped_with_target_term"],
    ) == (1, 1, 1)
    assert [r["text"] for r in _read(out)] == ["Chest clear."]
    assert test.read_text() == before


def test_data_helpers_fail_with_one_line_and_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "kept.jsonl"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio_filepath": "a.wav", "duration": 1.0}\n')  # no text
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "s1", "text": \n')
    for args, needle in (
        (["keep-apart", str(tmp_path / "missing.jsonl"), "--out", str(out)], "missing.jsonl"),
        (["keep-apart", str(bad), "--out", str(out)], "no 'text' field"),
        (
            ["split-scripts", str(broken), "--split", "a=1", "--out", str(tmp_path / "s")],
            "broken.jsonl",
        ),
    ):
        proc = _data(*args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 1 and len(lines) == 1 and needle in lines[0], (args, proc.stderr)
        assert lines[0].startswith("error: ")
    assert not out.exists()


# --- run.sh -------------------------------------------------------------------------------------


def test_dry_run_prints_every_stage(tmp_path: Path) -> None:
    proc = _run("bash", str(RECIPE), "--out", str(tmp_path / "cl"), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    stages = [ln for ln in proc.stdout.splitlines() if ln.startswith("== stage")]
    assert len(stages) == 11
    text = proc.stdout
    for needle in ("--from-scratch --arch base-cpu", "--replay", "lexicon --from-eval",
                   "keep-apart", "report.py", "noise-bank --category monitor"):  # fmt: skip
        assert needle in text, needle
    assert (
        text.count("medasr train --config closed-loop-cpu --init") == 2
    )  # with and without replay
    assert not (tmp_path / "cl" / ".done").exists()


def test_bad_options_fail_with_one_line(tmp_path: Path) -> None:
    for args, needle in (
        (["--base-steps", "0"], "--base-steps must be a positive number"),
        (["--max-recall", "1.5"], "--max-recall must be in [0, 1]"),
        (["--medical-test", "x.jsonl"], "give NAME=MANIFEST"),
        (["--terms", str(tmp_path / "missing.txt")], "is not a readable file"),
        (["--turn-voices", "espeak:en-us,espeak:en-029+m2"], "its accent is held out"),
    ):
        proc = _run("bash", str(RECIPE), "--out", str(tmp_path / "cl"), *args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], (args, proc.stderr)


def test_time_budget_is_the_whole_recipe_or_else_the_turn_with_the_base_reused() -> None:
    """The rule of the report's time target, on stage times like the full-size run's (a real
    run of 90 minutes cannot happen in a test; the toy-size run below checks the same figures
    end to end)."""
    budget = _report_module().budget

    def times(*seconds: int) -> list[dict[str, object]]:
        return [{"stage": n, "name": f"s{n}", "seconds": s} for n, s in enumerate(seconds, 1)]

    curve = {"val_wer": [[109, 1.0], [654, 0.34], [763, 0.32], [872, 0.296]]}
    base = {"total_steps": 900, "val_wer_by_step": curve}
    # run5 of docs/results.md: 93.9 min in all, base 45.0, turn 47.6
    b = budget(times(9, 3, 54, 17, 2697, 104, 1, 22, 2482, 238, 9), base)
    assert (b["whole_s"], b["base_s"], b["turn_s"]) == (5636, 2697, 2856)
    assert (b["whole_within"], b["turn_within"], b["met"]) == (False, True, True)
    assert b["met_by"] == "loop turn, base model reused" and b["base_reached_aim_at_step"] == 872
    b = budget(times(9, 3, 54, 17, 2000, 104, 1, 22, 2482, 238, 9), base)
    assert b["met"] and b["met_by"] == "whole recipe"
    b = budget(times(9, 3, 54, 17, 2000, 104, 1, 22, 5200, 238, 9), None)  # a turn too long
    assert not b["met"] and b["met_by"] is None and b["base_reached_aim_at_step"] is None


def test_validation_curve_of_a_folder_trained_more_than_once(tmp_path: Path) -> None:
    """The report reads a training folder's local MLflow store (real MLflow): a resumed run
    continues the steps before it, a re-run replaces them; neither mixes two curves."""
    from mlflow.tracking import MlflowClient

    training = _report_module()._training
    run = tmp_path / "tuned"
    run.mkdir()
    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    experiment = client.create_experiment("medasr")

    def log(points: dict[int, float]) -> None:
        run_id = client.create_run(experiment).info.run_id
        for step, wer in points.items():
            client.log_metric(run_id, "val_wer", wer, step=step)
        client.set_terminated(run_id)
        time.sleep(0.01)  # runs are ordered by start time (milliseconds)

    log({0: 0.9, 1: 0.8, 2: 0.7})
    assert training(run)["val_wer_by_step"] == {"val_wer": [[1, 0.9], [2, 0.8], [3, 0.7]]}
    log({2: 0.6, 3: 0.5})  # --resume from step 2
    assert training(run)["val_wer_by_step"]["val_wer"] == [[1, 0.9], [2, 0.8], [3, 0.6], [4, 0.5]]
    log({0: 0.95, 1: 0.85})  # trained again from the start, fewer steps
    assert training(run)["val_wer_by_step"]["val_wer"] == [[1, 0.95], [2, 0.85]]


def test_report_with_an_unreadable_mlflow_store_is_one_line(tmp_path: Path) -> None:
    """A training folder whose mlflow.db is not a database: one error line, no results written."""
    out = tmp_path / "cl"
    (out / "eval").mkdir(parents=True)
    report = {
        "overall": {"utterances": 1, "ref_words": 1, "wer": 0.0},
        "terms": {"expected": 0, "hits": 0},
    }
    (out / "eval" / "base_general_seen.json").write_text(json.dumps(report))
    (out / "base").mkdir()
    (out / "base" / "plan.json").write_text("{}")
    (out / "base" / "mlflow.db").write_text("not a database")
    proc = _run(sys.executable, str(LOCAL / "report.py"), str(out), "--set", "general:general_seen")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "mlflow.db cannot be read" in lines[0]
    assert not (out / "results.json").exists()


@pytest.mark.slow
def test_the_whole_loop_at_toy_size_through_the_benchmark(tmp_path: Path) -> None:
    """Every stage for real on a few utterances: terms, text, noise banks, synthesis in seen and
    held-out voices, manifests, a base model from scratch, eval, selection, the turn's data,
    tuning with and without replay, eval, report; then a second call reuses the finished run."""
    out = tmp_path / "cl"
    toy = ["--base-terms", "12", "--base-per-term", "2", "--test-per-term", "1", "--turn-per-term", "1",
           "--base-steps", "3", "--turn-steps", "2", "--max-recall", "1.0",
           "--seen-voices", "espeak:en-us,espeak:en-gb", "--heldout-voices", "espeak:en-029"]  # fmt: skip
    bench = [sys.executable, str(ROOT / "bench" / "closed_loop.py"), "--out", str(out), "--", *toy]
    proc = _run(*bench, timeout=1500)
    assert proc.returncode == 0, (proc.stderr, (out / "recipe.log").read_text()[-3000:])
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    kinds = [ln["bench"] for ln in lines]
    assert kinds[0] == "machine" and kinds[-1] == "closed_loop"
    # stage 11 writes the report, which is read before its own time is recorded
    assert [ln["stage"] for ln in lines if ln["bench"] == "closed_loop_stage"] == list(range(1, 11))
    (budget,) = [ln for ln in lines if ln["bench"] == "closed_loop_budget"]
    stage_s = {ln["stage"]: ln["seconds"] for ln in lines if ln["bench"] == "closed_loop_stage"}
    assert budget["whole_s"] == sum(stage_s.values()) and budget["base_s"] == stage_s[5]
    assert budget["turn_s"] == sum(s for n, s in stage_s.items() if n > 5)
    assert budget["met"] and budget["met_by"] == "whole recipe"  # minutes at toy size
    assert lines[-1]["budget_met"] is True and lines[-1]["base_aim_met"] is False  # 3 steps
    sets = {"medical_seen", "medical_heldout", "general_seen", "general_heldout"}
    scores = [ln for ln in lines if ln["bench"] == "closed_loop_score"]
    assert {(s["model"], s["set"]) for s in scores} == {
        (m, s) for m in ("base", "tuned", "tuned_noreplay") for s in sets
    }
    targets = [ln for ln in lines if ln["bench"] == "closed_loop_target"]
    assert {(t["model"], t["set"]) for t in targets} == {
        (m, s) for m in ("tuned", "tuned_noreplay") for s in sets
    }
    results = json.loads((out / "results.json").read_text())
    held = results["data"]
    assert held["medical_heldout"]["voices"] == ["espeak:en-029"]
    assert set(held["medical_heldout"]["noise_types"]) <= {"monitor", "transient"}
    assert set(held["base_train"]["voices"]) == {"espeak:en-us", "espeak:en-gb"}
    assert set(held["base_train"]["noise_types"]) <= {"babble", "pump", "hvac"}
    assert held["turn_train"]["utterances"] > 0 and results["selected_terms"]
    # the turn adds accents the base never heard, never a held-out one
    assert "espeak:en-gb-x-rp+m1" in held["turn_train"]["voices"]
    assert not set(held["turn_train"]["voices"]) & set(held["medical_heldout"]["voices"])
    md = (out / "results.md").read_text()
    assert (
        "### Targets" in md
        and "tuned (no replay)" in md
        and (out / "results.png").stat().st_size > 0
    )
    # test sentences never reach training
    train_texts = {
        r["text"]
        for name in ("base_train", "turn_train")
        for r in _read(out / "manifests" / f"{name}.jsonl")
    }
    for name in sets:
        assert not train_texts & {r["text"] for r in _read(out / "manifests" / f"{name}.jsonl")}
    # a finished run does no work: the second call only reprints the figures
    again = _run(*bench, timeout=300)
    assert again.returncode == 0, again.stderr
    log = (out / "recipe.log").read_text()
    assert log.count("nothing to do: stages 1..11 are done already") == 1
    assert [ln for ln in again.stdout.splitlines() if '"closed_loop_target"' in ln] == [
        ln for ln in proc.stdout.splitlines() if '"closed_loop_target"' in ln
    ]
    # a later turn on the same base model with another seed: the turn's data start afresh
    turn_text = out / "data" / "text" / "turn.jsonl"
    before = turn_text.read_text()
    turn = _run("bash", str(RECIPE), "--out", str(out), *toy, "--seed", "2", "--stage", "8",
                "--stop-stage", "8", timeout=600)  # fmt: skip
    assert turn.returncode == 0, turn.stderr
    assert "stage 8: changed since the last run (seed=1 " in turn.stdout
    (old,) = (out / "old").iterdir()
    assert (old / "data" / "text" / "turn.jsonl").read_text() == before
    assert (old / "data" / "audio" / "turn" / "utterances.jsonl").is_file()
    assert turn_text.read_text() != before  # not topped up: seed 2's dictations only
    scripts = {r["id"] for r in _read(turn_text)}
    assert {
        r["script_id"] for r in _read(out / "data" / "audio" / "turn" / "utterances.jsonl")
    } <= scripts
