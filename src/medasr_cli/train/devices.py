"""Accelerator, strategy and precision for the Lightning Trainer.

The default strategy, ``auto``, is DeepSpeed ZeRO stage 2 on GPUs with every
option of the config's ``deepspeed`` section passed to Lightning's
``DeepSpeedStrategy``. Lightning refuses DeepSpeed without CUDA, so on CPU
``auto`` is DDP over gloo, and an explicit ``deepspeed`` fails clearly.
"""

from __future__ import annotations

import logging
from typing import Any

from medasr_cli.core.errors import InputError
from medasr_cli.train.dist import dist_env

log = logging.getLogger(__name__)


def resolve_accelerator(requested: str) -> str:
    """``auto`` -> gpu or cpu; ``gpu`` without CUDA is a clear error."""
    import torch

    has_cuda = torch.cuda.is_available()
    if requested in ("gpu", "cuda"):
        if not has_cuda:
            raise InputError(
                "--gpus: no CUDA GPU is visible on this machine (drop --gpus to train on CPU)"
            )
        return "gpu"
    if requested == "cpu":
        return "cpu"
    if requested != "auto":
        raise InputError(f"trainer.accelerator: unknown value '{requested}' (auto, gpu or cpu)")
    return "gpu" if has_cuda else "cpu"


def resolve_devices(devices: Any, accelerator: str) -> Any:
    """CPU runs one process per node; on GPU ``-1`` means every visible GPU."""
    if accelerator == "cpu":
        return 1 if devices in (-1, "auto", None) else int(devices)
    return devices


def resolve_precision(precision: Any, accelerator: str, deepspeed: bool = False) -> Any:
    """bf16 needs a GPU that supports it; CPU trains in fp32.

    On a GPU without bf16 (V100, T4) the default ``bf16-mixed`` becomes
    ``16-mixed`` under DDP, and ``32-true`` under DeepSpeed, where fp16 autocast
    has no loss scaling (see :func:`deepspeed_precision`).
    """
    import torch

    if accelerator == "cpu":
        if str(precision) not in ("32", "32-true"):
            log.info("precision %s -> 32 on CPU", precision)
        return "32-true"
    if "bf16" in str(precision) and not torch.cuda.is_bf16_supported():
        fallback = "32-true" if deepspeed else "16-mixed"
        log.warning("this GPU has no bf16: using %s precision", fallback)
        return fallback
    return precision


# Keys of the ``deepspeed`` section that go into the DeepSpeed config itself, not to
# Lightning's DeepSpeedStrategy (which has no argument for them).
CONFIG_ONLY = {"zero_force_ds_cpu_optimizer": False}


def deepspeed_kwargs(ds_cfg: dict[str, Any]) -> dict[str, Any]:
    """The DeepSpeedStrategy keyword arguments from the config's ``deepspeed`` section."""
    kwargs = {k: v for k, v in ds_cfg.items() if k not in CONFIG_ONLY}
    for key in ("allgather_bucket_size", "reduce_bucket_size"):
        if key in kwargs:
            kwargs[key] = int(float(kwargs[key]))
    return kwargs


def deepspeed_strategy(ds_cfg: dict[str, Any]) -> Any:
    """Lightning's DeepSpeedStrategy for the ``deepspeed`` section.

    NeMo builds its own optimizer (torch AdamW). With ``offload_optimizer``,
    DeepSpeed refuses such a client optimizer unless the config says
    ``zero_force_ds_cpu_optimizer: false``; the AdamW step then runs on the
    offloaded fp32 states on the CPU. That is the default here, so the source
    recipe (stage 2 + optimizer offload) trains as written.
    """
    from lightning.pytorch.strategies import DeepSpeedStrategy

    strategy = DeepSpeedStrategy(**deepspeed_kwargs(ds_cfg))
    config = strategy.config
    assert config is not None  # built from the keyword arguments above
    for key, default in CONFIG_ONLY.items():
        config[key] = ds_cfg.get(key, default)
    return strategy


def deepspeed_precision(strategy: Any, precision: Any) -> Any:
    """Mixed precision under DeepSpeed the way NeMo expects it: torch autocast.

    DeepSpeed's own ``bf16`` mode (what Lightning's ``bf16-mixed`` turns on)
    casts the parameters to bfloat16 and runs without autocast, but NeMo's ASR
    modules make float32 tensors on purpose (mel features, relative positional
    encodings) and rely on autocast to mix them with half-precision weights.
    So Lightning gets ``32-true`` (fp32 parameters and master weights) and the
    DeepSpeed config gets ``torch_autocast`` with bfloat16, i.e. the same
    arithmetic as ``bf16-mixed`` under DDP. Other strategies are unchanged.
    """
    from lightning.pytorch.strategies import DeepSpeedStrategy

    if not isinstance(strategy, DeepSpeedStrategy):
        return precision
    if precision in ("16-mixed", "16", 16):
        raise InputError(
            "--precision 16-mixed with DeepSpeed: use bf16-mixed (ZeRO with fp16 autocast has "
            "no loss scaling) or 32"
        )
    if precision in ("bf16-mixed", "bf16"):
        assert strategy.config is not None
        strategy.config["torch_autocast"] = {"enabled": True, "dtype": "bfloat16"}
        log.info("DeepSpeed: bf16 through DeepSpeed's torch_autocast on fp32 parameters")
        return "32-true"
    return precision


def build_strategy(
    name: str, accelerator: str, num_nodes: int, devices: Any, ds_cfg: dict[str, Any]
) -> Any:
    """A Lightning strategy object (or ``"auto"``) for ``name`` on ``accelerator``.

    ``auto`` (the shipped default) is DeepSpeed with the config's ``deepspeed``
    section on GPUs, and on CPU DDP over gloo when there are several processes
    (one process needs no strategy). ``deepspeed`` asks for DeepSpeed and is an
    error without CUDA; ``ddp`` is DDP on either.
    """
    from lightning.pytorch.strategies import DDPStrategy

    if name not in ("auto", "deepspeed", "ddp"):
        raise InputError(f"--strategy: unknown strategy '{name}' (auto, deepspeed or ddp)")
    multi = num_nodes * (devices if isinstance(devices, int) and devices > 0 else 1) > 1
    multi = multi or dist_env().world_size > 1
    if accelerator == "cpu":
        if name == "deepspeed":
            raise InputError(
                "--strategy deepspeed needs CUDA GPUs (Lightning's DeepSpeedStrategy refuses "
                "to run on CPU); use --strategy auto (DDP over gloo on CPU) or ddp"
            )
        return DDPStrategy(process_group_backend="gloo") if multi else "auto"
    if name in ("auto", "deepspeed"):
        return deepspeed_strategy(ds_cfg)
    return DDPStrategy(process_group_backend="nccl", find_unused_parameters=False)
