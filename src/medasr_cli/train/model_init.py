"""Model initialisation: pretrained (hub or .nemo) or from scratch; tokenizer; freezing; CPU loss."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from medasr_cli.core.asr_model import load_asr_model
from medasr_cli.core.errors import InputError
from medasr_cli.train.arch import build_model_config, tokenizer_corpus, train_tokenizer
from medasr_cli.train.dist import barrier, dist_env, local_rank_zero_first
from medasr_cli.train.plan import scheduler_config
from medasr_cli.train.tdt_loss import swap_in_vectorized_tdt

log = logging.getLogger(__name__)


def load_pretrained(spec: str) -> Any:
    """Restore a .nemo, or download a hub model on local rank 0 while the other ranks wait."""
    path = Path(spec)
    if path.suffix == ".nemo" or path.exists():
        if not path.is_file() or path.suffix != ".nemo":
            raise InputError(f"--init: {spec} is not a .nemo file")
        return load_asr_model(path, device="cpu")
    with local_rank_zero_first() as first:
        if first:
            model = load_asr_model(spec, device="cpu")  # downloads into NeMo's cache
    if not first:
        model = load_asr_model(spec, device="cpu")  # cache hit
    return model


def build_from_scratch(cfg: Any, texts: list[str], out_dir: Path) -> Any:
    """A new FastConformer-TDT with a BPE tokenizer trained on the training transcripts."""
    from nemo.collections.asr.models import EncDecRNNTBPEModel
    from omegaconf import OmegaConf

    tok_dir = out_dir / "tokenizer"
    if dist_env().is_global_zero:
        train_tokenizer(tokenizer_corpus(texts, int(cfg.vocab_size)), tok_dir, int(cfg.vocab_size))
    barrier()
    base = OmegaConf.create(build_model_config(str(cfg.arch), tok_dir))
    user = OmegaConf.create(
        {
            k: cfg.model[k]
            for k in ("preprocessor", "spec_augment", "loss", "optim")
            if k in cfg.model
        }
    )
    merged = OmegaConf.merge(base, user)
    merged.encoder.feat_in = merged.preprocessor.features
    merged.optim = scheduler_config(merged.optim)  # explicit warmup_steps win over the ratio
    return EncDecRNNTBPEModel(cfg=merged)


def change_tokenizer(model: Any, tokenizer_dir: Path) -> None:
    """Swap the tokenizer, then rebuild the TDT loss that NeMo's change_vocabulary drops.

    ``change_vocabulary`` re-creates the loss without the TDT kwargs, i.e. as a
    plain RNNT loss, which makes a fine-tuned TDT head stall; we restore it.
    """

    if not (tokenizer_dir / "tokenizer.model").is_file():
        raise InputError(f"--tokenizer: {tokenizer_dir} has no tokenizer.model")
    loss_cfg = _plain(model.cfg.loss)
    model.change_vocabulary(new_tokenizer_dir=str(tokenizer_dir), new_tokenizer_type="bpe")
    if loss_cfg.get("loss_name") == "tdt":
        set_tdt_loss(model, loss_cfg)


def set_tdt_loss(model: Any, loss_cfg: dict[str, Any]) -> None:
    """(Re)build the model's TDT loss from ``loss_cfg`` and record it in the model's config."""
    from nemo.collections.asr.losses.rnnt import RNNTLoss
    from omegaconf import open_dict

    model.loss = RNNTLoss(
        # as NeMo's own __init__ does for TDT: the vocabulary size, without duration outputs
        num_classes=model.joint.num_classes_with_blank - 1 - model.joint.num_extra_outputs,
        loss_name="tdt",
        loss_kwargs=copy.deepcopy(loss_cfg.get("tdt_kwargs")),  # NeMo pops keys from it
        reduction=model.cfg.get("rnnt_reduction", "mean_batch"),
    )
    if model.joint.fuse_loss_wer:
        model.joint.set_loss(model.loss)
    with open_dict(model.cfg):
        model.cfg.loss = loss_cfg


def apply_finetune_config(model: Any, cfg: Any) -> list[str]:
    """Make the config's SpecAugment and TDT loss settings apply to a pretrained model.

    The pretrained preprocessor is kept: its features are what the weights were
    trained on. A configured preprocessor that differs is reported, not applied.
    TDT durations cannot change either (the joint has one output per duration);
    sigma and omega can. Returns one line per change, for the log.
    """
    from omegaconf import OmegaConf, open_dict

    changes: list[str] = []
    user = cfg.model
    if "spec_augment" in user and model.cfg.get("spec_augment") is not None:
        current = _plain(model.cfg.spec_augment)
        wanted = {**current, **_plain(user.spec_augment)}
        if wanted != current:
            model.spec_augmentation = model.from_config_dict(OmegaConf.create(wanted))
            with open_dict(model.cfg):
                model.cfg.spec_augment = wanted
            changes.append(f"SpecAugment set from the config: {wanted}")
    have_loss, want_loss = _plain(model.cfg.get("loss")), _plain(user.get("loss"))
    if have_loss.get("loss_name") == "tdt" and want_loss.get("loss_name") == "tdt":
        have_kw = dict(have_loss.get("tdt_kwargs") or {})
        want_kw = dict(want_loss.get("tdt_kwargs") or {})
        if list(want_kw.get("durations", [])) != list(have_kw.get("durations", [])):
            raise InputError(
                f"model.loss.tdt_kwargs.durations: the pretrained model predicts durations "
                f"{list(have_kw.get('durations', []))} (one joint output each); fine-tuning "
                "cannot change them: drop the override or train --from-scratch"
            )
        if {**have_kw, **want_kw} != have_kw:
            set_tdt_loss(model, {**have_loss, "tdt_kwargs": {**have_kw, **want_kw}})
            changes.append(f"TDT loss set from the config: {want_kw}")
    if "preprocessor" in user and model.cfg.get("preprocessor") is not None:
        mine = _plain(model.cfg.preprocessor)
        asked = _plain(user.preprocessor)
        differ = {k: v for k, v in asked.items() if k in mine and mine[k] != v}
        if differ:
            log.warning("kept the pretrained preprocessor; not applied from the config: %s", differ)
    return changes


def _plain(node: Any) -> dict[str, Any]:
    """A config section as a plain dict (empty for a missing one)."""
    from omegaconf import OmegaConf

    if node is None:
        return {}
    out = OmegaConf.to_container(node, resolve=True)
    if not isinstance(out, dict):
        raise InputError(f"config: expected a mapping, got {out!r}")
    return {str(k): v for k, v in out.items()}


def freeze(model: Any, encoder_layers: int, decoder: bool) -> None:
    """Freeze the pre-encoder and the first N encoder layers, and optionally the decoder."""
    if encoder_layers > 0:
        layers = model.encoder.layers
        if encoder_layers > len(layers):
            raise InputError(
                f"--freeze-encoder-layers {encoder_layers}: the encoder has {len(layers)}"
            )
        for module in [model.encoder.pre_encode, *layers[:encoder_layers]]:
            for p in module.parameters():
                p.requires_grad_(False)
    if decoder:
        for p in model.decoder.parameters():
            p.requires_grad_(False)


def init_model(
    cfg: Any, texts: list[str], out_dir: Path, accelerator: str, tokenizer: Path | None = None
) -> Any:
    """Build or load the model described by ``cfg`` and prepare it for this device."""
    if cfg.arch:
        model = build_from_scratch(cfg, texts, out_dir)
    else:
        model = load_pretrained(str(cfg.init))
        for line in apply_finetune_config(model, cfg):
            log.info(line)
    if tokenizer is not None:
        change_tokenizer(model, tokenizer)
    freeze(model, int(cfg.freeze_encoder_layers), bool(cfg.freeze_decoder))
    if accelerator == "cpu" and swap_in_vectorized_tdt(model):
        log.info("CPU: using medasr's vectorised TDT loss (the saved .nemo keeps loss_name: tdt)")
    return model
