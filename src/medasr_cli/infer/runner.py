"""The model runner: the one inference path of ``eval --model`` and ``serve``.

It loads a NeMo ASR model, decides how long one encoder pass may be
(:mod:`.limits`), runs pieces that are longer than the full-attention limit
with local attention (NeMo's long-audio recipe), decodes under the same
precision on each device, boosts request keywords, and splits a batch that
runs out of GPU memory into halves until the pieces fit.

Its methods are called from one thread at a time (``serve``'s model thread,
see :mod:`medasr_cli.serve.engine`, or ``eval``'s loop), never from two at
once: NeMo's ``transcribe()`` changes model state (decoding config, dither,
logging level, the attention modules here) while it runs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from medasr_cli.core.asr_model import load_asr_model, resolve_device, transcribe_arrays
from medasr_cli.infer.limits import (
    LOCAL_CONTEXT,
    ModelShape,
    PassLimits,
    estimate_limits,
    free_memory_bytes,
)
from medasr_cli.infer.transcript import SAMPLE_RATE, Chunk, Transcript, from_hypothesis, plan_chunks

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


OPTION_HELP = {
    "device": "auto (a GPU when one is visible, else the CPU), cpu or cuda[:N].",
    "precision": "CUDA autocast: auto (bf16 where supported, else fp16), bf16, fp16 or fp32. "
    "CPU always runs fp32.",
    "full_attention_s": "Audio pieces up to this many seconds use the model's full attention; "
    "longer ones local attention (NeMo's long-audio recipe). Default: what fits in free memory "
    "at load, at most 1440.",
    "max_single_pass_s": "Audio up to this many seconds is decoded in one pass; longer audio in "
    "overlapping chunks. Default: what fits in free memory at load, at most 10800.",
    "chunk_overlap_s": "Overlap between chunks of long audio, in seconds.",
    "max_batch_size": "Most audio pieces decoded in one model call (1 = no batching).",
    "max_batch_audio_s": "Padded audio seconds allowed in one batch (memory guard).",
    "cpu_threads": "Torch CPU threads for inference (default: torch's choice); 1 is often fastest "
    "on a shared machine.",
}
"""Help for the inference settings ``serve`` and ``eval --model`` share (one wording for both)."""


class PieceTooLarge(Exception):
    """One piece of audio does not fit in device memory even alone and with local attention."""

    def __init__(self, duration: float, device: str) -> None:
        super().__init__(
            f"{duration:.0f} s of audio does not fit in the free memory of {device} even in one "
            "pass of its own with local attention; lower the server's --max-single-pass-s"
        )
        self.duration = duration


@dataclass(frozen=True)
class RunnerOptions:
    """How to load and run the model (the same fields for ``eval --model`` and ``serve``)."""

    model: str
    device: str = "auto"
    cpu_threads: int | None = None
    precision: str = "auto"
    keyword_boosting: bool = True
    keyword_boost_alpha: float = 1.0
    keyword_context_score: float = 1.0
    full_attention_s: float | None = None
    """Longest piece decoded with full attention; None = from free memory at load."""
    max_single_pass_s: float | None = None
    """Longest piece decoded in one pass; None = from free memory at load."""
    chunk_overlap_s: float = 10.0


class ModelRunner:
    """Loads one NeMo ASR model and decodes batches of :class:`InferItem` with timestamps."""

    def __init__(self, options: RunnerOptions) -> None:
        self.options = options
        self.model: Any = None
        self.device = "cpu"
        self.boosting = False
        self.limits = PassLimits(
            full_attention_s=options.full_attention_s or 0.0,
            single_pass_s=options.max_single_pass_s or 0.0,
            chunk_overlap_s=options.chunk_overlap_s,
        )
        self.oom_splits = 0
        self.on_oom: Callable[[], None] | None = None
        self._attention = _AttentionModes()

    def load(self) -> float:
        """Load the model, set the pass limits, enable per-request boosting; returns seconds."""
        started = time.perf_counter()
        self.device = resolve_device(self.options.device)
        if self.device == "cpu" and self.options.cpu_threads:
            import torch

            torch.set_num_threads(self.options.cpu_threads)
        self.model = load_asr_model(self.options.model, self.device)
        self._attention = _AttentionModes(self.model)
        if hasattr(self.model, "change_subsampling_conv_chunking_factor"):
            # NeMo's long-audio recipe: chunk the subsampling convolution when it would be huge
            self.model.change_subsampling_conv_chunking_factor(1, update_config=False)
        self.limits = self._pass_limits()
        if self.options.keyword_boosting:
            self.boosting = _enable_per_stream_biasing(self.model)
        return time.perf_counter() - started

    def _pass_limits(self) -> PassLimits:
        opts = self.options
        if opts.full_attention_s is not None and opts.max_single_pass_s is not None:
            auto = None
        else:
            auto = estimate_limits(
                ModelShape.of(self.model),
                free_memory_bytes(self.device),
                self._dtype_bytes(),
                chunk_overlap_s=opts.chunk_overlap_s,
            )
        single = opts.max_single_pass_s or (auto.single_pass_s if auto else 0.0)
        full = opts.full_attention_s if opts.full_attention_s is not None else None
        if full is None:
            full = auto.full_attention_s if auto else single
        if not self._attention.available:
            full = single  # no local-attention mode: every single pass uses the model's own
        return PassLimits(min(full, single), single, opts.chunk_overlap_s)

    def precision_name(self) -> str:
        """What the model computes in on this device: fp32, bf16 or fp16."""
        if not self.device.startswith("cuda") or self.options.precision == "fp32":
            return "fp32"
        if self.options.precision in ("bf16", "fp16"):
            return self.options.precision
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"

    def _dtype_bytes(self) -> int:
        return 2 if self.device.startswith("cuda") and self.options.precision != "fp32" else 4

    def plan(self, duration: float, max_pass_s: float | None = None) -> list[Chunk]:
        """How a recording this long is cut into pieces (one piece when it fits one pass)."""
        limit = self.limits.single_pass_s
        if max_pass_s is not None:
            limit = min(limit, max_pass_s)
        return plan_chunks(duration, limit, self.limits.chunk_overlap_s)

    def warmup(self) -> None:
        """One real inference, so the first request does not pay for lazy initialisation."""
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(SAMPLE_RATE * 2) * 0.01).astype(np.float32)
        self.infer([InferItem(noise)])

    def infer(self, items: Sequence[InferItem]) -> list[Transcript]:
        """Decode a batch; results are in input order.

        Pieces longer than the full-attention limit run apart from the others,
        with local attention, so a piece's text never depends on its batch.
        """
        if self.model is None:
            raise RuntimeError("model is not loaded")
        results: list[Transcript | None] = [None] * len(items)
        groups: dict[bool, list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(self.limits.needs_local(it.duration), []).append(i)
        for local, idx in sorted(groups.items()):
            for i, res in zip(idx, self._run([items[i] for i in idx], local), strict=True):
                results[i] = res
        return [r for r in results if r is not None]

    def _run(self, items: Sequence[InferItem], local: bool) -> list[Transcript]:
        """Decode items in one call; on out-of-memory, free the cache and decode each half."""
        import torch

        try:
            return self._decode(items, local)
        except torch.OutOfMemoryError:
            pass  # leave the except block so the failed call's tensors can be freed
        self.oom_splits += 1
        if self.on_oom is not None:
            self.on_oom()
        _free_device_cache(self.device)
        if len(items) > 1:
            half = len(items) // 2
            log.warning("out of memory on a batch of %d; decoding halves of it", len(items))
            return self._run(items[:half], local) + self._run(items[half:], local)
        if not local and self._attention.available:
            log.warning("out of memory on %.0f s with full attention; using local attention",
                        items[0].duration)  # fmt: skip
            return self._run(items, True)
        raise PieceTooLarge(items[0].duration, self.device)

    def _decode(self, items: Sequence[InferItem], local: bool) -> list[Transcript]:
        arrays = [_pad(it.audio) for it in items]
        with self._attention.use(local), self._autocast():
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

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[self.precision_name()]
        with torch.autocast(device_type="cuda", dtype=dtype):
            yield


def _free_device_cache(device: str) -> None:
    """Return cached blocks to the GPU after an out-of-memory error (nothing to do on CPU)."""
    if device.startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


class _AttentionModes:
    """Switch a FastConformer encoder between its own attention and local attention.

    The first switch goes through NeMo's ``change_attention_model`` (new
    attention modules loaded with the same weights); both sets of modules are
    then kept, so later switches only swap references.
    """

    def __init__(self, model: Any = None) -> None:
        encoder = getattr(model, "encoder", None)
        self.model = model
        self.available = bool(
            encoder is not None
            and hasattr(encoder, "change_attention_model")
            and getattr(encoder, "self_attention_model", None) == "rel_pos"
        )
        self._own_context = list(getattr(encoder, "att_context_size", None) or [-1, -1])
        self._local = False
        self._saved: dict[bool, tuple[Any, list[Any]]] = {}

    @contextlib.contextmanager
    def use(self, local: bool) -> Iterator[None]:
        """Run the body with local (or the model's own) attention, then switch back."""
        if not local or not self.available:
            yield
            return
        self._switch(True)
        try:
            yield
        finally:
            self._switch(False)

    def _layers(self) -> list[Any]:
        from nemo.collections.asr.parts.submodules.conformer_modules import ConformerLayer

        return [m for m in self.model.encoder.modules() if isinstance(m, ConformerLayer)]

    def _switch(self, local: bool) -> None:
        if local == self._local:
            return
        enc = self.model.encoder
        layers = self._layers()
        self._saved[self._local] = (enc.pos_enc, [layer.self_attn for layer in layers])
        mode = "rel_pos_local_attn" if local else "rel_pos"
        context = list(LOCAL_CONTEXT) if local else self._own_context
        if local in self._saved:
            pos_enc, attns = self._saved[local]
            enc.pos_enc = pos_enc
            for layer, attn in zip(layers, attns, strict=True):
                layer.self_attn = attn
                layer.self_attention_model = mode
            enc.self_attention_model = mode
            enc.att_context_size = context
            enc.set_max_audio_length(enc.pos_emb_max_len)
        else:
            self.model.change_attention_model(mode, context, update_config=False)
        self._local = local


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
