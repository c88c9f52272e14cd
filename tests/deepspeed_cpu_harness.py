"""Run ``medasr`` with Lightning's DeepSpeedStrategy on CPU, for tests only.

Lightning refuses DeepSpeed without CUDA, but DeepSpeed itself has a CPU
accelerator (gloo). This harness lifts exactly the three CUDA-only assumptions
on the way, and nothing else:

1. ``DeepSpeedStrategy.setup_environment`` rejects a non-CUDA accelerator;
2. ``_validate_device_index_selection`` needs CUDA device indices (a CPU device has none);
3. Lightning passes ``device_rank=root_device.index`` (``None`` on CPU) to
   ``deepspeed.initialize``, which compares it with 0.

It then forces ``--strategy deepspeed`` through the product's own
``deepspeed_strategy`` (the CLI would fall back to DDP on CPU), and lets
``--precision`` through as given (the CLI trains in fp32 on CPU). Everything
else (NeMo, the ZeRO stage-2 engine with optimizer offload, ZeRO checkpoint
directories, their consolidation into ``model.nemo``) is the real code path.

Usage: ``python tests/deepspeed_cpu_harness.py train ...`` (the ``medasr`` arguments).
"""

from __future__ import annotations

import os
import sys
from typing import Any

os.environ.setdefault("DS_ACCELERATOR", "cpu")


def _lift_cuda_checks() -> None:
    import deepspeed
    import lightning.pytorch.strategies.deepspeed as lightning_ds
    from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

    def setup_environment(self: Any) -> None:
        DDPStrategy.setup_environment(self)  # what DeepSpeedStrategy adds is the CUDA check

    DeepSpeedStrategy.setup_environment = setup_environment  # type: ignore[method-assign]
    lightning_ds._validate_device_index_selection = lambda devices: None  # type: ignore[attr-defined]
    initialize = deepspeed.initialize

    def initialize_on_cpu(*args: Any, **kwargs: Any) -> Any:
        ns = kwargs.get("args")
        if ns is not None and getattr(ns, "device_rank", 0) is None:
            ns.device_rank = 0
        return initialize(*args, **kwargs)

    deepspeed.initialize = initialize_on_cpu


def _force_deepspeed() -> None:
    from medasr_cli.train import devices, trainer

    def build_strategy(name: str, accelerator: str, *args: Any, **kwargs: Any) -> Any:
        ds_cfg = args[2] if len(args) > 2 else kwargs["ds_cfg"]
        return devices.deepspeed_strategy(ds_cfg)

    trainer.build_strategy = build_strategy  # type: ignore[assignment]
    trainer.resolve_precision = lambda precision, accelerator, deepspeed=False: precision  # type: ignore[assignment]


if __name__ == "__main__":
    _lift_cuda_checks()
    _force_deepspeed()
    from medasr_cli.cli.app import main

    sys.argv = ["medasr", *sys.argv[1:]]
    main()
