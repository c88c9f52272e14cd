"""The training plan: steps, warm-up and learning rates follow the real run; filters are told."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from helpers import cli_env, one_error_line, run_cli
from medasr_cli.core.errors import InputError
from medasr_cli.core.records import ManifestEntry

pytest.importorskip("nemo.collections.asr")


def entries(durations: list[float]) -> list[ManifestEntry]:
    return [ManifestEntry(audio_filepath=f"{i}.wav", duration=d, text="x")
            for i, d in enumerate(durations)]  # fmt: skip


def silent_manifest(folder: Path, durations: list[float]) -> Path:
    """A manifest of real (silent) WAV files of the given durations."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, d in enumerate(durations):
        wav = folder / f"u{i}.wav"
        sf.write(wav, np.zeros(int(d * 16000), dtype=np.float32), 16000, subtype="PCM_16")
        lines.append(json.dumps({"audio_filepath": str(wav), "duration": d, "text": "a b"}))
    path = folder / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_of_one_cpu_process_matches_nemo() -> None:
    from nemo.core.optim.lr_scheduler import compute_max_steps

    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.plan import plan_training

    cfg = load_train_config("tiny-cpu", {"trainer.max_steps": -1, "trainer.max_epochs": 4})
    plan = plan_training(cfg, entries([5.0] * 23), nodes=1, devices_per_node=1)
    assert (plan.world_size, plan.global_batch) == (1, 5)
    assert plan.steps_per_epoch == 5 and plan.total_steps == 20 == compute_max_steps(
        4, 1, 1.0, 1, 23, 5, False)  # fmt: skip
    assert plan.warmup_steps == int(0.07 * 20)  # tiny-cpu's warmup_ratio
    assert (plan.peak_lr, plan.final_lr) == (3e-3, 1e-5)
    assert plan.utterances == 23 and plan.hours == pytest.approx(23 * 5 / 3600)


def test_plan_of_an_8x8_cluster_ends_its_warm_up() -> None:
    """The README's `--nodes 8 --gpus 8` on a few thousand synthetic utterances: one optimizer
    step takes 1,024 of them. The shipped fixed warm-up of 500 steps never ended in such a run;
    the warm-up is now a share of the real total."""
    from nemo.core.optim.lr_scheduler import CosineAnnealing, compute_max_steps

    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.plan import plan_training, scheduler_config

    cfg = load_train_config(None, {"trainer.num_nodes": 8, "trainer.devices": 8})
    plan = plan_training(cfg, entries([12.0] * 3000), nodes=8, devices_per_node=8)
    assert (plan.world_size, plan.global_batch) == (64, 1024)
    assert plan.total_steps == 30 == compute_max_steps(10, 1, 1.0, 64, 3000, 16, False)
    assert plan.steps_per_epoch == 3 and plan.warmup_steps == 3
    assert any("large for 3,000 utterances" in w for w in plan.warnings)
    # NeMo's own scheduler, given the run's total steps (trainer.max_steps), peaks after the
    # warm-up and ends at min_lr
    import torch

    sched = scheduler_config(cfg.model.optim)["sched"]
    assert "warmup_steps" not in sched and sched["warmup_ratio"] == 0.1
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=plan.peak_lr)
    policy = CosineAnnealing(opt, max_steps=plan.total_steps, warmup_ratio=sched["warmup_ratio"],
                             min_lr=sched["min_lr"])  # fmt: skip
    lrs = []
    for _ in range(plan.total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        policy.step()
    assert max(lrs) == pytest.approx(plan.peak_lr) and lrs.index(max(lrs)) == plan.warmup_steps
    assert opt.param_groups[0]["lr"] == pytest.approx(plan.final_lr)


def test_explicit_warmup_steps_win_over_the_ratio() -> None:
    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.plan import plan_training, scheduler_config

    cfg = load_train_config(None, None, ["model.optim.sched.warmup_steps=500"])
    assert "warmup_ratio" not in scheduler_config(cfg.model.optim)["sched"]  # NeMo takes one
    plan = plan_training(cfg, entries([5.0] * 100), nodes=1, devices_per_node=1)
    assert plan.warmup_steps == 500 and plan.total_steps == 70
    assert any("never reaches its peak" in w for w in plan.warnings)


def test_filters_are_counted_and_a_large_share_is_refused() -> None:
    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.plan import check_dropped, plan_training

    cfg = load_train_config()
    plan = plan_training(cfg, entries([10.0] * 90 + [40.0] * 8 + [0.05] * 2), nodes=1,
                         devices_per_node=1)  # fmt: skip
    assert plan.utterances == 90 and plan.manifest_utterances == 100
    long, short = plan.dropped
    assert (long.utterances, short.utterances) == (8, 2)
    assert long.hours == pytest.approx(8 * 40 / 3600) and "max_duration 24 s" in long.reason
    assert plan.dropped_share == pytest.approx(0.1)
    with pytest.raises(InputError, match=r"10 of 100 training utterances .* --allow-dropped"):
        check_dropped(plan, 0.05)
    check_dropped(plan, 1.0)


def test_dry_run_prints_the_plan_for_the_readme_cluster(tmp_path: Path) -> None:
    manifest = silent_manifest(tmp_path / "data", [2.0] * 6 + [30.0])
    proc = run_cli("train", "--train-manifest", str(manifest), "--val-manifest", str(manifest),
                   "--nodes", "8", "--gpus", "8", "--dry-run", "--allow-dropped",
                   env=cli_env(COLUMNS="200"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "world size │ 64 (8 node(s) × 8)" in out
    assert "global batch │ 1024 (per device 16 × 64 × accumulate 1)" in out
    assert "total steps │ 10 (10 epoch(s))" in out and "warm-up steps │ 1" in out
    assert "peak 0.0001 -> final 1e-06" in out
    assert "dropped │ 1 utterances (0.01 h): longer than model.train_ds.max_duration 24 s" in out
    assert "without --replay" in proc.stderr  # the forgetting guard, in bold on a terminal
    refused = run_cli("train", "--train-manifest", str(manifest), "--val-manifest",
                      str(manifest), "--dry-run")  # fmt: skip
    assert refused.returncode == 2
    assert "1 of 7 training utterances" in one_error_line(refused, "error")


def test_characters_the_tokenizer_cannot_produce_are_refused(
    speech_dir: Path, tiny_model: Path, tmp_path: Path
) -> None:
    """°C, µg and curly quotes would train as <unk>: `manifest validate --tokenizer MODEL`
    lists the lines, and `train --init MODEL` stops before the first step, naming file:line."""
    rows = [
        {"audio_filepath": str(speech_dir / "utt00.wav"), "text": "the patient was started"},
        {"audio_filepath": str(speech_dir / "utt01.wav"), "text": "a fever of °C today"},
        {"audio_filepath": str(speech_dir / "utt02.wav"), "text": "the patient’s dose"},
    ]
    manifest = tmp_path / "clinic.jsonl"
    manifest.write_text("".join(
        json.dumps(r | {"duration": sf.info(r["audio_filepath"]).duration}) + "\n" for r in rows))  # fmt: skip
    proc = run_cli("manifest", "validate", str(manifest), "--tokenizer", str(tiny_model))
    assert proc.returncode == 2
    report = proc.stdout + proc.stderr
    assert f"{manifest}:2: text has characters outside the charset: '°'" in report
    assert f"{manifest}:3: text has characters outside the charset: '’'" in report
    train = run_cli("train", "--init", str(tiny_model), "--train-manifest", str(manifest),
                    "--val-manifest", str(manifest), "--out", str(tmp_path / "run"),
                    "--max-steps", "1", "--allow-dropped", "--replay", str(manifest),
                    env=cli_env(COLUMNS="400"), timeout=600)  # fmt: skip
    assert train.returncode == 2, train.stderr[-2000:]
    line = one_error_line(train, "error")
    assert "transcript(s) use characters the model's tokenizer cannot produce" in line
    assert f"{manifest}:2: '°'" in line and f"{manifest}:3: '’'" in line
    assert not (tmp_path / "run" / "model.nemo").exists()


def test_validation_sets_and_checkpoint_selection() -> None:
    from medasr_cli.train.validation import describe, parse_validation_sets, selection

    sets = parse_validation_sets(["medical=a/val.jsonl", "b/general_manifest.jsonl"])
    assert sets == {"medical": Path("a/val.jsonl"), "general": Path("b/general_manifest.jsonl")}
    assert selection(None, sets) == ("val_wer_select", {"medical": 0.5, "general": 0.5})
    assert selection("medical", sets) == ("medical_val_wer", {})
    assert selection("medical:3,general:1", sets) == (
        "val_wer_select", {"medical": 0.75, "general": 0.25})  # fmt: skip
    assert describe(*selection("medical:3,general:1", sets)).endswith(
        "0.75×medical + 0.25×general (WER)")  # fmt: skip
    one = parse_validation_sets(["val.jsonl"])
    assert selection(None, one) == ("val_wer", {})  # one set: NeMo's plain val_wer
    for bad, message in (("surgical", "no validation set 'surgical'"),
                         ("medical:x", "'x' is not a weight"),
                         ("medical:0,general:0", "weights must be")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            selection(bad, sets)
    with pytest.raises(InputError, match="two validation sets are called 'medical'"):
        parse_validation_sets(["medical=a.jsonl", "medical=b.jsonl"])
    with pytest.raises(InputError, match="name the set"):
        parse_validation_sets(["manifest.jsonl", "x=y.jsonl"])


def test_print_config_is_valid_yaml_at_any_terminal_width(tmp_path: Path) -> None:
    """Long paths are not wrapped at the terminal's width (recipes read this output as YAML)."""
    import yaml

    deep = tmp_path / ("a-very-long-folder-name-" * 6) / "out"
    proc = run_cli("train", "--config", "tiny-cpu", "--set", f"exp_manager.exp_dir={deep}",
                   "--print-config", env=cli_env(COLUMNS="40"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["exp_manager"]["exp_dir"] == str(deep)
