"""The model runner: the only code that touches the NeMo model.

Its methods are called from one worker thread (see :mod:`.engine`), never from
the event loop and never from two threads at once: NeMo's ``transcribe()``
changes model state (decoding config, dither, logging level) while it runs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medasr_cli.core.asr_model import load_asr_model, resolve_device, transcribe_arrays
from medasr_cli.serve.transcript import SAMPLE_RATE, Transcript, from_hypothesis

log = logging.getLogger(__name__)

MIN_SAMPLES = SAMPLE_RATE  # NeMo pads shorter audio on both sides, which would shift times


@dataclass(frozen=True)
class InferItem:
    """One piece of audio (16 kHz mono float32) to decode, with optional boosted phrases."""

    audio: np.ndarray
    keywords: tuple[str, ...] = ()

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class RunnerOptions:
    """How to load and run the model."""

    model: str
    device: str = "auto"
    cpu_threads: int | None = None
    precision: str = "auto"
    keyword_boosting: bool = True
    keyword_boost_alpha: float = 1.0
    keyword_context_score: float = 1.0


class ModelRunner:
    """Loads one NeMo ASR model and decodes batches of :class:`InferItem` with timestamps."""

    def __init__(self, options: RunnerOptions) -> None:
        self.options = options
        self.model: Any = None
        self.device = "cpu"
        self.boosting = False

    def load(self) -> float:
        """Load the model (and enable per-request boosting where supported); returns seconds taken."""
        started = time.perf_counter()
        self.device = resolve_device(self.options.device)
        if self.device == "cpu" and self.options.cpu_threads:
            import torch

            torch.set_num_threads(self.options.cpu_threads)
        self.model = load_asr_model(self.options.model, self.device)
        if self.options.keyword_boosting:
            self.boosting = _enable_per_stream_biasing(self.model)
        return time.perf_counter() - started

    def warmup(self) -> None:
        """One real inference, so the first request does not pay for lazy initialisation."""
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(SAMPLE_RATE * 2) * 0.01).astype(np.float32)
        self.infer([InferItem(noise)])

    def infer(self, items: Sequence[InferItem]) -> list[Transcript]:
        """Decode a batch in one ``transcribe()`` call; results are in input order."""
        if self.model is None:
            raise RuntimeError("model is not loaded")
        arrays = [_pad(it.audio) for it in items]
        with self._autocast():
            if self.boosting and any(it.keywords for it in items):
                hyps = self._transcribe_boosted(arrays, items)
            else:
                hyps = transcribe_arrays(
                    self.model, arrays, batch_size=len(arrays), timestamps=True
                )
        return [from_hypothesis(h, it.duration) for h, it in zip(hyps, items, strict=True)]

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` in the model's own tokenizer (for verbose_json segments)."""
        tok = getattr(self.model, "tokenizer", None)
        if tok is None or not text:
            return []
        return [int(i) for i in tok.text_to_ids(text)]

    def _transcribe_boosted(
        self, arrays: list[np.ndarray], items: Sequence[InferItem]
    ) -> list[Any]:
        import torch

        partial = [self._biasing_request(it.keywords) if it.keywords else None for it in items]
        with torch.inference_mode():
            out = self.model.transcribe(
                arrays,
                batch_size=len(arrays),
                return_hypotheses=True,
                verbose=False,
                timestamps=True,
                partial_hypothesis=partial,
            )
        return list(out[0] if isinstance(out, tuple) else out)

    def _biasing_request(self, keywords: tuple[str, ...]) -> Any:
        from nemo.collections.asr.parts.context_biasing.biasing_multi_model import (
            BiasingRequestItemConfig,
        )
        from nemo.collections.asr.parts.context_biasing.boosting_graph_batched import (
            BoostingTreeModelConfig,
        )

        cfg = BiasingRequestItemConfig(
            boosting_model_cfg=BoostingTreeModelConfig(
                key_phrases_list=list(keywords),
                context_score=self.options.keyword_context_score,
                use_triton=self.device.startswith("cuda"),
            ),
            boosting_model_alpha=self.options.keyword_boost_alpha,
        )
        return _empty_hypothesis_class().empty_with_biasing_cfg(cfg)

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        """bf16/fp16 autocast on CUDA; plain fp32 on CPU."""
        if not self.device.startswith("cuda") or self.options.precision == "fp32":
            yield
            return
        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.options.precision)
        if dtype is None:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast(device_type="cuda", dtype=dtype):
            yield


def _pad(audio: np.ndarray) -> np.ndarray:
    """Right-pad audio shorter than 1 s so NeMo's centre padding cannot shift the timestamps."""
    if len(audio) >= MIN_SAMPLES:
        return audio
    return np.pad(audio, (0, MIN_SAMPLES - len(audio)))


def _enable_per_stream_biasing(model: Any) -> bool:
    """Switch greedy TDT/RNNT decoding to NeMo's per-stream phrase boosting, if this model can.

    Per-stream biasing needs label-looping greedy decoding (``greedy_batch``
    with ``blank_as_pad``); other models keep decoding unchanged and request
    keywords are ignored.
    """
    from omegaconf import open_dict

    decoding = getattr(getattr(model, "cfg", None), "decoding", None)
    decoder = getattr(model, "decoder", None)
    if decoding is None or decoding.get("strategy") != "greedy_batch":
        log.warning("keyword boosting needs greedy_batch decoding; request keywords are ignored")
        return False
    if not getattr(decoder, "blank_as_pad", False):
        log.warning("keyword boosting needs a blank-as-pad decoder; request keywords are ignored")
        return False
    cfg = copy.deepcopy(decoding)
    with open_dict(cfg):
        cfg.greedy.enable_per_stream_biasing = True
        cfg.compute_timestamps = True
    try:
        model.change_decoding_strategy(cfg, verbose=False)
    except (NotImplementedError, ValueError, TypeError) as exc:
        log.warning("keyword boosting is not available for this model (%s); ignoring keywords", exc)
        return False
    return True


_HYP_CLASS: Any = None


def _empty_hypothesis_class() -> Any:
    """A Hypothesis whose in-place merge keeps TDT token durations.

    NeMo 3.0's ``Hypothesis.merge_`` does not carry ``token_duration``, so an
    empty biasing hypothesis merged with the decoded one loses the durations
    that TDT word timestamps are computed from. The decoded durations are the
    whole story here because the partial hypothesis starts empty.
    """
    global _HYP_CLASS
    if _HYP_CLASS is None:
        from nemo.collections.asr.parts.utils.rnnt_utils import Hypothesis

        class _BiasingHypothesis(Hypothesis):
            def merge_(self, other: Any) -> Any:
                durations = other.token_duration
                super().merge_(other)
                self.token_duration = durations
                return self

        _HYP_CLASS = _BiasingHypothesis
    return _HYP_CLASS
