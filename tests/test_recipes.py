"""The recipes (recipes/*/run.sh): option parsing, done-markers, --stage, --dry-run.

The demo recipe itself runs end to end in test_demo.py. Here the parakeet recipe runs with
stand-ins for `medasr` and `torchrun` on PATH that record their arguments (its real stages
need GPUs, an LLM and model weights): the test compares what ran with what --dry-run printed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
SCRIPTS = sorted(RECIPES.glob("*/run.sh"))
BIN = str(Path(sys.executable).parent)  # the environment's `medasr` and `python3`


def run_recipe(
    script: Path, *args: str, path: str = BIN, cwd: Path | None = None, timeout: float = 60,
    **env: str,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """``bash script *args`` with ``path`` in front of PATH and ``env`` added; never raises on
    the exit code. The LLM variables of the caller's environment are left out."""
    base = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "OPENAI_API_KEY")}
    full = base | {"PATH": f"{path}{os.pathsep}{os.environ.get('PATH', '')}"} | env
    return subprocess.run(["bash", str(script), *args], env=full, cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip


def commands(stdout: str) -> list[list[str]]:
    """The commands a recipe printed (`$ ...` lines), split as the shell splits them."""
    return [shlex.split(ln[2:]) for ln in stdout.splitlines() if ln.startswith("$ ")]


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr)
    return lines[0]


# --- the shell scripts ------------------------------------------------------------------------


def test_every_recipe_script_passes_shellcheck_or_bash_n() -> None:
    scripts = [*SCRIPTS, *sorted((RECIPES / "utils").glob("*.sh"))]
    assert {p.parent.name for p in SCRIPTS} >= {"demo", "parakeet"}
    for script in scripts:
        proc = subprocess.run(
            ["bash", "-n", str(script)], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, (script, proc.stderr)
    if shutil.which("shellcheck"):
        proc = subprocess.run(["shellcheck", "-x", *map(str, scripts)], capture_output=True,
                              text=True, check=False, cwd=ROOT)  # fmt: skip
        assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.parent.name)
def test_help_is_the_header_and_documents_every_option(script: Path) -> None:
    source = script.read_text()
    defaults = source[source.index("set -euo pipefail") : source.index("parse_options.sh")]
    options = re.findall(r"^([a-z][a-z0-9_]*)=", defaults, flags=re.M)
    assert {"out", "terms", "medical_test", "general_test", "base_model", "stage", "stop_stage",
            "dry_run"} <= set(options)  # fmt: skip
    proc = run_recipe(script, "--help")
    assert proc.returncode == 0, proc.stderr
    header = [ln[2:] if ln.startswith("# ") else ln[1:] for ln in source.splitlines()[1:]]
    assert proc.stdout.splitlines() == header[: len(proc.stdout.splitlines())]
    for name in options:
        assert re.search(rf"^ *--{name.replace('_', '-')}\b", proc.stdout, flags=re.M), name


# --- the shared option parsing and stages, on a toy recipe --------------------------------------

TOY = """\
#!/usr/bin/env bash
# A toy recipe.
#   --out DIR   where
set -euo pipefail
out=
words=a
stage=1
stop_stage=3
dry_run=false
. {utils}/parse_options.sh
. {utils}/stages.sh
stages_begin 1 3
echo "words=$words given=${{options_given[*]}}"
if stage_wanted 1 "one: touch a"; then run touch "$out/a"; stage_done 1; fi
if stage_wanted 2 "two: may fail"; then run sh -c 'exit ${{FAIL:-0}}'; stage_done 2; fi
if stage_wanted 3 "three: touch c"; then run touch "$out/c"; stage_done 3; fi
stages_end
"""


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    script = tmp_path / "toy.sh"
    script.write_text(TOY.format(utils=RECIPES / "utils"))
    return script


def _ran(proc: subprocess.CompletedProcess[str]) -> list[int]:
    return [int(n) for n in re.findall(r"== stage (\d) \(", proc.stdout)]


def test_options_are_kaldi_style_and_bad_ones_are_one_line(toy: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    proc = run_recipe(toy, "--out", str(out), "--words=x y", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "words=x y given=out words dry_run" in proc.stdout
    assert "dry run: 3 stage(s) printed, nothing was run" in proc.stdout
    assert not list(out.iterdir())  # nothing ran, no marker
    assert run_recipe(toy, "--dry-run", "false", "--out", str(out)).returncode == 0
    assert "unknown option --nope" in one_line_error(run_recipe(toy, "--nope", "1"))
    assert "--words needs a value" in one_line_error(run_recipe(toy, "--words"))
    assert "unexpected argument 'extra'" in one_line_error(run_recipe(toy, "extra"))
    assert "--dry-run takes true or false" in one_line_error(run_recipe(toy, "--dry-run=maybe"))
    assert "unexpected argument 'maybe'" in one_line_error(run_recipe(toy, "--dry-run", "maybe"))
    assert "--stage must be a stage number" in one_line_error(run_recipe(toy, "--stage", "x"))
    assert "stages are 1..3" in one_line_error(run_recipe(toy, "--stage", "4", "--stop-stage", "4"))
    assert "after --stop-stage" in one_line_error(
        run_recipe(toy, "--stage", "3", "--stop-stage", "2")
    )
    assert run_recipe(toy, "--help").stdout == "A toy recipe.\n  --out DIR   where\n"


def test_markers_skip_finished_stages_and_a_failed_stage_runs_again(
    toy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "o"
    out.mkdir()
    failed = run_recipe(toy, "--out", str(out), FAIL="1")
    assert failed.returncode == 1 and _ran(failed) == [1, 2]
    assert sorted(p.name for p in (out / ".done").iterdir()) == ["stage-1"]  # not stage 2

    again = run_recipe(toy, "--out", str(out))
    assert again.returncode == 0 and _ran(again) == [2, 3]
    assert "== stage 1: one: done already" in again.stdout
    assert "$ touch " + str(out / "c") in again.stdout

    idle = run_recipe(toy, "--out", str(out))
    assert idle.returncode == 0 and _ran(idle) == [] and "nothing to do" in idle.stdout
    assert "$ " not in idle.stdout

    # --stage N runs N again and makes the later stages stale, even past --stop-stage
    redo = run_recipe(toy, "--out", str(out), "--stage", "2", "--stop-stage", "2")
    assert redo.returncode == 0 and _ran(redo) == [2]
    assert sorted(p.name for p in (out / ".done").iterdir()) == ["stage-1", "stage-2"]
    assert _ran(run_recipe(toy, "--out", str(out))) == [3]

    # a dry run with --stage prints the stages it would run and changes no marker
    dry = run_recipe(toy, "--out", str(out), "--stage", "1", "--dry-run")
    assert _ran(dry) == [1, 2, 3] and len(list((out / ".done").iterdir())) == 3


TOY_RESUMABLE = """\
#!/usr/bin/env bash
set -euo pipefail
out=
seed=1
where=inside
stage=1
stop_stage=1
dry_run=false
. {utils}/parse_options.sh
. {utils}/stages.sh
stages_begin 1 1
if stage_wanted 1 "one: append to what is there, like medasr script"; then
  kept="$out/d"
  [ "$where" = inside ] || kept=/tmp/elsewhere
  stage_inputs 1 "seed=$seed" "$out/never-made" "$kept"
  mkdir -p "$out/d"
  run sh -c "echo $seed >> $out/d/texts"
  stage_done 1
fi
stages_end
"""


def test_a_stage_whose_inputs_changed_moves_its_old_outputs_aside(tmp_path: Path) -> None:
    script = tmp_path / "resumable.sh"
    script.write_text(TOY_RESUMABLE.format(utils=RECIPES / "utils"))
    out = tmp_path / "o"
    texts = out / "d" / "texts"
    assert run_recipe(script, "--out", str(out)).returncode == 0
    same = run_recipe(script, "--out", str(out), "--stage", "1")  # unchanged: resumed, topped up
    assert same.returncode == 0 and "moved" not in same.stdout
    assert texts.read_text() == "1\n1\n"
    dry = run_recipe(script, "--out", str(out), "--stage", "1", "--seed", "2", "--dry-run")
    assert dry.returncode == 0 and texts.read_text() == "1\n1\n" and not (out / "old").exists()
    other = run_recipe(script, "--out", str(out), "--stage", "1", "--seed", "2")
    assert other.returncode == 0, other.stderr
    assert "stage 1: changed since the last run (seed=1 -> seed=2); moved d to" in other.stdout
    assert texts.read_text() == "2\n"  # afresh: nothing of seed 1 mixed in
    (old,) = (out / "old").iterdir()
    assert old.name.startswith("stage-1-") and (old / "d" / "texts").read_text() == "1\n1\n"
    assert (out / ".done" / "stage-1.inputs").read_text() == "seed=2\n"
    outside = run_recipe(script, "--out", str(out), "--stage", "1", "--where", "x", "--seed", "3")
    assert "/tmp/elsewhere is not inside" in one_line_error(outside)
    assert texts.read_text() == "2\n"  # refused before anything moved


# --- the parakeet recipe ------------------------------------------------------------------------

PARAKEET = RECIPES / "parakeet" / "run.sh"


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, str]:
    """Input files of the parakeet recipe (their content is not read by a dry run)."""
    files = {}
    for name in ("clinic.jsonl", "ward.jsonl", "general.jsonl", "general_train.jsonl", "terms.txt"):
        (tmp_path / name).write_text("")
        files[name.split(".")[0]] = str(tmp_path / name)
    return files


def _llm() -> list[str]:
    return ["--llm-base-url", "http://127.0.0.1:9/v1", "--llm-model", "clinical-llm"]


def test_parakeet_dry_run_prints_every_stage_and_the_merged_config(
    tmp_path: Path, inputs: dict[str, str]
) -> None:
    out = tmp_path / "runs" / "p"
    before = sorted(tmp_path.rglob("*"))
    proc = run_recipe(
        PARAKEET, "--dry-run", "--out", str(out), "--medical-test",
        f"clinic={inputs['clinic']},{inputs['ward']}", "--general-test", inputs["general"],
        "--general-train", inputs["general_train"], "--nodes", "2", "--gpus", "8",
        "--rdzv-endpoint", "node0:29500", "--train-opts", "--epochs 5 --lr 5e-5", *_llm(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(tmp_path.rglob("*")) == before  # nothing created, not even the output folder
    assert _ran(proc) == list(range(8))
    cmds = commands(proc.stdout)
    first = [" ".join(c[:3]) for c in cmds]
    assert first == [
        "medasr lexicon --seed",  # 0: the target terms (the bundled seed vocabulary)
        *["medasr eval --manifest"] * 3,  # 0: the base model on clinic, ward and general
        "medasr lexicon --from-eval",  # 1
        "medasr script --backend",  # 2
        "medasr synth --scripts",  # 3
        "medasr manifest build",  # 4
        "env TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun",  # 5
        *["medasr eval --manifest"] * 3,  # 6: the tuned model
        f"python3 {RECIPES / 'utils' / 'summary.py'} --focus",  # 7
    ]  # fmt: skip
    base_evals = cmds[1:4]
    assert [c[c.index("--report") + 1] for c in base_evals] == [
        f"{out}/eval/base_{n}.json" for n in ("clinic", "ward", "general")
    ]
    assert all(c[c.index("--model") + 1] == "nvidia/parakeet-tdt-0.6b-v2" for c in base_evals)
    assert cmds[4][cmds[4].index("--from-eval") + 1] == f"{out}/eval/base_clinic.json"
    script = cmds[5]
    assert script[script.index("--base-url") + 1] == "http://127.0.0.1:9/v1"
    assert script[script.index("--backend") + 1] == "openai"
    train = cmds[8]
    assert train[2:14] == ["torchrun", "--nnodes", "2", "--nproc-per-node", "8", "--node-rank",
                           "0", "--rdzv-backend", "c10d", "--rdzv-endpoint", "node0:29500",
                           "--max-restarts"]  # fmt: skip
    medasr_args = train[train.index("medasr_cli") + 1 :]
    assert medasr_args[0] == "train" and medasr_args[-1] == "--resume"
    for flag, value in (("--nodes", "2"), ("--gpus", "8"), ("--replay", inputs["general_train"]),
                        ("--epochs", "5"), ("--out", f"{out}/train")):  # fmt: skip
        assert medasr_args[medasr_args.index(flag) + 1] == value
    assert [c[c.index("--model") + 1] for c in cmds[9:12]] == [f"{out}/train/model.nemo"] * 3

    # the merged config: `medasr train` with the same arguments and --print-config
    head = next(
        ln for ln in proc.stdout.splitlines() if ln.startswith("# the merged training config")
    )
    assert shlex.split(head.split("`")[1]) == ["medasr", *medasr_args, "--print-config"]
    text = proc.stdout.split(head + "\n", 1)[1].split("\n\n", 1)[0]
    config = yaml.safe_load(text)
    assert config["init"] == "nvidia/parakeet-tdt-0.6b-v2"
    assert config["trainer"]["num_nodes"] == 2 and config["trainer"]["devices"] == 8
    assert config["trainer"]["max_epochs"] == 5 and config["model"]["optim"]["lr"] == 5e-5
    assert config["replay"]["manifest"] == inputs["general_train"]


def test_parakeet_launchers(tmp_path: Path, inputs: dict[str, str]) -> None:
    common = ["--dry-run", "--out", str(tmp_path / "o"), "--medical-test", inputs["clinic"],
              "--stage", "5", "--stop-stage", "5"]  # fmt: skip
    one = commands(run_recipe(PARAKEET, *common).stdout)
    assert [c[:3] for c in one] == [["medasr", "train", "--data"]] and "--gpus" not in one[0]
    srun = commands(run_recipe(PARAKEET, *common, "--launcher", "srun", "--nodes", "4",
                               "--gpus", "8").stdout)  # fmt: skip
    assert srun[0][:8] == [
        "srun",
        "--nodes",
        "4",
        "--ntasks-per-node",
        "8",
        "medasr",
        "train",
        "--data",
    ]
    standalone = commands(
        run_recipe(PARAKEET, *common, "--launcher", "torchrun", "--gpus", "4").stdout
    )
    assert standalone[0][2:7] == ["torchrun", "--nnodes", "1", "--nproc-per-node", "4"]
    assert "--standalone" in standalone[0]
    # a worker node runs the training stage only, which needs no test set
    worker = common[:3] + common[5:]
    proc = run_recipe(PARAKEET, *worker, "--nodes", "2", "--gpus", "8", "--node-rank", "1",
                      "--rdzv-endpoint", "node0:29500")  # fmt: skip
    assert proc.returncode == 0 and _ran(proc) == [5], proc.stderr
    assert "--node-rank 1 " in proc.stdout
    message = one_line_error(run_recipe(PARAKEET, *worker[:-4], "--nodes", "2", "--gpus", "8",
                                        "--node-rank", "1", "--rdzv-endpoint", "h:1"))  # fmt: skip
    assert "--node-rank 1 runs only the training stage" in message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--medical-test is required"),
        (["--medical-test", "missing.jsonl"], "--medical-test: missing.jsonl is not a readable file"),
        (["--medical-test", "CLINIC", "--general-test", "gone.jsonl"], "--general-test: gone.jsonl"),
        (["--medical-test", "CLINIC"], "--llm-base-url is required"),
        (["--medical-test", "CLINIC", "--llm-base-url", "http://x/v1"], "--llm-model is required"),
        (["--medical-test", "CLINIC", "--terms", "nope.txt"], "--terms: nope.txt is not a readable"),
        (["--medical-test", "CLINIC", "--stage", "5", "--nodes", "2"], "--gpus is required"),
        (["--medical-test", "CLINIC", "--stage", "5", "--nodes", "2", "--gpus", "8"],
         "--rdzv-endpoint is required"),
        (["--medical-test", "CLINIC", "--stage", "5", "--base-model", "mine.nemo"],
         "--base-model: mine.nemo is not a readable file"),
        (["--medical-test", "CLINIC", "--stage", "3", "--noise-dir", "/no/such/dir"],
         "--noise-dir: /no/such/dir is not a folder"),
        (["--medical-test", "CLINIC,CLINIC"], "two test sets are named 'clinic'"),
        (["--medical-test", "CLINIC", "--launcher", "mpirun"], "--launcher must be"),
    ],
)  # fmt: skip
def test_parakeet_refuses_a_missing_input_with_one_line(
    tmp_path: Path, inputs: dict[str, str], args: list[str], message: str
) -> None:
    args = [a.replace("CLINIC", inputs["clinic"]) for a in args]
    proc = run_recipe(PARAKEET, "--dry-run", "--out", str(tmp_path / "o"), *args, cwd=tmp_path)
    line = one_line_error(proc)
    assert line.startswith(f"{PARAKEET}: error: ") and message in line, line
    assert not (tmp_path / "o").exists()


# --- the parakeet recipe run with stand-ins for medasr and torchrun ----------------------------

FAKE = """\
#!{python}
# A stand-in for `{name}`: records its arguments; writes what the next stage reads.
import json, os, pathlib, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["{name}", *args]) + "\\n")
def opt(flag):
    return args[args.index(flag) + 1] if flag in args else None
if args[:1] == ["eval"]:
    report = pathlib.Path(opt("--report"))
    report.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.environ["FAKE_BASE" if report.name.startswith("base_") else "FAKE_TUNED"], report)
if args[:1] == ["lexicon"]:
    out = pathlib.Path(opt("-o"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "lexicon.jsonl").write_text(json.dumps({{"text": "apixaban", "category": "drug"}}) + "\\n")
"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Real `medasr eval` reports of a "base" and a "tuned" model (from pred_text)."""
    from helpers import run_cli

    root = tmp_path_factory.mktemp("reports")
    (root / "terms.txt").write_text("apixaban\tdrug\nmetoprolol\tdrug\n")
    refs = ["continue apixaban daily", "start metoprolol twice daily", "apixaban was held"]
    made = []
    for name, hyps in (("base", ["continue a pixel ban daily", "start metoprolol twice daily",
                                 "a pixel ban was held"]),
                       ("tuned", ["continue apixaban daily", "start metoprolol twice daily",
                                  "apixaban was held"])):  # fmt: skip
        manifest = root / f"{name}.jsonl"
        manifest.write_text("".join(json.dumps({"audio_filepath": f"/a/{i}.wav", "duration": 1.0,
                                                "text": r, "pred_text": h}) + "\n"
                                    for i, (r, h) in enumerate(zip(refs, hyps, strict=True))))  # fmt: skip
        report = root / f"{name}_report.json"
        proc = run_cli("eval", "--manifest", str(manifest), "--terms", str(root / "terms.txt"),
                       "--report", str(report))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        made.append(report)
    return made[0], made[1]


def test_parakeet_runs_exactly_the_printed_commands_and_resumes_by_markers(
    tmp_path: Path, inputs: dict[str, str], reports: tuple[Path, Path]
) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name in ("medasr", "torchrun"):
        (fake_bin / name).write_text(FAKE.format(python=sys.executable, name=name))
        (fake_bin / name).chmod(0o755)
    log = tmp_path / "log.jsonl"
    env = {"FAKE_LOG": str(log), "FAKE_BASE": str(reports[0]), "FAKE_TUNED": str(reports[1])}
    path = f"{fake_bin}{os.pathsep}{BIN}"
    out = tmp_path / "out"
    args = ["--out", str(out), "--medical-test", f"clinic={inputs['clinic']}", "--general-test",
            inputs["general"], "--terms", inputs["terms"], "--launcher", "torchrun", "--gpus", "2",
            *_llm()]  # fmt: skip

    dry = run_recipe(PARAKEET, "--dry-run", *args, path=path, **env)
    assert dry.returncode == 0, dry.stderr
    log.unlink()  # the dry run's --print-config went to the stand-in too
    proc = run_recipe(PARAKEET, *args, path=path, **env)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    ran = [json.loads(ln) for ln in log.read_text().splitlines()]
    printed = [c[2:] if c[0] == "env" else c for c in commands(dry.stdout) if c[0] != "python3"]
    assert ran == printed == [c[2:] if c[0] == "env" else c for c in commands(proc.stdout)
                              if c[0] != "python3"]  # fmt: skip
    assert ran[0][:3] == ["medasr", "lexicon", "--terms-file"]  # the given terms file

    # stage 7: before -> after, all target terms and the terms stage 1 picked (apixaban)
    summary = (out / "summary.txt").read_text()
    assert summary.splitlines()[0].split() == ["test", "set", "utterances", "WER", "M-WER",
                                               "term", "recall", "targeted", "recall"]  # fmt: skip
    # 6 errors in 10 words (apixaban -> "a pixel ban" twice), then none; the terms: 1 of 3, then
    # all 3; apixaban alone: 0 of 2, then 2 of 2
    assert re.split(r"  +", summary.splitlines()[1]) == [
        "clinic", "3", "60.0% -> 0.0%", "66.7% -> 0.0%", "33.3% -> 100.0%", "0.0% -> 100.0%"
    ]  # fmt: skip
    assert summary in proc.stdout
    assert sorted(p.name for p in (out / ".done").iterdir()) == [f"stage-{n}" for n in range(8)]

    log.unlink()
    idle = run_recipe(PARAKEET, *args, path=path, **env)
    assert idle.returncode == 0 and "nothing to do" in idle.stdout and not log.exists()
    redo = run_recipe(PARAKEET, *args, "--stage", "5", path=path, **env)
    assert redo.returncode == 0 and _ran(redo) == [5, 6, 7]
    assert [c[:2] for c in map(json.loads, log.read_text().splitlines())] == [
        ["torchrun", "--nnodes"],
        *[["medasr", "eval"]] * 2,
    ]
