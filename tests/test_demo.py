"""The README's main job (``make demo`` = recipes/demo/run.sh) end to end, with few training
steps; then a re-run that has nothing to do, and ``--stage 5`` that trains again."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from test_recipes import RECIPES, run_recipe

DEMO = RECIPES / "demo" / "run.sh"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("espeak-ng", "ffmpeg", "curl")),
        reason="espeak-ng, ffmpeg and curl are needed",
    ),
]


def _demo(out: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    from helpers import free_port

    return run_recipe(DEMO, "--out", str(out), *args, timeout=timeout,
                      MEDASR_DEMO_STEPS="5", MEDASR_DEMO_PORT=str(free_port()))  # fmt: skip


def _stages(proc: subprocess.CompletedProcess[str]) -> list[int]:
    return [int(n) for n in re.findall(r"== stage (\d) \(", proc.stdout)]


def _mtimes(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("demo") / "demo"
    proc = _demo(out)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    return out, proc


def test_demo_runs_every_stage_to_a_transcription_through_the_server(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, proc = demo
    assert _stages(proc) == [1, 2, 3, 4, 5, 6, 7]
    assert "$ medasr train --config tiny-cpu" in proc.stdout  # each stage's command, printed
    assert sorted(p.name for p in (out / ".done").iterdir()) == [f"stage-{n}" for n in range(1, 8)]
    assert (out / "run" / "model.nemo").is_file() and (out / "run" / "mlflow.db").is_file()
    for report in ("eval_train", "eval_test", "eval_test_endpoint"):
        body = json.loads((out / f"{report}.json").read_text())
        assert body["overall"]["utterances"] > 0
    transcription = next(ln for ln in proc.stdout.splitlines() if ln.startswith('{"text"'))
    assert "text" in json.loads(transcription)
    # the last lines: WER and term recall of the model, from its eval reports
    *_, header, train, test = proc.stdout.splitlines()
    assert header.split() == ["test", "set", "utterances", "WER", "M-WER", "term", "recall"]
    for line, name in ((train, "train"), (test, "test")):
        report = json.loads((out / f"eval_{name}.json").read_text())
        wer, recall = report["overall"]["wer"], report["terms"]["recall"]
        cells = re.split(r"  +", line)
        assert cells[:3] == [name, str(report["overall"]["utterances"]), f"{100 * wer:.1f}%"]
        assert cells[-1] == ("-" if recall is None else f"{100 * recall:.1f}%")


def test_a_finished_demo_reruns_with_nothing_to_do(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = demo
    before = _mtimes(out)
    start = time.monotonic()
    proc = _demo(out, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 30  # no stage ran (a stage loads torch: many seconds)
    assert _stages(proc) == [] and "$ " not in proc.stdout
    assert len(re.findall(r"^== stage \d: \w+: done already", proc.stdout, flags=re.M)) == 7
    assert "nothing to do" in proc.stdout
    assert _mtimes(out) == before  # nothing written, nothing deleted
    assert "term recall" in proc.stdout  # the summary is still shown


def test_stage_5_trains_again_and_makes_the_later_stages_stale(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = demo
    dry = _demo(out, "--stage", "5", "--dry-run", timeout=60)
    assert _stages(dry) == [5, 6, 7]  # what --stage 5 runs: training onward

    model = out / "run" / "model.nemo"
    trained = model.stat().st_mtime_ns
    proc = _demo(out, "--stage", "5", "--stop-stage", "5")
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert _stages(proc) == [5] and "done already" not in proc.stdout
    assert model.stat().st_mtime_ns > trained
    # stages 6 and 7 scored the old model: a plain re-run runs them again
    assert sorted(p.name for p in (out / ".done").iterdir()) == [f"stage-{n}" for n in range(1, 6)]
    assert _stages(_demo(out, "--dry-run", timeout=60)) == [6, 7]
