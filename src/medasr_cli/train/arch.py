"""FastConformer-TDT architectures built from config, and BPE tokenizers trained on manifests.

``tiny`` (~0.3M parameters) is for tests and the CPU demo; ``small`` for quick
experiments; ``parakeet-xl`` mirrors Parakeet TDT 0.6B v2 (24 layers, d_model
1024, 8x depthwise-striding subsampling, 128 mel features, 2-layer 640-unit
prediction network, TDT durations 0-4).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medasr_cli.core.errors import InputError, require

log = logging.getLogger(__name__)

ARCHS: dict[str, dict[str, Any]] = {
    "tiny": dict(n_layers=2, d_model=64, n_heads=2, conv_kernel=9, ff=2, sub_ch=64, pred=64,
                 pred_layers=1, joint=64, features=80, vocab=64),
    "small": dict(n_layers=8, d_model=176, n_heads=4, conv_kernel=9, ff=4, sub_ch=176, pred=320,
                  pred_layers=1, joint=320, features=128, vocab=256),
    "parakeet-xl": dict(n_layers=24, d_model=1024, n_heads=8, conv_kernel=9, ff=4, sub_ch=256,
                        pred=640, pred_layers=2, joint=640, features=128, vocab=1024),
}  # fmt: skip
TDT_DURATIONS = [0, 1, 2, 3, 4]


def train_tokenizer(texts: Iterable[str], out_dir: Path, vocab_size: int) -> Path:
    """Train a SentencePiece BPE tokenizer with NeMo's own ``create_spt_model``.

    Writes ``tokenizer.model``, ``tokenizer.vocab`` and ``vocab.txt`` into
    ``out_dir`` (the layout NeMo's ``tokenizer.dir`` expects). The vocabulary is
    shrunk if the text is too small for ``vocab_size``.
    """
    require("nemo.collections.common", "asr")
    from nemo.collections.common.tokenizers.sentencepiece_tokenizer import create_spt_model

    lines = [t.strip() for t in texts if t.strip()]
    if not lines:
        raise InputError("cannot train a tokenizer: no transcript text")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "text.txt"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        size = vocab_size
        while True:
            try:
                create_spt_model(
                    str(corpus), size, sample_size=-1, do_lower_case=False,
                    tokenizer_type="bpe", output_dir=str(out_dir),
                )  # fmt: skip
                break
            except RuntimeError as exc:  # "Vocabulary size too high" on small corpora
                if "Vocabulary size" not in str(exc) or size <= 16:
                    raise
                size = max(16, size // 2)
                log.info("text too small for vocabulary %d; retrying with %d", size * 2, size)
    return out_dir


def build_model_config(
    arch: str,
    tokenizer_dir: Path,
    *,
    sample_rate: int = 16000,
    spec_augment: bool = True,
) -> dict[str, Any]:
    """A NeMo ``EncDecRNNTBPEModel`` config (as a plain dict) for a FastConformer-TDT."""
    if arch not in ARCHS:
        raise InputError(f"--arch: unknown architecture '{arch}' (use {', '.join(ARCHS)})")
    a = ARCHS[arch]
    ds = {"manifest_filepath": None, "sample_rate": sample_rate, "batch_size": 8}
    return {
        "sample_rate": sample_rate,
        "model_defaults": {
            "enc_hidden": a["d_model"],
            "pred_hidden": a["pred"],
            "joint_hidden": a["joint"],
            "tdt_durations": TDT_DURATIONS,
            "num_tdt_durations": len(TDT_DURATIONS),
        },
        "tokenizer": {"dir": str(tokenizer_dir), "type": "bpe"},
        "train_ds": dict(ds, shuffle=True),
        "validation_ds": dict(ds, shuffle=False),
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": sample_rate,
            "normalize": "per_feature",
            "window_size": 0.025,
            "window_stride": 0.01,
            "window": "hann",
            "features": a["features"],
            "n_fft": 512,
            "log": True,
            "frame_splicing": 1,
            "dither": 1e-5,
            "pad_to": 0,
            "pad_value": 0.0,
        },
        "spec_augment": {
            "_target_": "nemo.collections.asr.modules.SpectrogramAugmentation",
            "freq_masks": 2 if spec_augment else 0,
            "time_masks": 10 if spec_augment else 0,
            "freq_width": 27,
            "time_width": 0.05,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": a["features"],
            "feat_out": -1,
            "n_layers": a["n_layers"],
            "d_model": a["d_model"],
            "subsampling": "dw_striding",
            "subsampling_factor": 8,
            "subsampling_conv_channels": a["sub_ch"],
            "causal_downsampling": False,
            "ff_expansion_factor": a["ff"],
            "self_attention_model": "rel_pos",
            "n_heads": a["n_heads"],
            "att_context_size": [-1, -1],
            "xscaling": True,
            "untie_biases": True,
            "pos_emb_max_len": 5000,
            "conv_kernel_size": a["conv_kernel"],
            "conv_norm_type": "batch_norm",
            "dropout": 0.1,
            "dropout_pre_encoder": 0.1,
            "dropout_emb": 0.0,
            "dropout_att": 0.1,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "normalization_mode": None,
            "random_state_sampling": False,
            "blank_as_pad": True,
            "prednet": {
                "pred_hidden": a["pred"],
                "pred_rnn_layers": a["pred_layers"],
                "t_max": None,
                "dropout": 0.2 if a["pred_layers"] > 1 else 0.0,
            },
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "log_softmax": None,
            "preserve_memory": False,
            "fuse_loss_wer": False,
            "fused_batch_size": 4,
            "num_extra_outputs": len(TDT_DURATIONS),
            "jointnet": {"joint_hidden": a["joint"], "activation": "relu", "dropout": 0.2},
        },
        "decoding": {
            "strategy": "greedy_batch",
            "model_type": "tdt",
            "durations": TDT_DURATIONS,
            "greedy": {"max_symbols": 10},
        },
        "loss": {
            "loss_name": "tdt",
            "tdt_kwargs": {
                "fastemit_lambda": 0.0,
                "clamp": -1.0,
                "durations": TDT_DURATIONS,
                "sigma": 0.02,
                "omega": 0.1,
            },
        },
        "optim": {
            "name": "adamw",
            "lr": 2e-3,
            "betas": [0.9, 0.98],
            "weight_decay": 1e-3,
            "sched": {"name": "CosineAnnealing", "warmup_steps": 20, "min_lr": 1e-5},
        },
    }


def build_model(arch: str, tokenizer_dir: Path, **kwargs: Any) -> Any:
    """Instantiate an untrained ``EncDecRNNTBPEModel`` (FastConformer-TDT) from config."""
    require("nemo.collections.asr", "asr")
    from nemo.collections.asr.models import EncDecRNNTBPEModel
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(build_model_config(arch, tokenizer_dir, **kwargs))
    return EncDecRNNTBPEModel(cfg=cfg)
