"""VectorizedTDTLoss against NeMo's own reference TDTLossPytorch, and the model swap.

NeMo's ``TDTLossPytorch`` hard-codes ``.cuda()`` (for its alpha buffer and final
accumulator). To run it on a CPU-only machine the tests patch ``torch.Tensor.cuda`` to
return the tensor itself, nothing else: the reference code path is otherwise NeMo's own.
It also allocates its alpha buffer with the *default* dtype, so the reference runs with the
default dtype set to float64 (otherwise it silently rounds alpha to float32). NeMo's numba kernel applies ``omega`` by picking plain RNN-T for the whole
batch with probability omega; our default is that mixture's expectation, so the reference
for omega > 0 is ``(1 - omega) * TDTLossPytorch + omega * RNNTLossPytorch``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("nemo.collections.asr")

from nemo.collections.asr.losses.rnnt import RNNTLoss  # noqa: E402
from nemo.collections.asr.losses.rnnt_pytorch import (  # noqa: E402
    RNNTLossPytorch,
    TDTLossPytorch,
)

from medasr_cli.train.tdt_loss import VectorizedTDTLoss, swap_in_vectorized_tdt  # noqa: E402

V = 6  # non-blank tokens; blank is index V, durations follow


@pytest.fixture
def cpu_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neutralise the reference's ``.cuda()`` calls (the only change to NeMo's code path)."""
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)


@contextmanager
def _float64_buffers() -> Iterator[None]:
    """The reference allocates alpha with the default dtype: make that float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _inputs(durations: list[int], seed: int = 0, dtype: Any = torch.float64) -> tuple[Any, ...]:
    """B=3 with unequal act_lens/label_lens (one empty transcript) and garbage padding."""
    g = torch.Generator().manual_seed(seed)
    b, t, u = 3, 8, 5
    acts = torch.randn(b, t, u + 1, V + 1 + len(durations), generator=g, dtype=dtype)
    labels = torch.randint(0, V, (b, u), generator=g)
    act_lens, label_lens = torch.tensor([8, 5, 7]), torch.tensor([5, 2, 0])
    labels[1, 2:] = V  # padding may hold any id, blank included
    return acts, labels, act_lens, label_lens


def _reference(acts: Any, labels: Any, act_lens: Any, label_lens: Any, **kw: Any) -> Any:
    durations, sigma, omega = kw["durations"], kw.get("sigma", 0.0), kw.get("omega", 0.0)
    blank = kw.get("blank", V)
    ref = TDTLossPytorch(blank=blank, durations=durations, reduction=None, sigma=sigma)
    with _float64_buffers():
        out = ref(acts, labels, act_lens, label_lens)
        if omega:
            rnnt = RNNTLossPytorch(blank=blank, reduction=None)
            out = (1 - omega) * out + omega * rnnt(
                acts[..., : blank + 1], labels, act_lens, label_lens
            )
    return out


def _loss_and_grad(fn: Any, acts: Any, *rest: Any) -> tuple[Any, Any]:
    a = acts.clone().requires_grad_()
    out = fn(a, *rest)
    # weight the sequences differently so per-sequence gradient mix-ups would show
    weights = torch.arange(1.0, 1.0 + out.numel(), dtype=out.dtype, device=out.device)
    (out * weights).sum().backward()
    return out.detach(), a.grad


@pytest.mark.usefixtures("cpu_reference")
@pytest.mark.parametrize("durations", [[0, 1, 2, 3, 4], [0, 1, 2], [1, 2, 3], [0, 2, 3]])
@pytest.mark.parametrize("sigma", [0.0, 0.05])
@pytest.mark.parametrize("omega", [0.0, 0.1])
def test_matches_nemo_reference_float64(durations: list[int], sigma: float, omega: float) -> None:
    inputs = _inputs(durations, seed=len(durations) + int(100 * sigma) + int(10 * omega))
    ours = VectorizedTDTLoss(blank=V, durations=durations, reduction=None, sigma=sigma, omega=omega)
    kw = {"durations": durations, "sigma": sigma, "omega": omega}
    ref_val, ref_grad = _loss_and_grad(lambda *x: _reference(*x, **kw), *inputs)
    val, grad = _loss_and_grad(ours, *inputs)
    assert torch.isfinite(val).all()
    torch.testing.assert_close(val, ref_val, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-6, atol=1e-9)


@pytest.mark.usefixtures("cpu_reference")
@pytest.mark.parametrize("reduction", ["sum", "mean", "mean_batch", "mean_volume"])
def test_reductions_match_reference(reduction: str) -> None:
    durations = [0, 1, 2]
    acts, labels, act_lens, label_lens = _inputs(durations, seed=3)
    label_lens = torch.tensor([5, 2, 1])  # 'mean' divides by label length
    ref = TDTLossPytorch(blank=V, durations=durations, reduction=reduction, sigma=0.05)
    ours = VectorizedTDTLoss(blank=V, durations=durations, reduction=reduction, sigma=0.05)
    with _float64_buffers():
        expected = ref(acts, labels, act_lens, label_lens)
    torch.testing.assert_close(
        ours(acts, labels, act_lens, label_lens), expected, rtol=1e-6, atol=0
    )


@pytest.mark.usefixtures("cpu_reference")
def test_float32_close_to_float64_reference() -> None:
    durations = [0, 1, 2, 3, 4]
    acts, *rest = _inputs(durations, seed=7)
    kw = {"durations": durations, "sigma": 0.05, "omega": 0.1}
    ref_val, ref_grad = _loss_and_grad(lambda *x: _reference(*x, **kw), acts, *rest)
    ours = VectorizedTDTLoss(blank=V, reduction=None, **kw)
    val, grad = _loss_and_grad(ours, acts.float(), *rest)
    assert val.dtype == torch.float32
    torch.testing.assert_close(val.double(), ref_val, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("cpu_reference")
def test_sample_omega_picks_one_loss_per_call() -> None:
    durations = [0, 1, 2]
    acts, *rest = _inputs(durations, seed=5)
    tdt = _reference(acts, *rest, durations=durations)
    rnnt = _reference(acts, *rest, durations=durations, omega=1.0)
    always_rnnt = VectorizedTDTLoss(blank=V, durations=durations, reduction=None, omega=1.0)
    torch.testing.assert_close(always_rnnt(acts, *rest), rnnt)
    sampled = VectorizedTDTLoss(
        blank=V, durations=durations, reduction=None, omega=0.5, sample_omega=True
    )
    for _ in range(6):
        out = sampled(acts, *rest)
        assert torch.allclose(out, tdt) or torch.allclose(out, rnnt)


@pytest.mark.usefixtures("cpu_reference")
def test_drop_in_for_the_rnnt_loss_wrapper() -> None:
    """Through NeMo's RNNTLoss (keyword call, its own reduction, narrowing of padded T/U)."""
    durations = [0, 1, 2, 3]
    kwargs = {"durations": durations, "sigma": 0.05}
    acts, labels, act_lens, label_lens = _inputs(durations, seed=11)
    label_lens = torch.tensor([5, 2, 1])  # 'mean' divides by label length
    acts = torch.cat(
        [acts, torch.randn(3, 2, *acts.shape[2:], dtype=acts.dtype)], 1
    )  # 2 extra frames
    labels = torch.cat([labels, torch.full((3, 2), V)], 1)  # 2 extra label columns
    stock = RNNTLoss(
        num_classes=V, reduction="mean", loss_name="tdt_pytorch", loss_kwargs=dict(kwargs)
    )
    assert isinstance(stock._loss, TDTLossPytorch) and stock._loss.blank == V
    ours = RNNTLoss(
        num_classes=V, reduction="mean", loss_name="tdt_pytorch", loss_kwargs=dict(kwargs)
    )
    ours._loss = VectorizedTDTLoss(blank=V, durations=durations, reduction="none", sigma=0.05)

    def call(loss: Any) -> Any:
        return lambda a, *r: loss(
            log_probs=a, targets=r[0], input_lengths=r[1], target_lengths=r[2]
        )

    with _float64_buffers():
        ref_val, ref_grad = _loss_and_grad(call(stock), acts, labels, act_lens, label_lens)
    val, grad = _loss_and_grad(call(ours), acts, labels, act_lens, label_lens)
    # the wrapper casts the joint to float32 for both (RNNT_LOSS_RESOLVER's force_float32)
    torch.testing.assert_close(val.double(), ref_val, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    assert ours._loss.reduction == "none"  # the wrapper restores it after each call


@pytest.mark.parametrize(
    "kwargs",
    [
        {"durations": [0]},
        {"durations": [0, 1, 1]},
        {"durations": [0, 1], "fastemit_lambda": 0.1},
        {"durations": [0, 1], "clamp": 1.0},
        {"durations": [0, 1], "omega": 1.5},
        {"durations": [0, 1], "reduction": "avg"},
    ],
)
def test_rejects_unsupported_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises((ValueError, NotImplementedError)):
        VectorizedTDTLoss(blank=V, **kwargs)


# --- the swap on a real (tiny) NeMo TDT model -----------------------------------------

LABELS = list("abcdefgh ")
DURATIONS = [0, 1, 2, 3]


def _tiny_tdt_model(loss_name: str = "tdt", fused: bool = False) -> Any:
    from nemo.collections.asr.models import EncDecRNNTModel
    from omegaconf import OmegaConf

    n = len(LABELS)
    cfg = {
        "labels": LABELS,
        "sample_rate": 16000,
        "model_defaults": {"enc_hidden": 16, "pred_hidden": 16},
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "features": 16,
            "n_fft": 256,
            "window_size": 0.016,
            "window_stride": 0.01,
            "dither": 0.0,
        },
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConvASREncoder",
            "feat_in": 16,
            "activation": "relu",
            "conv_mask": True,
            "jasper": [
                {
                    "filters": 16,
                    "repeat": 1,
                    "kernel": [3],
                    "stride": [2],
                    "dilation": [1],
                    "dropout": 0.0,
                    "residual": False,
                    "separable": False,
                }
            ],
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "vocab_size": n,
            "blank_as_pad": True,
            "prednet": {"pred_hidden": 16, "pred_rnn_layers": 1},
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "num_classes": n,
            "num_extra_outputs": len(DURATIONS),
            "vocabulary": LABELS,
            "log_softmax": False,
            "fuse_loss_wer": fused,
            "fused_batch_size": 1 if fused else None,
            "jointnet": {"joint_hidden": 16, "activation": "relu"},
        },
        "decoding": {
            "strategy": "greedy_batch",
            "model_type": "tdt",
            "durations": DURATIONS,
            "greedy": {"max_symbols": 5},
        },
        "loss": {
            "loss_name": loss_name,
            f"{loss_name}_kwargs": {
                "durations": DURATIONS,
                "sigma": 0.05,
                "omega": 0.1,
                "fastemit_lambda": 0.0,
                "clamp": -1.0,
            },
        },
    }
    if loss_name == "tdt_pytorch":  # NeMo's tdt_pytorch takes no omega/fastemit/clamp
        cfg["loss"]["tdt_pytorch_kwargs"] = {"durations": DURATIONS, "sigma": 0.05}
    torch.manual_seed(0)
    return EncDecRNNTModel(cfg=OmegaConf.create(cfg))


def _batch() -> tuple[Any, ...]:
    g = torch.Generator().manual_seed(1)
    signal, signal_len = torch.randn(2, 8000, generator=g), torch.tensor([8000, 6000])
    tokens = torch.randint(0, len(LABELS), (2, 6), generator=g)
    return signal, signal_len, tokens, torch.tensor([6, 4])


def _joint_and_loss(model: Any) -> tuple[Any, Any, Any]:
    """What EncDecRNNTModel.training_step does when the joint is not fused."""
    signal, signal_len, tokens, token_len = _batch()
    encoded, encoded_len = model.forward(input_signal=signal, input_signal_length=signal_len)
    decoder, target_len, _ = model.decoder(targets=tokens, target_length=token_len)
    joint = model.joint(encoder_outputs=encoded, decoder_outputs=decoder)
    loss = model.loss(
        log_probs=joint, targets=tokens, input_lengths=encoded_len, target_lengths=target_len
    )
    return loss, joint, encoded_len


def test_swap_on_tiny_nemo_tdt_model(cpu_reference: None, tmp_path: Any) -> None:
    model = _tiny_tdt_model()
    keys = list(model.state_dict())
    with pytest.raises(ValueError, match="non CUDA"):  # why the swap exists
        _joint_and_loss(model)

    assert swap_in_vectorized_tdt(model) is True
    inner = model.loss._loss
    assert isinstance(inner, VectorizedTDTLoss)
    assert (inner.blank, inner.durations, inner.sigma, inner.omega) == (
        len(LABELS),
        DURATIONS,
        0.05,
        0.1,
    )
    assert model.cfg.loss.loss_name == "tdt" and "tdt_kwargs" in model.cfg.loss
    assert list(model.state_dict()) == keys  # nothing new to save or load
    assert swap_in_vectorized_tdt(model) is True  # idempotent

    loss, joint, encoded_len = _joint_and_loss(model)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.joint.joint_net[-1].weight.grad.abs().sum() > 0
    # the value is NeMo's reference TDT/RNN-T mixture on the same joint output
    _, _, tokens, token_len = _batch()
    t = int(encoded_len.max())
    ref = _reference(
        joint.detach()[:, :t].double(),
        tokens,
        encoded_len,
        token_len,
        blank=len(LABELS),
        durations=DURATIONS,
        sigma=0.05,
        omega=0.1,
    )
    torch.testing.assert_close(loss.detach().double(), ref.mean(), rtol=1e-5, atol=1e-5)

    # a .nemo saved after the swap restores in stock NeMo with the stock tdt loss
    from nemo.collections.asr.models import EncDecRNNTModel

    model.save_to(str(tmp_path / "tiny.nemo"))
    restored = EncDecRNNTModel.restore_from(str(tmp_path / "tiny.nemo"), map_location="cpu")
    assert restored.cfg.loss.loss_name == "tdt"
    assert type(restored.loss._loss).__name__ == "TDTLossNumba"


def test_swap_fixes_nemo_blank_index_for_tdt_pytorch() -> None:
    model = _tiny_tdt_model(loss_name="tdt_pytorch")
    # NeMo only subtracts the duration outputs for loss_name == 'tdt'
    assert model.loss._loss.blank == len(LABELS) + len(DURATIONS)
    assert swap_in_vectorized_tdt(model) is True
    assert model.loss._loss.blank == len(LABELS)
    assert model.cfg.loss.loss_name == "tdt_pytorch"


def test_swap_reaches_the_fused_joint() -> None:
    model = _tiny_tdt_model(fused=True)
    wer = model.joint.wer
    assert swap_in_vectorized_tdt(model) is True
    assert isinstance(model.joint.loss._loss, VectorizedTDTLoss)
    assert model.joint.wer is wer and model.wer is wer
    signal, signal_len, tokens, token_len = _batch()
    encoded, encoded_len = model.forward(input_signal=signal, input_signal_length=signal_len)
    decoder, target_len, _ = model.decoder(targets=tokens, target_length=token_len)
    loss, *_ = model.joint(
        encoder_outputs=encoded,
        decoder_outputs=decoder,
        encoder_lengths=encoded_len,
        transcripts=tokens,
        transcript_lengths=target_len,
        compute_wer=False,
    )
    loss.backward()
    assert torch.isfinite(loss)


def test_swap_declines_a_non_tdt_model() -> None:
    class Plain:
        loss = RNNTLoss(num_classes=V, loss_name="pytorch")

    assert swap_in_vectorized_tdt(Plain()) is False


@pytest.mark.gpu
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_nemo_numba_kernel() -> None:
    durations = [0, 1, 2, 3, 4]
    acts, labels, act_lens, label_lens = _inputs(durations, seed=13, dtype=torch.float32)
    ours = VectorizedTDTLoss(blank=V, durations=durations, reduction=None, sigma=0.05)
    cpu_val, cpu_grad = _loss_and_grad(ours, acts, labels, act_lens, label_lens)
    dev = [x.cuda() for x in (acts, labels, act_lens, label_lens)]
    val, grad = _loss_and_grad(ours, *dev)
    torch.testing.assert_close(val.cpu(), cpu_val, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.cpu(), cpu_grad, rtol=1e-4, atol=1e-5)
    stock = RNNTLoss(
        num_classes=V,
        reduction=None,
        loss_name="tdt",
        loss_kwargs={"durations": durations, "sigma": 0.05},
    )
    ref_val, ref_grad = _loss_and_grad(
        lambda a, *r: stock(log_probs=a, targets=r[0], input_lengths=r[1], target_lengths=r[2]),
        *dev,
    )
    torch.testing.assert_close(val, ref_val, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-5)
