"""Forward+backward time of VectorizedTDTLoss vs NeMo's CPU options, as JSON lines.

Same random inputs for all (batch 8, 100 frames, 30 labels, vocabulary 128, durations
[0, 1, 2, 3, 4], float32, 2 threads):

* ``vectorized_tdt``: ours (median of ``--repeats`` calls after one warm-up);
* ``nemo_tdt_pytorch_reference``: NeMo's ``TDTLossPytorch`` with its hard-coded
  ``.cuda()`` neutralised (``torch.Tensor.cuda`` patched to return self); one call: about
  5.5 minutes on 2 idle cores. ``--reference-batch N`` times it on the first N sequences
  and scales linearly to the batch (the record then says ``"scaled_from_batch": N``). Its
  backward grows faster than linearly with the batch (13 s, 43 s, 118 s, 323 s for 1, 2,
  4, 8 sequences), so a scaled figure understates the reference's time;
* ``nemo_warprnnt_numba_cpu``: NeMo's ``RNNTLoss(loss_name='warprnnt_numba')`` on CPU (plain
  RNN-T, no durations: acts [B, T, U+1, V+1]); median of 2 calls after one warm-up.

Run: ``python bench/tdt_loss.py`` (add ``--skip-reference`` for a quick look); on a busy
machine prefix ``OMP_WAIT_POLICY=PASSIVE``, else idle-spinning OpenMP workers compete with
the main thread and every figure gets several times slower.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from medasr_cli.train.tdt_loss import VectorizedTDTLoss

B, T, U, V = 8, 100, 30, 128
DURATIONS = [0, 1, 2, 3, 4]
SIGMA = 0.05


def _time_fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], acts: torch.Tensor) -> float:
    a = acts.clone().requires_grad_()
    start = time.perf_counter()
    fn(a).sum().backward()
    return time.perf_counter() - start


def _median(fn: Callable[[torch.Tensor], torch.Tensor], acts: torch.Tensor, repeats: int) -> float:
    _time_fwd_bwd(fn, acts)  # warm-up (allocator, numba JIT)
    return statistics.median(_time_fwd_bwd(fn, acts) for _ in range(repeats))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--reference-batch", type=int, default=B)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args(argv)

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(B, T, U + 1, V + 1 + len(DURATIONS), generator=g)
    labels = torch.randint(0, V, (B, U), generator=g)
    act_lens = torch.full((B,), T, dtype=torch.long)
    label_lens = torch.full((B,), U, dtype=torch.long)
    common: dict[str, Any] = {"B": B, "T": T, "U": U, "V": V, "durations": DURATIONS}
    common.update(dtype="float32", threads=torch.get_num_threads(), torch=torch.__version__)
    # On a shared CPU, spinning OpenMP workers (the default) can slow every impl here 5-10x.
    common["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")

    ours = VectorizedTDTLoss(blank=V, durations=DURATIONS, reduction="sum", sigma=SIGMA)
    ours_s = _median(lambda a: ours(a, labels, act_lens, label_lens), acts, args.repeats)
    records: list[dict[str, Any]] = [
        {"impl": "vectorized_tdt", "fwd_bwd_s": ours_s, "repeats": args.repeats}
    ]

    from nemo.collections.asr.losses.rnnt import RNNTLoss

    numba = RNNTLoss(num_classes=V, reduction="sum", loss_name="warprnnt_numba")
    rnnt_acts = acts[..., : V + 1].contiguous()

    def numba_fn(a: torch.Tensor) -> torch.Tensor:
        return numba(log_probs=a, targets=labels, input_lengths=act_lens, target_lengths=label_lens)

    numba_s = _median(numba_fn, rnnt_acts, 2)
    records.append({"impl": "nemo_warprnnt_numba_cpu", "fwd_bwd_s": numba_s, "repeats": 2})

    if not args.skip_reference:
        from nemo.collections.asr.losses.rnnt_pytorch import TDTLossPytorch

        torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
        ref = TDTLossPytorch(blank=V, durations=DURATIONS, reduction="sum", sigma=SIGMA)
        n = args.reference_batch
        ref_s = _time_fwd_bwd(
            lambda a: ref(a, labels[:n], act_lens[:n], label_lens[:n]), acts[:n].contiguous()
        )
        rec: dict[str, Any] = {"impl": "nemo_tdt_pytorch_reference", "repeats": 1}
        if n != B:
            rec["scaled_from_batch"] = n
            rec["measured_s"] = ref_s
        rec["fwd_bwd_s"] = ref_s * B / n
        records.append(rec)

    for rec in records:
        rec["speedup_vs_reference"] = None
        for r in records:
            if r["impl"] == "nemo_tdt_pytorch_reference":
                rec["speedup_vs_reference"] = round(r["fwd_bwd_s"] / rec["fwd_bwd_s"], 1)
        rec["speedup_vs_numba_rnnt"] = round(numba_s / rec["fwd_bwd_s"], 2)
        rec["fwd_bwd_s"] = round(rec["fwd_bwd_s"], 4)
        print(json.dumps({**rec, **common}), flush=True)


if __name__ == "__main__":
    main()
