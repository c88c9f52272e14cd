"""``medasr train``: fine-tune Parakeet TDT (or train a FastConformer-TDT from scratch)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from medasr_cli.cli.common import console, err_console
from medasr_cli.core.errors import InputError

HELP = (
    "Fine-tune Parakeet TDT with NeMo + Lightning (DeepSpeed stage 2 on GPUs), tracked in MLflow."
)


def _manifests(
    data: Path | None, train: Path | None, val: Path | None, test: list[Path]
) -> tuple[Path, Path, list[Path]]:
    if data is not None:
        if not data.is_dir():
            raise InputError(f"--data: {data} is not a folder")
        train = train or data / "train.jsonl"
        val = val or data / "val.jsonl"
        if not test and (data / "test.jsonl").is_file():
            test = [data / "test.jsonl"]
    if train is None or val is None:
        raise InputError("give --data DIR, or both --train-manifest and --val-manifest")
    for path, role in ((train, "train"), (val, "validation"), *((t, "test") for t in test)):
        if not path.is_file():
            raise InputError(
                f"{path}: {role} manifest not found (build one with `medasr manifest build`, "
                "check it with `medasr manifest validate`)"
            )
    return train, val, test


def train_command(
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Folder with train.jsonl / val.jsonl (/ test.jsonl) from `medasr manifest build --split`.",
    ),
    train_manifest: Path | None = typer.Option(
        None, "--train-manifest", help="Training manifest (NeMo JSONL)."
    ),
    val_manifest: Path | None = typer.Option(
        None, "--val-manifest", help="Validation manifest; checkpoints are ranked by its WER."
    ),
    test_manifest: list[Path] = typer.Option(
        [], "--test-manifest", help="Evaluate the final model on this manifest (repeatable)."
    ),
    out: Path = typer.Option(
        Path("runs/medasr"),
        "--out",
        "-o",
        help="Run folder: model.nemo, checkpoints, config.yaml, mlflow.db + mlartifacts/, TensorBoard logs.",
    ),
    config: str | None = typer.Option(
        None,
        "--config",
        help="A YAML file, or a shipped preset (tiny-cpu), merged over the default config.",
    ),
    init: str | None = typer.Option(
        None,
        "--init",
        help="Start from a hub model (nvidia/parakeet-tdt-0.6b-v2, default) or a .nemo file.",
    ),
    from_scratch: bool = typer.Option(
        False,
        "--from-scratch",
        help="Build a new FastConformer-TDT (see --arch) with a BPE tokenizer trained on the training text.",
    ),
    arch: str = typer.Option(
        "tiny", "--arch", help="Architecture for --from-scratch: tiny | small | parakeet-xl."
    ),
    tokenizer: Path | None = typer.Option(
        None,
        "--tokenizer",
        help="Replace the pretrained tokenizer with this SentencePiece dir (the TDT loss is rebuilt).",
    ),
    nodes: int | None = typer.Option(
        None, "--nodes", min=1, help="Number of nodes (trainer.num_nodes)."
    ),
    gpus: int | None = typer.Option(
        None, "--gpus", min=1, help="GPUs per node (trainer.devices); default: all visible, or CPU."
    ),
    epochs: int | None = typer.Option(None, "--epochs", min=1, help="trainer.max_epochs."),
    max_steps: int | None = typer.Option(
        None, "--max-steps", help="trainer.max_steps (-1: by epochs)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Per-device batch size (train and validation)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (model.optim.lr)."),
    precision: str | None = typer.Option(
        None,
        "--precision",
        help="bf16-mixed | 16-mixed | 32 (CPU always 32). With DeepSpeed, bf16-mixed runs as "
        "DeepSpeed torch autocast on fp32 weights; 16-mixed is refused.",
    ),
    strategy: str | None = typer.Option(
        None,
        "--strategy",
        help="deepspeed (default on GPU) | ddp | auto. CPU falls back to DDP over gloo.",
    ),
    freeze_encoder_layers: int | None = typer.Option(
        None,
        "--freeze-encoder-layers",
        min=0,
        help="Freeze the subsampling and the first N encoder layers.",
    ),
    freeze_decoder: bool = typer.Option(
        False, "--freeze-decoder", help="Freeze the prediction network."
    ),
    replay: Path | None = typer.Option(
        None, "--replay", help="General-domain manifest mixed into training (forgetting guard)."
    ),
    replay_ratio: float | None = typer.Option(
        None, "--replay-ratio", help="Share of replay utterances in training (default 0.3)."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from the last checkpoint in --out after a crash or preemption.",
    ),
    mlflow_uri: str | None = typer.Option(
        None,
        "--mlflow-uri",
        help="MLflow tracking URI (default: a local SQLite store, --out/mlflow.db).",
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override any config key: --set trainer.val_check_interval=0.5 (repeatable).",
    ),
    print_config: bool = typer.Option(
        False, "--print-config", help="Print the merged config and exit."
    ),
) -> None:
    """Train and write OUT/model.nemo from the best checkpoint by val_wer."""
    from medasr_cli.train.config import load_train_config, to_yaml

    flags = {
        "init": init, "arch": arch if from_scratch else None,
        "trainer.num_nodes": nodes, "trainer.devices": gpus,
        "trainer.accelerator": "gpu" if gpus else None, "trainer.max_epochs": epochs,
        "trainer.max_steps": max_steps, "trainer.precision": precision,
        "trainer.strategy": strategy, "model.train_ds.batch_size": batch_size,
        "model.validation_ds.batch_size": batch_size, "model.optim.lr": lr,
        "freeze_encoder_layers": freeze_encoder_layers,
        "freeze_decoder": True if freeze_decoder else None,
        "replay.manifest": str(replay) if replay else None, "replay.ratio": replay_ratio,
    }  # fmt: skip
    if init and from_scratch:
        raise InputError("give either --init or --from-scratch, not both")
    cfg = load_train_config(config, flags, set_)
    if init:
        cfg.arch = None  # an explicit --init wins over a preset's from-scratch architecture
    if print_config:
        console.print(to_yaml(cfg), highlight=False, markup=False)
        return
    train, val, tests = _manifests(data, train_manifest, val_manifest, test_manifest)
    from medasr_cli.train.run import check_manifest, run_training

    for test in tests:  # before training, not after hours of it
        check_manifest(test, "test")
    if cfg.replay.manifest and not tests:
        err_console.print(
            "[yellow]warning: --replay without --test-manifest: pass a domain and a "
            "general-domain test set to see whether general WER held up[/]"
        )

    result = run_training(
        cfg, train_manifest=train, val_manifest=val, out_dir=out, resume=resume,
        mlflow_uri=mlflow_uri, tokenizer=tokenizer,
        explicit_strategy=strategy == "deepspeed" or "trainer.strategy=deepspeed" in set_,
    )  # fmt: skip
    if result.nemo_path is None:
        return  # not rank 0
    t = Table(title="medasr train")
    t.add_column("")
    t.add_column("")
    t.add_row("model", str(result.nemo_path))
    t.add_row("best checkpoint", str(result.best_checkpoint))
    t.add_row(
        "best val WER", "—" if result.best_val_wer is None else f"{100 * result.best_val_wer:.1f}%"
    )
    t.add_row("MLflow run", str(result.mlflow_run_id))
    if result.utts_per_sec:
        t.add_row(
            "throughput",
            f"{result.utts_per_sec:.1f} utt/s, {result.audio_sec_per_sec:.1f} audio-s/s",
        )
    console.print(t)
    for test, name in zip(tests, _report_names(tests), strict=True):
        from medasr_cli.evaluate.run import run_eval, write_report

        report = run_eval(test, model=str(result.nemo_path), device="auto")
        write_report(report, out / f"eval_{name}.json")
        console.print(f"{test}: WER {100 * report.overall.wer:.1f}% -> {out / f'eval_{name}.json'}")


def _report_names(tests: list[Path]) -> list[str]:
    """``eval_NAME.json`` names: the manifest's stem, with its folder where stems repeat."""
    stems = [t.stem for t in tests]
    names = [f"{t.parent.name}_{t.stem}" if stems.count(t.stem) > 1 else t.stem for t in tests]
    return [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]
