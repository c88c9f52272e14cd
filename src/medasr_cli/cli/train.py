"""``medasr train``: fine-tune Parakeet TDT (or train a FastConformer-TDT from scratch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from medasr_cli.cli.common import console, err_console, state
from medasr_cli.core.errors import InputError
from medasr_cli.core.logging import library_logs_to
from medasr_cli.train.arch import architectures

if TYPE_CHECKING:
    from medasr_cli.train.plan import TrainPlan

HELP = (
    "Fine-tune Parakeet TDT with NeMo + Lightning (DeepSpeed stage 2 on GPUs), tracked in MLflow."
)


def _manifests(
    data: Path | None, train: Path | None, val: list[str] | None, test: list[Path]
) -> tuple[Path, dict[str, Path], list[Path]]:
    """The train manifest, the named validation sets and the test manifests."""
    from medasr_cli.train.validation import parse_validation_sets

    if data is not None:
        if not data.is_dir():
            raise InputError(f"--data: {data} is not a folder")
        train = train or data / "train.jsonl"
        val = val or [str(data / "val.jsonl")]
        if not test and (data / "test.jsonl").is_file():
            test = [data / "test.jsonl"]
    if train is None or not val:
        raise InputError("give --data DIR, or both --train-manifest and --val-manifest")
    val_sets = parse_validation_sets(val)
    roles = [(train, "train"), *((p, "validation") for p in val_sets.values())]
    for path, role in (*roles, *((t, "test") for t in test)):
        if not path.is_file():
            raise InputError(
                f"{path}: {role} manifest not found (build one with `medasr manifest build`, "
                "check it with `medasr manifest validate`)"
            )
    return train, val_sets, test


def train_command(
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Folder with train.jsonl / val.jsonl (/ test.jsonl) from `medasr manifest build --split`.",
    ),
    train_manifest: Path | None = typer.Option(
        None, "--train-manifest", help="Training manifest (NeMo JSONL)."
    ),
    val_manifest: list[str] = typer.Option(
        [],
        "--val-manifest",
        help="Validation manifest, or NAME=MANIFEST (repeatable: e.g. medical=val.jsonl "
        "general=general_val.jsonl); each set's WER is logged, --select-on picks the checkpoint.",
    ),
    select_on: str | None = typer.Option(
        None,
        "--select-on",
        help="With several validation sets: pick the checkpoint on NAME's WER, or on a weighted "
        "mean NAME:W,NAME:W (default: the plain mean of all sets).",
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
        "tiny", "--arch", help=f"Architecture for --from-scratch: {' | '.join(architectures())}."
    ),
    tokenizer: Path | None = typer.Option(
        None,
        "--tokenizer",
        help="Replace the pretrained tokenizer with this SentencePiece dir (the TDT loss is rebuilt).",
    ),
    nodes: int | None = typer.Option(
        None,
        "--nodes",
        min=1,
        help="Number of nodes (trainer.num_nodes); more than one needs a launcher on each "
        "(torchrun, srun or the Kubernetes PyTorchJob; docs/train.md, 'Several nodes').",
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
        help="auto (default): DeepSpeed on GPUs, DDP over gloo on CPU | deepspeed (GPUs only) | ddp.",
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
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Check the manifests and print the run's plan (world size, global batch, steps, "
        "warm-up, learning rates, hours per epoch, what the filters drop), then exit. Works "
        "for a cluster from a laptop: --nodes 8 --gpus 8 --dry-run.",
    ),
    allow_dropped: bool = typer.Option(
        False,
        "--allow-dropped",
        help="Start even when the duration filters drop more than max_dropped_share (5%) of "
        "the training utterances.",
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
        "max_dropped_share": 1.0 if allow_dropped else None, "validation.select": select_on,
    }  # fmt: skip
    if init and from_scratch:
        raise InputError("give either --init or --from-scratch, not both")
    cfg = load_train_config(config, flags, set_)
    if init:
        cfg.arch = None  # an explicit --init wins over a preset's from-scratch architecture
    if print_config:
        # soft_wrap: long paths stay on one line at any terminal width (recipes read it as YAML)
        console.print(to_yaml(cfg), highlight=False, markup=False, soft_wrap=True)
        return
    train, val, tests = _manifests(data, train_manifest, val_manifest, test_manifest)
    from medasr_cli.train.plan import check_dropped
    from medasr_cli.train.run import plan_run, run_training

    if dry_run:
        plan = plan_run(cfg, train, val_sets=val, nodes=nodes, devices_per_node=gpus,
                        test_manifests=tests)  # fmt: skip
        _print_plan(plan)
        check_dropped(plan, float(cfg.max_dropped_share))  # as the real run would refuse
        return
    with library_logs_to(out / "train.log", verbose=state.verbose):
        result = run_training(
            cfg, train_manifest=train, val_manifest=val, out_dir=out, test_manifests=tests,
            resume=resume, mlflow_uri=mlflow_uri, tokenizer=tokenizer, on_plan=_print_plan,
        )  # fmt: skip
    if result.nemo_path is None:
        return  # not rank 0
    table = Table(title="medasr train")
    table.add_column("")
    table.add_column("")
    table.add_row("model", str(result.nemo_path))
    table.add_row("best checkpoint", str(result.best_checkpoint))
    best = result.best_val_wer
    table.add_row("best val WER", "—" if best is None else f"{100 * best:.1f}%")
    table.add_row("MLflow run", str(result.mlflow_run_id))
    if result.utts_per_sec:
        table.add_row(
            "throughput",
            f"{result.utts_per_sec:.1f} utt/s, {result.audio_sec_per_sec:.1f} audio-s/s",
        )
    table.add_row("log", str(out / "train.log"))
    console.print(table)
    for test in result.tests:
        console.print(f"{test.manifest}: WER {100 * test.wer:.1f}% -> {test.report}")


def _print_plan(plan: TrainPlan) -> None:
    """The plan as a table, then its warnings in bold (the CLI owns the terminal)."""
    table = Table(title="training plan")
    table.add_column("")
    table.add_column("")
    for label, value in plan.rows():
        table.add_row(label, value)
    console.print(table)
    for warning in plan.warnings:
        err_console.print(f"[bold yellow]warning:[/] [bold]{escape(warning)}[/]", soft_wrap=True)
