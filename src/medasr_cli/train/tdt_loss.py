"""Vectorised, device-agnostic TDT (Token-and-Duration Transducer) loss.

NeMo's ``tdt`` loss is a numba CUDA kernel (it raises on CPU) and its reference
``TDTLossPytorch`` hard-codes ``.cuda()`` and loops over batch x frames x labels in
Python. This module computes the same quantity (https://arxiv.org/abs/2304.06795) with
one Python loop over frames: inside a frame the duration-0 label emissions form a chain
along the label axis, solved in closed form with ``torch.logcumsumexp``. Gradients come
from autograd, so it runs wherever torch does (CPU or CUDA, float32 or float64).

``VectorizedTDTLoss`` is a drop-in for the object NeMo's ``RNNTLoss`` wrapper holds in
``RNNTLoss._loss``; ``swap_in_vectorized_tdt`` puts it there without touching the config.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

# Finite "log 0": -inf makes logsumexp/logcumsumexp backward produce NaN (inf - inf).
_NEG = -1e30
_REDUCTIONS = (None, "none", "sum", "mean", "mean_batch", "mean_volume")


def _by_destination(w: Tensor, cols: Sequence[int | None], delays: Sequence[int]) -> Tensor:
    """Re-index source-frame weights ``w`` [B, T, X, K] by destination frame.

    Returns [T, n, B, X] with ``out[t, i] = w[:, t - delays[i], :, cols[i]]``, and log 0
    where ``t - delays[i] < 0`` or ``cols[i]`` is None (that arc does not exist).
    """
    b, t_len, x, _ = w.shape
    src = w.permute(1, 3, 0, 2)  # [T, K, B, X]
    parts = []
    for col, d in zip(cols, delays, strict=True):
        keep = max(t_len - d, 0)
        body = src[:keep, col] if col is not None else w.new_full((keep, b, x), _NEG)
        parts.append(torch.cat([w.new_full((t_len - keep, b, x), _NEG), body], 0))
    return torch.stack(parts, 1)


def transducer_log_likelihood(
    blank_w: Tensor,
    blank_durs: Sequence[int],
    emit_w: Tensor,
    emit_durs: Sequence[int],
    act_lens: Tensor,
    label_lens: Tensor,
) -> Tensor:
    """Log-likelihood [B] of the label sequences under a duration transducer lattice.

    ``blank_w`` [B, T, U+1, Kb]: log-weight of a blank of duration ``blank_durs[k]`` (> 0)
    leaving (t, u); ``emit_w`` [B, T, U, Ke]: log-weight of emitting label u with duration
    ``emit_durs[k]`` leaving (t, u). Plain RNN-T is ``blank_durs=[1], emit_durs=[0]``.
    alpha[t, u] only depends on states with t' <= t and u' <= u, so padding beyond a
    sequence's lengths never leaks into its result; it is read at (T_b - d, U_b).
    """
    b, _, u1, _ = blank_w.shape
    delays = sorted({*blank_durs, *(d for d in emit_durs if d > 0)})
    # w[t, i, :, u] = (emit into u from (t - d_i, u - 1), blank into u from (t - d_i, u)).
    emit_dest = F.pad(emit_w, (0, 0, 1, 0), value=_NEG)  # indexed by destination label u
    w = torch.stack(
        [
            _by_destination(emit_dest, [_index(emit_durs, d) for d in delays], delays),
            _by_destination(blank_w, [_index(blank_durs, d) for d in delays], delays),
        ],
        -1,
    ).unbind(0)  # per-frame views; indexing w[t] would make backward O(T^2)
    k0 = _index(emit_durs, 0)
    # chain[t, :, u] = sum of the duration-0 emissions (t, 0) -> ... -> (t, u).
    chain = (
        None if k0 is None else F.pad(emit_w[..., k0].transpose(0, 1).cumsum(-1), (1, 0)).unbind(0)
    )

    def close_frame(inc: Tensor, t: int) -> Tensor:
        # alpha[t, u] = logsumexp_{u' <= u} inc[u'] + chain[u] - chain[u'], state padded by log 0.
        if chain is not None:
            inc = chain[t] + torch.logcumsumexp(inc - chain[t], dim=-1)
        return F.pad(inc, (1, 0), value=_NEG)

    d_max = delays[-1]
    t_max = max(int(act_lens.max()), 1)
    start = blank_w.new_full((b, u1), _NEG)
    start[:, 0] = 0.0
    # hist[d_max + t] = [log 0, alpha[t, 0], ..., alpha[t, U]]; entries before d_max are t < 0.
    hist = [blank_w.new_full((b, u1 + 1), _NEG)] * d_max + [close_frame(start, 0)]
    for t in range(1, t_max):
        prev = torch.stack([hist[d_max + t - d] for d in delays])  # [n, B, U+2]
        # unfold pairs (alpha[u-1], alpha[u]) with the (emit, blank) arc weights into u.
        inc = torch.logsumexp(prev.unfold(-1, 2, 1) + w[t], dim=(0, 3))
        hist.append(close_frame(inc, t))

    states = torch.stack(hist[d_max:])  # [t_max, B, U+2]
    durs = torch.tensor(list(blank_durs), device=act_lens.device)
    tt = act_lens[None, :] - durs[:, None]  # [Kb, B] frame the final blank leaves from
    tc = tt.clamp(min=0)
    bi = torch.arange(b, device=act_lens.device).expand_as(tt)
    ki = torch.arange(len(blank_durs), device=act_lens.device)[:, None].expand_as(tt)
    ends = states[tc, bi, label_lens + 1] + blank_w[bi, tc, label_lens.expand_as(tt), ki]
    return torch.logsumexp(torch.where(tt >= 0, ends, torch.full_like(ends, _NEG)), 0)


def _index(seq: Sequence[int], value: int) -> int | None:
    return seq.index(value) if value in seq else None


class VectorizedTDTLoss(nn.Module):
    """TDT loss, a drop-in for NeMo's ``TDTLossNumba``/``TDTLossPytorch`` (``RNNTLoss._loss``).

    ``acts`` [B, T, U+1, V+1+len(durations)] are raw joint logits: token logits (blank at
    ``blank``, normally V) then duration logits. Token log-probs get ``- sigma`` (logit
    under-normalisation, applied to blank and labels alike); durations are log-softmaxed
    separately. ``omega`` mixes in plain RNN-T on the token logits (no sigma, no durations):
    NeMo's kernel picks RNN-T for the whole batch with probability omega per call; by
    default we return its expectation ``(1 - omega) * TDT + omega * RNNT`` (same expected
    gradient, less noise), ``sample_omega=True`` reproduces the coin flip. Reductions follow
    NeMo's ``RNNTLoss.reduce`` (None/'none' per sequence, 'mean' divides by label lengths).
    The module holds no parameters or buffers, so swapping it in leaves state_dicts alone.
    """

    def __init__(
        self,
        blank: int,
        durations: Sequence[int],
        reduction: str | None = "mean_batch",
        sigma: float = 0.0,
        omega: float = 0.0,
        fastemit_lambda: float = 0.0,
        clamp: float = -1.0,
        sample_omega: bool = False,
    ) -> None:
        super().__init__()
        durs = [int(d) for d in durations]
        if not any(d > 0 for d in durs) or min(durs) < 0 or len(set(durs)) != len(durs):
            raise ValueError(f"durations must be distinct, >= 0, with one > 0: {durations}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if fastemit_lambda or clamp > 0:
            raise NotImplementedError("fastemit_lambda and clamp are not supported")
        if not 0.0 <= omega <= 1.0:
            raise ValueError(f"omega must be in [0, 1], got {omega}")
        self.blank, self.durations, self.reduction = blank, durs, reduction
        self.sigma, self.omega, self.sample_omega = float(sigma), float(omega), sample_omega

    def forward(self, acts: Tensor, labels: Tensor, act_lens: Tensor, label_lens: Tensor) -> Tensor:
        """Negative log-likelihood of ``labels`` [B, >=U], reduced per ``self.reduction``."""
        if acts.dtype in (torch.float16, torch.bfloat16):
            acts = acts.float()
        n_dur = len(self.durations)
        token_lp = acts[..., :-n_dur].log_softmax(-1)
        dur_lp = acts[..., -n_dur:].log_softmax(-1)
        b, t_len, u1, v1 = token_lp.shape
        act_lens = act_lens.to(acts.device, torch.long)
        label_lens = label_lens.to(acts.device, torch.long)
        if int(act_lens.max()) > t_len or int(label_lens.max()) >= u1:
            raise ValueError("act_lens/label_lens exceed the acts tensor's T/U+1 dimensions")
        idx = labels[:, : u1 - 1].to(acts.device, torch.long).clamp(0, v1 - 1)
        idx = F.pad(idx, (0, u1 - 1 - idx.shape[1]))[:, None, :, None].expand(b, t_len, -1, 1)
        label_lp = token_lp[:, :, :-1].gather(-1, idx).squeeze(-1)  # [B, T, U]
        blank_lp = token_lp[..., self.blank]  # [B, T, U+1]

        w_rnnt = self.omega
        if self.sample_omega and 0.0 < self.omega < 1.0:
            w_rnnt = 1.0 if random.random() < self.omega else 0.0
        ll = acts.new_zeros(b)
        if w_rnnt < 1.0:
            pos = [k for k, d in enumerate(self.durations) if d > 0]
            blank_w = (blank_lp - self.sigma)[..., None] + dur_lp[..., pos]
            emit_w = (label_lp - self.sigma)[..., None] + dur_lp[:, :, :-1]
            ll_tdt = transducer_log_likelihood(
                blank_w,
                [self.durations[k] for k in pos],
                emit_w,
                self.durations,
                act_lens,
                label_lens,
            )
            ll = ll + (1.0 - w_rnnt) * ll_tdt
        if w_rnnt > 0.0:
            ll_rnnt = transducer_log_likelihood(
                blank_lp[..., None], [1], label_lp[..., None], [0], act_lens, label_lens
            )
            ll = ll + w_rnnt * ll_rnnt
        return _reduce(-ll, label_lens, self.reduction)


def _reduce(losses: Tensor, label_lens: Tensor, reduction: str | None) -> Tensor:
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean_batch":
        return losses.mean()
    if reduction == "mean":
        return (losses / label_lens).mean()
    if reduction == "mean_volume":
        return losses.sum() / label_lens.sum()
    return losses


def _is_nemo_tdt_loss(obj: object) -> bool:
    # by class name, so checking a model never imports NeMo's numba kernels
    return any(c.__name__ in ("TDTLossNumba", "TDTLossPytorch") for c in type(obj).__mro__)


def swap_in_vectorized_tdt(model: Any) -> bool:
    """Make a NeMo TDT model compute its loss with ``VectorizedTDTLoss`` (e.g. to train on CPU).

    Replaces ``model.loss._loss`` (NeMo's ``TDTLossNumba``/``TDTLossPytorch`` inside the
    ``RNNTLoss`` wrapper, the object the fused joint also holds) with the same durations,
    sigma, omega and reduction. ``model.cfg`` is untouched (``loss_name`` stays ``tdt``, so a
    saved ``.nemo`` restores in stock NeMo), as are ``model.wer``/decoding. The blank index
    is recomputed as the vocabulary size, because NeMo counts the duration outputs in for
    ``tdt_pytorch`` and after ``change_vocabulary``. Call again after ``change_vocabulary``.
    Returns True if the model's loss is now vectorised, False (with a log line) otherwise.
    On CUDA keep NeMo's kernel: it was about 10x faster than this loss on an H200.
    """
    joint: Any = getattr(model, "joint", None)
    wrappers = [getattr(model, "loss", None)]
    if joint is not None and getattr(joint, "fuse_loss_wer", False):
        wrappers.append(getattr(joint, "_loss", None))
    todo: list[Any] = []  # check every wrapper before changing any
    for wrapper in {id(w): w for w in wrappers if w is not None}.values():
        inner: Any = getattr(wrapper, "_loss", None)
        if isinstance(inner, VectorizedTDTLoss):
            continue
        if joint is None or not _is_nemo_tdt_loss(inner):
            log.warning("loss %s is not a NeMo TDT loss; not swapped", type(inner).__name__)
            return False
        if getattr(inner, "fastemit_lambda", 0.0) or getattr(inner, "clamp", 0.0) > 0:
            log.warning("TDT loss uses fastemit_lambda/clamp, unsupported; not swapped")
            return False
        if joint.num_extra_outputs != len(inner.durations):
            log.warning(
                "joint's %d extra outputs != durations %s", joint.num_extra_outputs, inner.durations
            )
            return False
        todo.append(wrapper)
    blank = joint.num_classes_with_blank - 1 - joint.num_extra_outputs if todo else -1
    for wrapper in todo:
        inner = wrapper._loss
        if inner.blank != blank:
            log.warning(
                "NeMo set the TDT blank to %d; using the vocabulary size %d", inner.blank, blank
            )
        wrapper._loss = VectorizedTDTLoss(
            blank=blank,
            durations=list(inner.durations),
            reduction=inner.reduction,
            sigma=float(getattr(inner, "sigma", 0.0)),
            omega=float(getattr(inner, "omega", 0.0)),
        )
    return bool(wrappers[0] is not None and isinstance(wrappers[0]._loss, VectorizedTDTLoss))
