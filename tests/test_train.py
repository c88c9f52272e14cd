"""`medasr train` on CPU: config, strategies, a real tiny TDT training run, fine-tune, MLflow."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import (
    SENTENCES,
    cli_env,
    error_lines,
    espeak_to_wav,
    free_port,
    one_error_line,
    run_cli,
)
from medasr_cli.core.errors import InputError

pytest.importorskip("nemo.collections.asr")

TRAIN_SENTENCES = [
    *SENTENCES,
    "Blood pressure is one forty over ninety.",
    "Prescribe amoxicillin five hundred milligrams.",
    "The chest X-ray shows bilateral effusions.",
    "Refer to cardiology for an angiogram.",
]
FINETUNE_SENTENCES = [  # new sentences, in characters the TRAIN_SENTENCES tokenizer covers
    "Start ramipril and repeat the potassium.",
    "The abdomen is soft and non tender.",
    "Plan a colonoscopy in the autumn.",
    "Continue metformin with meals.",
    "Review the thyroid function tests.",
]


def make_dataset(root: Path, sentences: list[str]) -> Path:
    """espeak-ng utterances + a manifest built by `medasr manifest build`."""
    audio = root / "audio"
    for i, text in enumerate(sentences):
        espeak_to_wav(text, audio / f"u{i:02d}.wav")
        (audio / f"u{i:02d}.txt").write_text(text)
    manifest = root / "all.jsonl"
    proc = run_cli("manifest", "build", str(audio), "--out", str(manifest), timeout=900)
    assert proc.returncode == 0, proc.stderr
    return manifest


@pytest.fixture(scope="module")
def train_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("train_set"), TRAIN_SENTENCES)


@pytest.fixture(scope="module")
def trained_run(train_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FastConformer-TDT trained from scratch on CPU until it memorises the set."""
    out = tmp_path_factory.mktemp("run")
    proc = run_cli("train", "--config", "tiny-cpu", "--train-manifest", str(train_set),
                   "--val-manifest", str(train_set), "--out", str(out), timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "DeepSpeed" not in proc.stderr  # strategy auto in the preset: no fallback warning
    return out


# ---- fast: config and strategies ------------------------------------------------------------


def test_print_config_merges_flags_and_dotlist() -> None:
    proc = run_cli("train", "--print-config", "--gpus", "8", "--nodes", "2", "--lr", "5e-5",
                   "--batch-size", "12", "--epochs", "7", "--precision", "32",
                   "--strategy", "ddp", "--set", "trainer.val_check_interval=0.25",
                   "--set", "deepspeed.stage=2", timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import yaml

    cfg = yaml.safe_load(proc.stdout)
    assert cfg["trainer"]["devices"] == 8 and cfg["trainer"]["num_nodes"] == 2
    assert cfg["trainer"]["accelerator"] == "gpu"
    assert cfg["trainer"]["val_check_interval"] == 0.25
    assert cfg["model"]["optim"]["lr"] == 5e-5
    assert cfg["model"]["preprocessor"]["features"] == 128
    assert cfg["model"]["loss"]["tdt_kwargs"]["durations"] == [0, 1, 2, 3, 4]
    assert cfg["model"]["train_ds"]["augmentor"]["speed"]["prob"] == 0.4
    assert cfg["trainer"]["max_epochs"] == 7 and cfg["trainer"]["precision"] == "32"
    assert cfg["trainer"]["strategy"] == "ddp"
    assert (
        cfg["model"]["train_ds"]["batch_size"] == cfg["model"]["validation_ds"]["batch_size"] == 12
    )
    # the source document's recipe, as shipped
    pre = cfg["model"]["preprocessor"]
    assert (pre["window_size"], pre["window_stride"], pre["n_fft"]) == (0.025, 0.01, 512)
    assert pre["normalize"] == "per_feature" and pre["dither"] == 1e-5
    tdt = cfg["model"]["loss"]["tdt_kwargs"]
    assert (tdt["sigma"], tdt["omega"]) == (0.02, 0.1)
    spec = cfg["model"]["spec_augment"]
    assert (spec["freq_masks"], spec["freq_width"], spec["time_masks"], spec["time_width"]) == (
        2, 27, 10, 0.05)  # fmt: skip
    speed = cfg["model"]["train_ds"]["augmentor"]["speed"]
    assert (speed["min_speed_rate"], speed["max_speed_rate"]) == (0.9, 1.1)
    sched = cfg["model"]["optim"]["sched"]
    assert cfg["model"]["optim"]["name"] == "adamw" and sched["warmup_ratio"] == 0.1
    assert "warmup_steps" not in sched  # a share of the run's real steps, not a fixed 500
    ckpt = cfg["exp_manager"]["checkpoint_callback_params"]
    assert (ckpt["mode"], ckpt["save_top_k"]) == ("min", 3)
    assert cfg["validation"]["select"] is None  # val_wer, or the mean of several sets
    ds = cfg["deepspeed"]
    # ZeRO-2 without CPU offload (an option for small GPUs); no activation keys NeMo ignores
    assert ds["stage"] == 2 and ds["offload_optimizer"] is False
    assert "partition_activations" not in ds and "cpu_checkpointing" not in ds


def test_data_folder_from_manifest_split(tmp_path: Path) -> None:
    """`--data DIR`: the train/val/test.jsonl that `medasr manifest build --split` writes."""
    from medasr_cli.cli.train import _manifests

    for name in ("train", "val", "test"):
        (tmp_path / f"{name}.jsonl").write_text("")
    assert _manifests(tmp_path, None, None, []) == (
        tmp_path / "train.jsonl", {"val": tmp_path / "val.jsonl"}, [tmp_path / "test.jsonl"])  # fmt: skip
    other = tmp_path / "other.jsonl"
    other.write_text("")
    assert _manifests(tmp_path, None, None, [other])[2] == [other]  # explicit tests win
    (tmp_path / "val.jsonl").unlink()
    with pytest.raises(InputError, match="validation manifest not found"):
        _manifests(tmp_path, None, None, [])


def test_deepspeed_strategy_receives_every_option() -> None:
    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.devices import build_strategy, deepspeed_kwargs

    cfg = load_train_config()
    ds = dict(cfg.deepspeed)
    strategy = build_strategy("deepspeed", "gpu", 8, 8, ds)
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == 2
    assert "offload_optimizer" not in zero  # the default: optimizer state on the GPUs
    assert zero["contiguous_gradients"] is True and zero["overlap_comm"] is True
    assert zero["allgather_bucket_size"] == 200_000_000 == zero["reduce_bucket_size"]
    act = strategy.config["activation_checkpointing"]
    assert act["partition_activations"] is False and act["cpu_checkpointing"] is False
    # the option for small GPUs: offload, with NeMo's client AdamW on the offloaded states
    offload = load_train_config(dotlist=["deepspeed.offload_optimizer=true"])
    ds = dict(offload.deepspeed)
    strategy = build_strategy("deepspeed", "gpu", 8, 8, ds)
    assert strategy.config["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert strategy.config["zero_force_ds_cpu_optimizer"] is False
    assert "zero_force_ds_cpu_optimizer" not in deepspeed_kwargs(ds)


def test_deepspeed_mixed_precision_is_torch_autocast() -> None:
    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.devices import build_strategy, deepspeed_precision

    ds = dict(load_train_config().deepspeed)
    strategy = build_strategy("deepspeed", "gpu", 1, 1, ds)
    assert deepspeed_precision(strategy, "bf16-mixed") == "32-true"
    assert strategy.config["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert "bf16" not in strategy.config  # not DeepSpeed's bf16 parameter mode
    assert deepspeed_precision(build_strategy("deepspeed", "gpu", 1, 1, ds), 32) == 32
    with pytest.raises(InputError, match="bf16-mixed"):
        deepspeed_precision(build_strategy("deepspeed", "gpu", 1, 1, ds), "16-mixed")
    assert deepspeed_precision("auto", "bf16-mixed") == "bf16-mixed"  # DDP/auto: Lightning AMP


def test_gpu_without_bf16_falls_back_to_what_the_strategy_supports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A V100/T4 (no bf16) with the default bf16-mixed: 16-mixed under DDP, fp32 under DeepSpeed
    (which refuses fp16 autocast). No GPU here, so only the bf16 query is replaced."""
    import torch

    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.devices import build_strategy, deepspeed_precision, resolve_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("bf16-mixed", "gpu") == "16-mixed"
    strategy = build_strategy("deepspeed", "gpu", 1, 1, dict(load_train_config().deepspeed))
    chosen = resolve_precision("bf16-mixed", "gpu", deepspeed=True)
    assert deepspeed_precision(strategy, chosen) == "32-true"  # not refused as 16-mixed
    assert "torch_autocast" not in strategy.config
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("bf16-mixed", "gpu", deepspeed=True) == "bf16-mixed"


def test_out_of_memory_names_the_knobs() -> None:
    """A real CPU allocation failure (and CUDA's message, constructed: no GPU here)."""
    import torch

    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.run import is_out_of_memory, oom_hint

    with pytest.raises(RuntimeError) as cpu:
        torch.empty(2**50, dtype=torch.uint8)  # a petabyte
    assert is_out_of_memory(cpu.value)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_out_of_memory(RuntimeError("size mismatch"))
    hint = oom_hint(load_train_config(None, {"trainer.precision": "32"}))
    assert all(knob in hint for knob in ("--batch-size", "max_duration", "--precision"))
    assert "offload_optimizer=true" in hint
    assert "--precision" not in oom_hint(load_train_config())  # bf16-mixed already


def test_progress_bar_shows_loss_wer_and_throughput() -> None:
    from types import SimpleNamespace

    import torch

    from medasr_cli.train.callbacks import MetricsProgressBar

    metrics = {"train_loss": torch.tensor(1.23456), "val_wer": torch.tensor(0.25),
               "train_utts_per_sec": torch.tensor(19.94), "learning_rate": torch.tensor(1e-3),
               "train_audio_sec_per_sec": torch.tensor(50.33)}  # fmt: skip
    trainer = SimpleNamespace(callback_metrics=metrics, progress_bar_metrics={}, loggers=[])
    items = MetricsProgressBar().get_metrics(trainer, None)
    assert items == {"loss": "1.235", "wer": "25.0%", "utt/s": "19.9", "audio-s/s": "50.3"}
    del metrics["val_wer"]  # before the first validation
    assert "wer" not in MetricsProgressBar().get_metrics(trainer, None)


def _needs_deepspeed_on_cpu() -> None:
    """Skip unless DeepSpeed imports and a C++ compiler can build its CPU accelerator's op."""
    import shutil

    pytest.importorskip("deepspeed")
    if shutil.which("c++") is None:
        pytest.skip("DeepSpeed's CPU accelerator builds a small C++ op: no compiler")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_deepspeed_strategy_trains_and_consolidates_zero_checkpoints(
    train_set: Path, tmp_path: Path, port: int, precision: str
) -> None:
    """Lightning's DeepSpeedStrategy (ZeRO-2, with and without optimizer offload, NeMo's AdamW)
    through the real CLI on DeepSpeed's CPU accelerator; only Lightning's CUDA-only checks
    are lifted (see tests/deepspeed_cpu_harness.py). The best ZeRO checkpoint directory
    is consolidated into model.nemo, which stock NeMo restores with exactly those weights.
    Before zero_force_ds_cpu_optimizer and DeepSpeed's own checkpoint reader, both steps
    failed (ZeRORuntimeException; torch.load weights_only). bf16 runs through DeepSpeed's
    torch_autocast: DeepSpeed's own bf16 mode failed on NeMo's float32 features."""

    _needs_deepspeed_on_cpu()
    import torch
    from nemo.collections.asr.models import ASRModel

    from medasr_cli.train.checkpoint import zero_checkpoint_weights

    out = tmp_path / "run"
    harness = Path(__file__).with_name("deepspeed_cpu_harness.py")
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    proc = subprocess.run(
        [sys.executable, str(harness), "train", "--config", "tiny-cpu",
         "--train-manifest", str(train_set), "--val-manifest", str(train_set),
         "--max-steps", "12", "--precision", precision, "--out", str(out),
         "--set", "exp_manager.create_mlflow_logger=false",
         "--set", f"deepspeed.offload_optimizer={precision == '32'}",  # both placements
         "--set", "trainer.check_val_every_n_epoch=1"],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    autocast = "torch_autocast" in proc.stdout + proc.stderr
    assert autocast == (precision == "bf16-mixed")
    zero_dirs = sorted(p for p in out.rglob("*.ckpt") if (p / "checkpoint").is_dir())
    assert zero_dirs, "no DeepSpeed ZeRO checkpoint directories were written"
    model = ASRModel.restore_from(str(out / "model.nemo"), map_location="cpu")
    params = {k: v.detach().float() for k, v in model.named_parameters()}

    def same(ckpt: Path) -> bool:
        weights = zero_checkpoint_weights(str(ckpt))
        assert set(params) <= set(weights)
        return all(torch.equal(v, weights[k].float()) for k, v in params.items())

    # model.nemo holds exactly the weights of one consolidated ZeRO checkpoint (the best)
    assert sum(same(p) for p in zero_dirs) >= 1


def test_strategy_auto_is_deepspeed_on_gpu_and_ddp_on_cpu(train_set: Path, tmp_path: Path) -> None:
    """The shipped default says what it means: ``auto`` = DeepSpeed on GPUs, DDP over gloo on
    CPU; ``deepspeed`` on CPU is refused however it was asked for (flag, --set or a YAML)."""
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.devices import build_strategy

    assert load_train_config().trainer.strategy == "auto"
    ds = dict(load_train_config().deepspeed)
    assert isinstance(build_strategy("auto", "gpu", 1, 1, ds), DeepSpeedStrategy)
    assert build_strategy("auto", "cpu", 1, 1, {}) == "auto"
    multi = build_strategy("auto", "cpu", 2, 1, {})
    assert isinstance(multi, DDPStrategy) and multi._process_group_backend == "gloo"
    with pytest.raises(InputError, match="needs CUDA GPUs"):
        build_strategy("deepspeed", "cpu", 1, 1, {})
    user = tmp_path / "mine.yaml"
    user.write_text("trainer:\n  strategy: deepspeed\n")
    proc = run_cli("train", "--config", str(user), "--train-manifest", str(train_set),
                   "--val-manifest", str(train_set), "--out", str(tmp_path / "run"))  # fmt: skip
    assert proc.returncode == 2
    assert "needs CUDA GPUs" in one_error_line(proc, "error")


@pytest.mark.slow
def test_bad_inputs_are_one_line(train_set: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio_filepath": "gone.wav", "duration": 1, "text": "x"}\n')
    not_nemo = tmp_path / "model.txt"
    not_nemo.write_text("x")
    base = ["train", "--train-manifest", str(train_set), "--val-manifest", str(train_set),
            "--out", str(tmp_path / "run")]  # fmt: skip
    cases = [
        (["train", "--data", str(tmp_path / "nope")], "is not a folder"),
        (["train", "--train-manifest", str(tmp_path / "x.jsonl"), "--val-manifest", str(train_set)],
         "x.jsonl: train manifest not found"),
        (["train", "--train-manifest", str(bad), "--val-manifest", str(train_set)],
         "run `medasr manifest validate"),
        ([*base, "--init", str(not_nemo)], "is not a .nemo file"),
        ([*base, "--gpus", "8"], "no CUDA GPU is visible"),
        ([*base, "--config", "tiny-cpu", "--strategy", "deepspeed"], "needs CUDA GPUs"),
        ([*base, "--init", "nvidia/parakeet-tdt-0.6b-v2"], "could not be downloaded"),
    ]  # fmt: skip
    for args, expected in cases:
        proc = run_cli(
            *args, env=cli_env(HF_HUB_OFFLINE="1"), timeout=900
        )  # no 2.4 GB download where online
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        lines = error_lines(proc, "error:")
        assert lines and expected in lines[-1], (args, proc.stderr[-2000:])
    assert not (tmp_path / "run" / "model.nemo").exists()


def test_replay_is_a_fresh_draw_every_epoch(train_set: Path, tmp_path: Path) -> None:
    from medasr_cli.train.data import ReplayMix

    general = tmp_path / "general.jsonl"
    rows = [json.loads(x) for x in train_set.read_text().splitlines()]
    general.write_text("".join(json.dumps(r | {"id": f"g{i}"}) + "\n" for i, r in enumerate(rows)))
    mix = ReplayMix(train_set, general, 0.3, tmp_path / "run", seed=1)
    drawn: list[set[str]] = []
    for epoch in range(4):
        path = mix.manifest(epoch)
        assert path == tmp_path / "run" / "replay" / f"epoch_{epoch:03d}.jsonl"
        epoch_rows = [json.loads(x) for x in path.read_text().splitlines()]
        replayed = [r["id"] for r in epoch_rows if r["replay"]]
        assert len(epoch_rows) - len(replayed) == 10  # every domain utterance, every epoch
        assert len(replayed) == round(0.3 / 0.7 * 10) == len(set(replayed))  # no repeats
        drawn.append(set(replayed))
    assert len(set.union(*drawn)) > len(drawn[0])  # not one fixed sample reused
    assert mix.manifest(2).read_text() == mix.manifest(2).read_text()  # seeded
    with pytest.raises(InputError, match="replay-ratio"):
        ReplayMix(train_set, general, 1.0, tmp_path, seed=1)


# ---- slow: real training ---------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_model_memorises_and_restores_in_stock_nemo(
    trained_run: Path, train_set: Path
) -> None:
    nemo = trained_run / "model.nemo"
    assert nemo.is_file()
    # Stock NeMo, without medasr imported: the config still says TDT and NeMo's own loss loads.
    code = (
        "import sys; from nemo.collections.asr.models import ASRModel;"
        f"m = ASRModel.restore_from({str(nemo)!r}, map_location='cpu');"
        "assert 'medasr_cli' not in sys.modules;"
        "print(m.cfg.loss.loss_name, type(m.loss._loss).__name__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-2:] == ["tdt", "TDTLossNumba"]
    report = trained_run / "eval.json"
    proc = run_cli(
        "eval",
        "--manifest",
        str(train_set),
        "--model",
        str(nemo),
        "--report",
        str(report),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["overall"]["wer"] < 0.10
    ckpts = sorted((trained_run / "medasr" / "run" / "checkpoints").glob("*.ckpt"))
    best_k = [c for c in ckpts if not c.name.endswith("-last.ckpt")]
    assert len(best_k) == 2  # save_top_k of the preset: distinct files, not one overwritten
    assert {p.name for p in (trained_run / "tokenizer").iterdir()} >= {
        "tokenizer.model",
        "vocab.txt",
    }


@pytest.mark.slow
def test_mlflow_run_has_metrics_params_and_artifacts(trained_run: Path) -> None:
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{trained_run / 'mlflow.db'}")
    (exp,) = [e for e in client.search_experiments() if e.name == "medasr"]
    (run,) = client.search_runs([exp.experiment_id])
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) > 5
    assert len(client.get_metric_history(run.info.run_id, "learning_rate")) > 5
    assert "val_wer" in run.data.metrics and "best_val_wer" in run.data.metrics
    assert any(k.startswith("medasr/trainer") for k in run.data.params)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.nemo", "config.yaml"} <= artifacts
    assert list((trained_run / "medasr" / "run").glob("events.out.tfevents*"))  # TensorBoard


@pytest.mark.slow
def test_finetune_with_init_keeps_tokenizer_and_tdt(trained_run: Path, tmp_path: Path) -> None:
    import mlflow
    from nemo.collections.asr.models import ASRModel

    manifest = make_dataset(tmp_path / "ft", FINETUNE_SENTENCES)
    out = tmp_path / "ft_run"
    proc = run_cli("train", "--config", "tiny-cpu", "--init", str(trained_run / "model.nemo"),
                   "--train-manifest", str(manifest), "--val-manifest", str(manifest),
                   "--out", str(out), "--max-steps", "30", "--lr", "1e-3",
                   "--set", "trainer.check_val_every_n_epoch=5", timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("medasr").experiment_id])
    losses = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train_loss"),
                                      key=lambda m: m.step)]  # fmt: skip
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    before = ASRModel.restore_from(str(trained_run / "model.nemo"), map_location="cpu")
    after = ASRModel.restore_from(str(out / "model.nemo"), map_location="cpu")
    assert after.tokenizer.vocab == before.tokenizer.vocab
    assert after.cfg.loss.loss_name == "tdt" and type(after.loss._loss).__name__ == "TDTLossNumba"
    assert not (out / "tokenizer").exists()  # no new tokenizer was trained


@pytest.mark.slow
def test_change_tokenizer_keeps_tdt_loss(tiny_model: Path, tmp_path: Path) -> None:
    from nemo.collections.asr.models import ASRModel

    from medasr_cli.train.arch import train_tokenizer
    from medasr_cli.train.model_init import change_tokenizer
    from medasr_cli.train.tdt_loss import VectorizedTDTLoss, swap_in_vectorized_tdt

    model = ASRModel.restore_from(str(tiny_model), map_location="cpu")
    tok = train_tokenizer(FINETUNE_SENTENCES * 4, tmp_path / "tok", 48)
    change_tokenizer(model, tok)
    inner = model.loss._loss
    assert type(inner).__name__ == "TDTLossNumba" and list(inner.durations) == [0, 1, 2, 3, 4]
    assert model.cfg.loss.loss_name == "tdt"
    # the saved config keeps the TDT settings too (NeMo pops them from the dict it is given)
    assert list(model.cfg.loss.tdt_kwargs.durations) == [0, 1, 2, 3, 4]
    assert model.cfg.loss.tdt_kwargs.sigma == 0.02 and model.cfg.loss.tdt_kwargs.omega == 0.1
    saved = tmp_path / "retok.nemo"
    model.save_to(str(saved))
    again = ASRModel.restore_from(str(saved), map_location="cpu")
    assert list(again.loss._loss.durations) == [0, 1, 2, 3, 4]
    assert swap_in_vectorized_tdt(model) and isinstance(model.loss._loss, VectorizedTDTLoss)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "deepspeed"])
def test_two_node_training_over_gloo(train_set: Path, tmp_path: Path, strategy: str) -> None:
    """Two torchrun "nodes" of one process each. ``deepspeed``: Lightning's DeepSpeedStrategy
    (ZeRO-2, optimizer offload, bf16 autocast) through tests/deepspeed_cpu_harness.py, so the
    optimizer state is sharded over the two ranks and consolidated into model.nemo."""
    if strategy == "deepspeed":
        _needs_deepspeed_on_cpu()
        entry = [str(Path(__file__).with_name("deepspeed_cpu_harness.py"))]
        extra = ["--precision", "bf16-mixed", "--set", "deepspeed.offload_optimizer=true"]
    else:
        entry, extra = ["-m", "medasr_cli"], []
    port = str(free_port())
    out = tmp_path / strategy
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node",
               "1", "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", port,
               *entry, "train", "--config", "tiny-cpu", "--nodes", "2", *extra,
               "--train-manifest", str(train_set), "--val-manifest", str(train_set),
               "--out", str(out), "--max-steps", "6", "--set", "trainer.check_val_every_n_epoch=3"]  # fmt: skip
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert "process group up: rank 0/2" in outputs[0][1]
    assert "process group up: rank 1/2" in outputs[1][1]
    assert (out / "model.nemo").is_file()
    con = sqlite3.connect(out / "mlflow.db")
    assert con.execute("select count(*) from runs").fetchone()[0] == 1  # only rank 0 logs
    assert "medasr train" in outputs[0][0] and "medasr train" not in outputs[1][0]
    # only rank 0 reads the checkpoints to pick the best one (and writes model.nemo)
    assert "best checkpoint:" in outputs[0][1] and "best checkpoint:" not in outputs[1][1]
    if strategy == "deepspeed":
        shards = {p.name for p in out.rglob("zero_pp_rank_*_optim_states.pt")}
        assert shards == {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)}
        assert "world_size: 2" in outputs[0][0] + outputs[0][1]  # both shards consolidated


@pytest.mark.slow
def test_lightning_launches_the_other_local_processes(train_set: Path, tmp_path: Path) -> None:
    """``--gpus 2`` on one node without torchrun: Lightning itself starts local rank 1 (with
    LOCAL_RANK/NODE_RANK/WORLD_SIZE but no RANK). Here two CPU processes over gloo."""
    out = tmp_path / "local2"
    proc = run_cli("train", "--config", "tiny-cpu", "--strategy", "ddp",
                   "--set", "trainer.devices=2", "--train-manifest", str(train_set),
                   "--val-manifest", str(train_set), "--out", str(out), "--max-steps", "4",
                   "--set", "trainer.check_val_every_n_epoch=2", timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "train.log").read_text()  # Lightning's INFO lines: the run's log, not the terminal
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    assert "loss=" in proc.stdout and "utt/s=" in proc.stdout  # the progress bar's metrics
    assert (out / "model.nemo").is_file()
    con = sqlite3.connect(out / "mlflow.db")
    assert con.execute("select count(*) from runs").fetchone()[0] == 1  # only rank 0 logs
    assert proc.stdout.count("medasr train") == 1  # one summary table: rank 0's


@pytest.mark.slow
def test_replay_training_redraws_each_epoch_and_evaluates_both_sets(
    train_set: Path, tmp_path: Path
) -> None:
    general = make_dataset(tmp_path / "general", FINETUNE_SENTENCES)
    out = tmp_path / "replay_run"
    proc = run_cli("train", "--config", "tiny-cpu", "--train-manifest", str(train_set),
                   "--val-manifest", f"medical={train_set}", "--val-manifest", f"general={general}",
                   "--select-on", "medical:3,general:1",
                   "--out", str(out), "--max-steps", "9",
                   "--replay", str(general), "--replay-ratio", "0.3",
                   "--test-manifest", str(train_set), "--test-manifest", str(general),
                   "--set", "trainer.check_val_every_n_epoch=2", timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    epochs = sorted((out / "replay").glob("epoch_*.jsonl"))
    assert len(epochs) >= 3  # 14 rows, batch 5: 3 steps an epoch
    draws = {frozenset(json.loads(x)["audio_filepath"] for x in p.read_text().splitlines()
                       if json.loads(x)["replay"]) for p in epochs}  # fmt: skip
    assert len(draws) > 1
    # both manifests are called all.jsonl: the reports are named after their folders
    for manifest, n in ((train_set, 10), (general, 5)):
        report = json.loads((out / f"eval_{manifest.parent.name}_all.json").read_text())
        assert report["overall"]["utterances"] == n
    # two validation sets: each one's WER in MLflow, the checkpoint picked on the stated mix
    con = sqlite3.connect(out / "mlflow.db")
    keys = {k for (k,) in con.execute("select distinct key from metrics")}
    assert {"medical_val_wer", "general_val_wer", "val_wer_select"} <= keys
    last = {k: v for k, v in con.execute("select key, value from latest_metrics")}
    mix = 0.75 * last["medical_val_wer"] + 0.25 * last["general_val_wer"]
    assert last["val_wer_select"] == pytest.approx(mix)
    assert all("val_wer_select=" in p.name for p in out.rglob("*.ckpt") if "last" not in p.name)
    assert "0.75×medical + 0.25×general" in " ".join(proc.stdout.split())


@pytest.mark.slow
def test_the_shipped_config_trains_as_shipped(
    train_set: Path, trained_run: Path, tmp_path: Path
) -> None:
    """parakeet_tdt.yaml exactly as shipped (speed-perturbation augmentor, SpecAugment, the
    cosine schedule with its warm-up ratio, replay, two validation sets, MLflow) with only the
    model (a tiny .nemo for --init) and the steps changed. The shipped augmentor resamples with
    resampy's kaiser_fast: without resampy installed (pyproject's train extra and the training
    image's lock) the first perturbed utterance raised ModuleNotFoundError."""
    general = make_dataset(tmp_path / "general", TRAIN_SENTENCES[5:])
    out = tmp_path / "shipped"
    proc = run_cli("train", "--init", str(trained_run / "model.nemo"),
                   "--train-manifest", str(train_set), "--replay", str(general),
                   "--val-manifest", f"medical={train_set}", "--val-manifest", f"general={general}",
                   "--test-manifest", str(general), "--max-steps", "3", "--out", str(out),
                   timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = (out / "config.yaml").read_text()
    assert "resample_type: kaiser_fast" in cfg and "freq_masks: 2" in cfg
    plan = json.loads((out / "plan.json").read_text())
    assert plan["total_steps"] == 3 and plan["replay_utterances"] > 0
    assert (out / "model.nemo").is_file() and (out / "eval_all.json").is_file()
    assert "Skipping augmentation" not in (out / "train.log").read_text()  # it really perturbed
    lock = (Path(__file__).parents[1] / "deploy" / "docker" / "train.txt").read_text()
    assert "\nresampy==" in lock  # the training image installs what the augmentor needs


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(train_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "resume"
    common = ["train", "--config", "tiny-cpu", "--train-manifest", str(train_set),
              "--val-manifest", str(train_set), "--out", str(out),
              "--set", "trainer.check_val_every_n_epoch=1"]  # fmt: skip
    first = run_cli(*common, "--max-steps", "4", timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpts = out / "medasr" / "run" / "checkpoints"
    assert any("step=4" in p.name for p in ckpts.glob("*last.ckpt"))
    second = run_cli(*common, "--max-steps", "8", "--resume", timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming training from checkpoint" in second.stderr + second.stdout
    assert any("step=8" in p.name for p in ckpts.glob("*last.ckpt"))


def test_finetune_config_reaches_a_pretrained_model(tiny_model: Path) -> None:
    """With --init, `--set model.spec_augment...` and TDT sigma/omega apply; durations and the
    preprocessor stay the pretrained model's."""
    from medasr_cli.train.config import load_train_config
    from medasr_cli.train.model_init import apply_finetune_config, load_pretrained

    model = load_pretrained(str(tiny_model))
    assert model.cfg.loss.tdt_kwargs.sigma == 0.02
    cfg = load_train_config(None, {"init": str(tiny_model)},
                            ["model.spec_augment.time_masks=3", "model.loss.tdt_kwargs.sigma=0.05"])  # fmt: skip
    changes = apply_finetune_config(model, cfg)
    assert len(changes) == 2
    assert (
        model.spec_augmentation.spec_augment.time_masks == 3
        and model.cfg.spec_augment.time_masks == 3
    )
    assert model.loss._loss.sigma == 0.05 and model.cfg.loss.tdt_kwargs.sigma == 0.05
    assert model.cfg.preprocessor.features == 80  # the config's 128 is not applied to the weights
    assert apply_finetune_config(model, cfg) == []  # nothing left to change
    bad = load_train_config(
        None, {"init": str(tiny_model)}, ["model.loss.tdt_kwargs.durations=[0,1,2]"]
    )
    with pytest.raises(InputError, match="durations"):
        apply_finetune_config(model, bad)


def test_freeze_and_architectures(tiny_model: Path) -> None:
    from nemo.collections.asr.models import ASRModel

    from medasr_cli.train.arch import build_model_config
    from medasr_cli.train.model_init import freeze

    xl = build_model_config("parakeet-xl", Path("tok"))
    assert (xl["encoder"]["n_layers"], xl["encoder"]["d_model"]) == (24, 1024)
    assert (
        xl["encoder"]["subsampling"] == "dw_striding" and xl["encoder"]["subsampling_factor"] == 8
    )
    assert xl["preprocessor"]["features"] == 128 and xl["loss"]["loss_name"] == "tdt"
    # Parakeet's joint dropout; the closed-loop base model trains without it (a quarter of
    # its CPU step went to dropping B x T x U x H joint activations)
    assert xl["joint"]["jointnet"]["dropout"] == 0.2
    assert build_model_config("base-cpu", Path("tok"))["joint"]["jointnet"]["dropout"] == 0.0
    with pytest.raises(InputError, match="unknown architecture"):
        build_model_config("huge", Path("tok"))
    model = ASRModel.restore_from(str(tiny_model), map_location="cpu")
    assert 0.2e6 <= sum(p.numel() for p in model.parameters()) <= 2e6  # the "tiny" size
    freeze(model, 1, True)
    assert not any(p.requires_grad for p in model.encoder.pre_encode.parameters())
    assert not any(p.requires_grad for p in model.encoder.layers[0].parameters())
    assert all(p.requires_grad for p in model.encoder.layers[1].parameters())
    assert not any(p.requires_grad for p in model.decoder.parameters())
    assert all(p.requires_grad for p in model.joint.parameters())
    with pytest.raises(InputError, match="the encoder has 2"):
        freeze(model, 5, False)


def test_a_tokenizer_from_scratch_can_write_every_letter_and_digit(tmp_path: Path) -> None:
    """A base model built from scratch is later fine-tuned on new words: with room in its
    vocabulary its tokenizer covers A-Z, a-z and 0-9 even when its first corpus did not."""
    import sentencepiece as spm

    from medasr_cli.train.arch import BASIC_CHARACTERS, tokenizer_corpus, train_tokenizer

    texts = ["keep nil by mouth", "chest clear", "review in clinic"] * 20
    assert tokenizer_corpus(texts, 64) == texts  # the tiny model's vocabulary: unchanged
    tok = train_tokenizer(tokenizer_corpus(texts, 128), tmp_path / "tok", 128)
    sp = spm.SentencePieceProcessor(model_file=str(tok / "tokenizer.model"))
    for ch in BASIC_CHARACTERS:
        assert sp.unk_id() not in sp.encode(f"Q{ch}x"), ch
