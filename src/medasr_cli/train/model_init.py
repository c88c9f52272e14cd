"""Model initialisation: pretrained (hub or .nemo) or from scratch; tokenizer; freezing; CPU loss."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from medasr_cli.core.asr_model import load_asr_model
from medasr_cli.core.errors import InputError
from medasr_cli.train.arch import build_model_config, train_tokenizer
from medasr_cli.train.dist import barrier, dist_env, local_rank_zero_first
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
        train_tokenizer(texts, tok_dir, int(cfg.vocab_size))
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
    return EncDecRNNTBPEModel(cfg=merged)


def change_tokenizer(model: Any, tokenizer_dir: Path) -> None:
    """Swap the tokenizer, then rebuild the TDT loss that NeMo's change_vocabulary drops.

    ``change_vocabulary`` re-creates the loss without the TDT kwargs, i.e. as a
    plain RNNT loss, which makes a fine-tuned TDT head stall; we restore it.
    """
    from nemo.collections.asr.losses.rnnt import RNNTLoss
    from omegaconf import OmegaConf, open_dict

    if not (tokenizer_dir / "tokenizer.model").is_file():
        raise InputError(f"--tokenizer: {tokenizer_dir} has no tokenizer.model")
    loss_cfg = OmegaConf.to_container(model.cfg.loss, resolve=True)
    model.change_vocabulary(new_tokenizer_dir=str(tokenizer_dir), new_tokenizer_type="bpe")
    assert isinstance(loss_cfg, dict)
    if loss_cfg.get("loss_name") == "tdt":
        model.loss = RNNTLoss(
            # as NeMo's own __init__ does for TDT: the vocabulary size, without duration outputs
            num_classes=model.joint.num_classes_with_blank - 1 - model.joint.num_extra_outputs,
            loss_name="tdt",
            loss_kwargs=loss_cfg.get("tdt_kwargs"),
            reduction=model.cfg.get("rnnt_reduction", "mean_batch"),
        )
        if model.joint.fuse_loss_wer:
            model.joint.set_loss(model.loss)
        with open_dict(model.cfg):
            model.cfg.loss = loss_cfg


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
    model = build_from_scratch(cfg, texts, out_dir) if cfg.arch else load_pretrained(str(cfg.init))
    if tokenizer is not None:
        change_tokenizer(model, tokenizer)
    freeze(model, int(cfg.freeze_encoder_layers), bool(cfg.freeze_decoder))
    if accelerator == "cpu" and swap_in_vectorized_tdt(model):
        log.info("CPU: using medasr's vectorised TDT loss (the saved .nemo keeps loss_name: tdt)")
    return model
