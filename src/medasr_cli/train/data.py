"""Training data: manifests checked before the first step, replay mixing, NeMo data configs."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import InputError, require
from medasr_cli.core.jsonl import write_jsonl
from medasr_cli.core.records import ManifestEntry
from medasr_cli.manifest.validate import validate_manifest

log = logging.getLogger(__name__)


def check_manifest(path: Path, role: str) -> list[ManifestEntry]:
    """Validate a manifest (one read) before the first step; point to `medasr manifest validate`."""
    report = validate_manifest(path, sample_rate=None, channels=None)
    if report.problems:
        first = report.problems[0]
        raise InputError(
            f"{role} manifest has {len(report.problems)} problem(s), first: {first}; "
            f"run `medasr manifest validate {path}` for all"
        )
    return report.entries


def check_validation_sets(sets: Mapping[str, Path]) -> list[ManifestEntry]:
    """Check every named validation manifest; returns all their entries."""
    return [
        entry
        for name, path in sets.items()
        for entry in check_manifest(path, f"validation ({name})" if len(sets) > 1 else "validation")
    ]


def mix_replay(
    domain: list[ManifestEntry], general: list[ManifestEntry], ratio: float, out: Path, seed: int
) -> Path:
    """A training manifest where a fresh draw of general-domain replay makes up ``ratio``.

    Every domain utterance is kept; ``ratio / (1 - ratio) * len(domain)`` general
    utterances are drawn without replacement (with replacement only when the
    general set is smaller than that). Called once per epoch with its own seed,
    so over a run the replay covers the general set rather than one fixed sample.
    """
    n = round(ratio / (1 - ratio) * len(domain))
    rng = random.Random(seed)
    picked = rng.sample(general, n) if n <= len(general) else rng.choices(general, k=n)
    rows = [e.model_copy(update={"replay": False}) for e in domain]
    rows += [e.model_copy(update={"replay": True}) for e in picked]
    rng.shuffle(rows)
    write_jsonl(out, rows)  # atomic: every rank writes the same rows
    log.info("replay: %d general-domain + %d domain utterances -> %s", n, len(domain), out)
    return out


class ReplayMix:
    """The replay manifests of one run: ``OUT/replay/epoch_NNN.jsonl``, a new draw per epoch.

    ``domain`` is the training manifest, or its entries when they were checked already.
    """

    def __init__(
        self,
        domain: Path | Sequence[ManifestEntry],
        replay: Path,
        ratio: float,
        out_dir: Path,
        seed: int,
    ) -> None:
        if not 0 < ratio < 1:
            raise InputError(f"--replay-ratio must be between 0 and 1, got {ratio}")
        self.domain = check_manifest(domain, "train") if isinstance(domain, Path) else list(domain)
        self.general = check_manifest(replay, "replay")
        self.ratio, self.folder, self.seed = ratio, out_dir / "replay", seed

    def manifest(self, epoch: int) -> Path:
        out = self.folder / f"epoch_{epoch:03d}.jsonl"
        return mix_replay(self.domain, self.general, self.ratio, out, self.seed * 100_003 + epoch)


def check_augmentor(ds: Any) -> None:
    """Fail before training when the configured augmentor cannot run here.

    NeMo's speed perturbation resamples with librosa; its ``kaiser_*`` types need
    ``resampy``, and when that is missing NeMo logs a warning per utterance and skips
    the augmentation, so a run would silently train without it.
    """
    augmentor = ds.get("augmentor") or {}
    for name in ("speed", "time_stretch"):
        step = augmentor.get(name) or {}
        if str(step.get("resample_type", "")).startswith("kaiser"):
            require("resampy", "train")


def data_config(ds: Any, manifest: Path | Sequence[Path], accelerator: str, world: int) -> Any:
    """NeMo's dataset config for ``manifest``: the config's section, fitted to this machine.

    On CPU there is no memory to pin, and data workers share the cores with the
    training processes, so each gets at most its share of them.
    """
    from omegaconf import OmegaConf

    cfg: Any = OmegaConf.create(OmegaConf.to_container(ds, resolve=True))
    paths = [str(manifest)] if isinstance(manifest, Path) else [str(m) for m in manifest]
    cfg.manifest_filepath = paths[0] if len(paths) == 1 else paths
    if accelerator == "cpu":
        cfg.pin_memory = False
        cfg.num_workers = min(
            int(cfg.get("num_workers", 0)), max(0, (os.cpu_count() or 1) // world - 1)
        )
    return cfg
