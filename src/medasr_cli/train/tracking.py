"""Experiment tracking: NeMo's exp_manager (TensorBoard, checkpoints, resume) and MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def attach_tracking(
    trainer: Any,
    cfg: Any,
    out_dir: Path,
    resume: bool,
    mlflow_uri: str | None,
    monitor: str = "val_wer",
) -> Any:
    """Set up NeMo's exp_manager on ``trainer`` and add an MLflow logger; returns that logger.

    Checkpoints are ranked by ``monitor`` (lower is better) and named after it.

    NeMo 3.0's exp_manager passes ``run_name`` twice to ``MLFlowLogger`` (its
    MLFlowParams default plus the version), so it cannot create that logger;
    we create the same Lightning ``MLFlowLogger`` and add it to the trainer.
    Returns ``None`` when the config turns MLflow off.
    """
    from lightning.pytorch.loggers import MLFlowLogger
    from nemo.utils.exp_manager import exp_manager
    from omegaconf import OmegaConf

    em_cfg: Any = OmegaConf.create(OmegaConf.to_container(cfg.exp_manager, resolve=True))
    em_cfg.exp_dir = str(out_dir)
    em_cfg.version = "run"
    em_cfg.use_datetime_version = False
    em_cfg.resume_if_exists = resume
    em_cfg.resume_ignore_no_checkpoint = True
    em_cfg.checkpoint_callback_params.save_nemo_on_train_end = False
    em_cfg.checkpoint_callback_params.monitor = monitor
    em_cfg.checkpoint_callback_params.filename = f"{{epoch}}-{{step}}-{{{monitor}:.4f}}"
    want_mlflow = bool(em_cfg.pop("create_mlflow_logger", False))
    mlflow_kwargs = dict(em_cfg.pop("mlflow_logger_kwargs", {}) or {})
    exp_manager(trainer, em_cfg)
    if not want_mlflow:
        return None
    # Default: a local SQLite store (MLflow's file store is deprecated) in the run folder.
    local = f"sqlite:///{(out_dir / 'mlflow.db').resolve()}"
    uri = mlflow_uri or mlflow_kwargs.get("tracking_uri") or local
    mlflow_logger = MLFlowLogger(
        artifact_location=(out_dir / "mlartifacts").resolve().as_uri() if uri == local else None,
        experiment_name=mlflow_kwargs.get("experiment_name") or "medasr",
        run_name=mlflow_kwargs.get("run_name") or out_dir.name,
        tracking_uri=uri,
        tags=mlflow_kwargs.get("tags"),
        log_model=False,
    )
    trainer.loggers = [*trainer.loggers, mlflow_logger]
    return mlflow_logger


def log_config(mlflow_logger: Any, cfg: Any, plan: Any = None) -> None:
    """The whole merged config, and the run's plan (steps, warm-up, world size), as parameters."""
    from dataclasses import asdict

    from omegaconf import OmegaConf

    if mlflow_logger is None:
        return
    params: dict[str, Any] = {"medasr": OmegaConf.to_container(cfg, resolve=True)}
    if plan is not None:
        fields = asdict(plan)
        fields.pop("warnings")
        params["plan"] = fields | {"world_size": plan.world_size, "global_batch": plan.global_batch}
    mlflow_logger.log_hyperparams(params)


def log_outcome(
    mlflow_logger: Any,
    *,
    artifacts: list[Path],
    metrics: dict[str, float],
) -> None:
    """Files (``model.nemo``, ``config.yaml``, eval reports) and final metrics of the run."""
    if mlflow_logger is None:
        return
    client, run_id = mlflow_logger.experiment, mlflow_logger.run_id
    for path in artifacts:
        client.log_artifact(run_id, str(path))
    for name, value in metrics.items():
        client.log_metric(run_id, name, value)
