"""FastConformer-TDT architectures built from config, and BPE tokenizers trained on manifests.

The architectures are YAML in ``data/train/arch/``: ``tiny`` (~0.3M parameters)
for tests and the CPU demo, ``small`` for quick experiments, ``base-cpu`` (~2.8M) for
the closed-loop recipe's base model on 2 CPU cores, ``parakeet-xl`` the
shape of Parakeet TDT 0.6B v2 (24 layers, d_model 1024, 8x depthwise-striding
subsampling, 128 mel features, 2-layer 640-unit prediction network, TDT
durations 0-4), all filled into one template, ``fastconformer_tdt.yaml``.
"""

from __future__ import annotations

import logging
import string
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medasr_cli.core.config import packaged_names, packaged_yaml
from medasr_cli.core.errors import InputError, require
from medasr_cli.core.logging import native_stderr_to_log

log = logging.getLogger(__name__)

ARCH_PACKAGE = "medasr_cli.data.train.arch"
TEMPLATE = "fastconformer_tdt.yaml"


def architectures() -> list[str]:
    """Names of the shipped architectures (``data/train/arch/NAME.yaml``)."""
    return packaged_names(ARCH_PACKAGE, exclude=(TEMPLATE,))


# Characters a tokenizer built from scratch can always write, when its vocabulary has room:
# a later fine-tune on new words (a drug name with a capital letter the first corpus lacked)
# must not meet a character the model cannot produce.
BASIC_CHARACTERS = string.ascii_letters + string.digits


def tokenizer_corpus(texts: Iterable[str], vocab_size: int) -> list[str]:
    """The transcripts, plus one line of :data:`BASIC_CHARACTERS` when ``vocab_size`` is at
    least twice their number (a vocabulary of 64, the tests' tiny model, stays as it was)."""
    lines = list(texts)
    if vocab_size >= 2 * len(BASIC_CHARACTERS):
        lines.append(" ".join(BASIC_CHARACTERS))
    return lines


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
                with native_stderr_to_log(log):  # SentencePiece's trainer writes to fd 2
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
    arch: str, tokenizer_dir: Path, *, sample_rate: int = 16000
) -> dict[str, Any]:
    """A NeMo ``EncDecRNNTBPEModel`` config (as a plain dict) for a FastConformer-TDT.

    The shipped template ``fastconformer_tdt.yaml`` with the sizes of ``arch.yaml``.
    """
    require("omegaconf", "asr")
    from omegaconf import OmegaConf

    if arch not in architectures():
        raise InputError(
            f"--arch: unknown architecture '{arch}' (use {', '.join(architectures())})"
        )
    sizes = packaged_yaml(ARCH_PACKAGE, f"{arch}.yaml")
    template = packaged_yaml(ARCH_PACKAGE, TEMPLATE)
    cfg = OmegaConf.create({**template, "arch": sizes, "sample_rate": sample_rate})
    cfg.tokenizer.dir = str(tokenizer_dir)
    out = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(out, dict)
    out.pop("arch")
    return {str(k): v for k, v in out.items()}


def build_model(arch: str, tokenizer_dir: Path, **kwargs: Any) -> Any:
    """Instantiate an untrained ``EncDecRNNTBPEModel`` (FastConformer-TDT) from config."""
    require("nemo.collections.asr", "asr")
    from nemo.collections.asr.models import EncDecRNNTBPEModel
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(build_model_config(arch, tokenizer_dir, **kwargs))
    return EncDecRNNTBPEModel(cfg=cfg)
