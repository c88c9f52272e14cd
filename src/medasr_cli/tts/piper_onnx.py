"""Rewrite a Piper (VITS) ONNX voice so that it is reproducible and faster on CPU.

1. Reproducible: a Piper voice draws Gaussian noise inside the graph
   (``RandomNormalLike`` in the duration predictor and the flow). onnxruntime
   seeds those ops once per session, so the same text gives different audio on
   each call and in each process. Each such node becomes
   ``Reshape(Slice(noise_k, 0, numel), shape)`` where ``noise_k`` is a new flat
   graph input that we fill from a seeded numpy generator: the audio then
   depends only on (text, params, seed). The element count used is added as a
   graph output (``noise_k/numel``) so buffers can be sized to fit.
2. Faster: each strided 1-D ``ConvTranspose`` (the HiFi-GAN upsamplers) becomes
   its sub-pixel form, one ``Conv`` with ``stride x`` output channels whose
   phases are interleaved (same arithmetic), and every 1-D ``Conv`` becomes the
   equivalent 2-D op on a height-1 tensor, which onnxruntime's NCHWc layout
   optimiser runs with its blocked AVX2/AVX-512 kernels. Together about 1.35x
   faster on an x86-64 core; the output equals the original graph's to float
   rounding (tested).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

NOISE_PREFIX = "medasr_noise_"
_AXIS = "medasr_axis_2"


def _noise_nodes(helper: Any, node: Any, name: str) -> list[Any]:
    shape, numel, zero = f"{name}/shape", f"{name}/numel", f"{name}/zero"
    flat = f"{name}/flat"
    return [
        helper.make_node("Shape", [node.input[0]], [shape]),
        helper.make_node("ReduceProd", [shape], [numel], keepdims=1),
        helper.make_node("Sub", [numel, numel], [zero]),
        helper.make_node("Slice", [name, zero, numel], [flat]),
        helper.make_node("Reshape", [flat, shape], [node.output[0]]),
    ]


def feed_noise_from_inputs(model: Any) -> list[str]:
    """Replace ``RandomNormalLike`` nodes by slices of new flat inputs; return their names."""
    from onnx import TensorProto, helper

    graph = model.graph
    nodes: list[Any] = []
    names: list[str] = []
    for node in graph.node:
        attrs = {a.name for a in node.attribute}
        if node.op_type != "RandomNormalLike" or attrs - {"dtype", "seed"}:
            nodes.append(node)
            continue
        name = f"{NOISE_PREFIX}{len(names)}"
        nodes += _noise_nodes(helper, node, name)
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"]))
        # how much noise this run used: lets the caller size the next buffers
        graph.output.append(helper.make_tensor_value_info(f"{name}/numel", TensorProto.INT64, [1]))
        names.append(name)
    del graph.node[:]
    graph.node.extend(nodes)
    return names


def _attrs_2d(helper: Any, node: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        if a.name in ("kernel_shape", "strides", "dilations"):
            value = [1, *value]
        elif a.name == "output_padding":
            value = [0, *value]
        elif a.name == "pads":
            value = [0, value[0], 0, value[1]]
        attrs[a.name] = value
    return attrs


def conv1d_as_conv2d(model: Any) -> int:
    """Run 1-D convolutions as 2-D ones on ``[N, C, 1, T]``; return how many were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    graph.initializer.append(numpy_helper.from_array(np.array([2], dtype=np.int64), _AXIS))
    nodes: list[Any] = []
    count = 0
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type in ("Conv", "ConvTranspose") else None
        if weight is None or len(weight.dims) != 3:
            nodes.append(node)
            continue
        w2 = f"{weight.name}/2d"
        if w2 not in inits:
            arr = numpy_helper.to_array(weight)[:, :, None, :]
            inits[w2] = numpy_helper.from_array(arr, w2)
            graph.initializer.append(inits[w2])
        x2, y2 = f"{node.output[0]}/x2d", f"{node.output[0]}/y2d"
        nodes += [
            helper.make_node("Unsqueeze", [node.input[0], _AXIS], [x2]),
            helper.make_node(
                node.op_type,
                [x2, w2, *node.input[2:]],
                [y2],
                name=f"{node.name or node.output[0]}/2d",
                **_attrs_2d(helper, node),
            ),
            helper.make_node("Squeeze", [y2, _AXIS], [node.output[0]]),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for n in graph.node for name in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return count


def _const(graph: Any, name: str, values: list[int]) -> str:
    from onnx import numpy_helper

    graph.initializer.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
    return name


def _phase_weights(w: np.ndarray, stride: int) -> np.ndarray:
    """ConvTranspose weights [Cin, Cout, K] -> Conv weights [stride*Cout, Cin, ceil(K/stride)].

    Output phase r of the transposed convolution is a plain convolution with
    taps ``w[..., j*stride + r]`` in reverse order.
    """
    cin, cout, k = w.shape
    taps = -(-k // stride)
    v = np.zeros((stride * cout, cin, taps), dtype=w.dtype)
    for r in range(stride):
        for j in range(taps):
            kk = (taps - 1 - j) * stride + r
            if kk < k:
                v[r * cout : (r + 1) * cout, :, j] = w[:, :, kk].T
    return v


def _subpixel_nodes(helper: Any, graph: Any, node: Any, w: np.ndarray, attrs: dict) -> list[Any]:
    from onnx import numpy_helper

    _, cout, k = w.shape
    stride, (pad0, pad1) = int(attrs["strides"][0]), attrs.get("pads", [0, 0])
    taps = -(-k // stride)
    base = node.output[0]
    graph.initializer.append(numpy_helper.from_array(_phase_weights(w, stride), f"{base}/sp_w"))
    inputs = [node.input[0], f"{base}/sp_w"]
    if len(node.input) > 2 and node.input[2]:
        bias = numpy_helper.to_array(next(t for t in graph.initializer if t.name == node.input[2]))
        graph.initializer.append(numpy_helper.from_array(np.tile(bias, stride), f"{base}/sp_b"))
        inputs.append(f"{base}/sp_b")
    tail = taps * stride - k + pad1  # samples past the transposed conv's output length
    z, z1, z2, z3 = (f"{base}/sp_{i}" for i in range(4))
    return [
        helper.make_node("Conv", inputs, [z], name=f"{base}/sp_conv", kernel_shape=[taps],
                         pads=[taps - 1, taps - 1], strides=[1], dilations=[1], group=1),
        helper.make_node("Reshape", [z, _const(graph, f"{base}/sp_s1", [0, stride, cout, -1])], [z1]),
        helper.make_node("Transpose", [z1], [z2], perm=[0, 2, 3, 1]),  # interleave the phases
        helper.make_node("Reshape", [z2, _const(graph, f"{base}/sp_s2", [0, cout, -1])], [z3]),
        helper.make_node("Slice", [z3, _const(graph, f"{base}/sp_a", [pad0]),
                                   _const(graph, f"{base}/sp_e", [-tail if tail else 2**62]),
                                   _const(graph, f"{base}/sp_x", [2])], [node.output[0]]),
    ]  # fmt: skip


def transposed_conv_as_subpixel(model: Any) -> int:
    """Rewrite plain strided 1-D ``ConvTranspose`` nodes as sub-pixel ``Conv``; return the count."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    nodes: list[Any] = []
    count = 0
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "ConvTranspose" else None
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (
            weight is not None and len(weight.dims) == 3 and attrs.get("group", 1) == 1
            and list(attrs.get("dilations", [1])) == [1] and "strides" in attrs
            and not {"output_padding", "output_shape", "auto_pad"} & set(attrs)
        )  # fmt: skip
        if not plain or weight is None:
            nodes.append(node)
            continue
        nodes += _subpixel_nodes(helper, graph, node, numpy_helper.to_array(weight), attrs)
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def prepare_piper_model(model_path: str | Path, fast_conv: bool = True) -> tuple[bytes, list[str]]:
    """Load a Piper ``.onnx``, apply both rewrites; return (serialized model, noise inputs)."""
    import onnx

    model = onnx.load(str(model_path))
    names = feed_noise_from_inputs(model)
    if not names:
        log.debug("%s: no RandomNormalLike nodes; the voice is deterministic already", model_path)
    if fast_conv:
        upsamplers = transposed_conv_as_subpixel(model)
        convs = conv1d_as_conv2d(model)
        log.debug("%s: %d sub-pixel upsamplers, %d 2-D convs", model_path, upsamplers, convs)
    return model.SerializeToString(), names
