"""Caffe nets for the Caffe frontend tests, written as real files, and the same nets in PyTorch (the oracle).

A net is a list of :class:`L` (name, type, bottoms, tops, parameters, blobs). :func:`write` renders it as a
``.prototxt`` (text written here, not by bnncc's schema) and a ``.caffemodel`` (protobuf wire format encoded here
with BVLC caffe.proto's field numbers: NetParameter.layer = 100, LayerParameter.name = 1, type = 2, blobs = 7,
BlobProto.shape = 7, data = 5, num/channels/height/width = 1-4, BlobShape.dim = 1), so a wrong field number in
bnncc's schema cannot cancel out. :func:`torch_forward` computes the net with ``torch.nn.functional``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class L:
    name: str
    type: str
    bottom: list[str]
    top: list[str]
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. {"convolution_param": {...}}
    blobs: list[np.ndarray] = field(default_factory=list)
    legacy_blobs: bool = False  # blobs with num/channels/height/width instead of a shape


# ------------------------------------------------------------------------------------------- protobuf wire
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _blob(a: np.ndarray, legacy: bool) -> bytes:
    data = _ld(5, np.ascontiguousarray(a, "<f4").tobytes())
    if legacy:
        dims = (1,) * (4 - a.ndim) + a.shape
        return b"".join(_varint(i << 3) + _varint(d) for i, d in enumerate(dims, 1)) + data
    return _ld(7, _ld(1, b"".join(_varint(d) for d in a.shape))) + data


def caffemodel_bytes(layers: list[L]) -> bytes:
    out = b""
    for x in layers:
        body = _ld(1, x.name.encode()) + _ld(2, x.type.encode())
        body += b"".join(_ld(7, _blob(b, x.legacy_blobs)) for b in x.blobs)
        out += _ld(100, body)
    return out


# ------------------------------------------------------------------------------------------- text format
ENUMS = {"MAX", "AVE", "STOCHASTIC", "CEIL", "FLOOR", "PROD", "SUM", "TRAIN", "TEST"}  # written bare


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v if v in ENUMS else f'"{v}"'
    return repr(v)


def _fields(d: dict[str, Any], indent: str) -> str:
    lines = []
    for k, v in d.items():
        for item in (v if isinstance(v, list) else [v]):
            if isinstance(item, dict):
                lines.append(f"{indent}{k} {{\n{_fields(item, indent + '  ')}{indent}}}\n")
            else:
                lines.append(f"{indent}{k}: {_value(item)}\n")
    return "".join(lines)


def prototxt(layers: list[L], name: str = "net", head: str = "") -> str:
    out = f'name: "{name}"\n{head}'
    for x in layers:
        d: dict[str, Any] = {"name": x.name, "type": x.type, "bottom": x.bottom, "top": x.top, **x.params}
        out += "layer {\n" + _fields(d, "  ") + "}\n"
    return out


def write(layers: list[L], directory: Path, stem: str = "net", head: str = "") -> tuple[Path, Path]:
    proto, weights = directory / f"{stem}.prototxt", directory / f"{stem}.caffemodel"
    proto.write_text(prototxt(layers, stem, head))
    weights.write_bytes(caffemodel_bytes(layers))  # every layer, as Caffe saves a net
    return proto, weights


def input_layer(shape: tuple[int, ...], top: str = "data") -> L:
    return L("input", "Input", [], [top], {"input_param": {"shape": {"dim": list(shape)}}})


# ------------------------------------------------------------------------------------------- builders
class Net:
    """Appends layers with random weights (seeded) and non-trivial BatchNorm/Scale statistics."""

    def __init__(self, shape: tuple[int, ...], seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.layers = [input_layer(shape)]
        self.channels = {"data": shape[1]}

    def add(self, layer: L, channels: int | None = None) -> str:
        self.layers.append(layer)
        for t in layer.top:
            self.channels[t] = channels if channels is not None else self.channels[layer.bottom[0]]
        return layer.top[0]

    def conv(self, name, x, out, k, stride=1, pad=0, group=1, dilation=1, bias=True, binary=False) -> str:
        cin = self.channels[x]
        w = self.rng.standard_normal((out, cin // group, k, k)).astype(np.float32) * np.sqrt(2 / (cin // group * k * k))
        if binary:  # α·sign(W) per output channel, as an XNOR-Net fork deploys it
            w = (np.abs(w).mean(axis=(1, 2, 3), keepdims=True) * np.where(w < 0, -1.0, 1.0)).astype(np.float32)
        p = {"num_output": out, "kernel_size": k, "bias_term": bias}
        if stride != 1:
            p["stride"] = stride
        if pad:
            p["pad"] = pad
        if group != 1:
            p["group"] = group
        if dilation != 1:
            p["dilation"] = dilation
        blobs = [w] + ([self.rng.standard_normal(out).astype(np.float32) * 0.1] if bias else [])
        return self.add(L(name, "Convolution", [x], [name], {"convolution_param": p}, blobs), out)

    def bn_scale(self, name, x) -> str:
        c = self.channels[x]
        factor = np.float32(self.rng.uniform(0.5, 2.0))  # the stored sums are mean · factor
        mean = self.rng.standard_normal(c).astype(np.float32) * 0.2
        var = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        self.add(L(f"{name}_bn", "BatchNorm", [x], [x], {"batch_norm_param": {"use_global_stats": True}},
                   [mean * factor, var * factor, np.array([factor], np.float32)]))
        gamma = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        beta = self.rng.standard_normal(c).astype(np.float32) * 0.1
        self.add(L(f"{name}_scale", "Scale", [x], [x], {"scale_param": {"bias_term": True}}, [gamma, beta]))
        return x

    def relu(self, name, x) -> str:
        return self.add(L(name, "ReLU", [x], [x]))

    def sign(self, name, x) -> str:
        return self.add(L(name, "BinaryActive", [x], [name]))

    def pool(self, name, x, method="MAX", k=None, stride=None, pad=None, global_pooling=False, floor=False) -> str:
        p: dict[str, Any] = {"pool": method}
        if global_pooling:
            p["global_pooling"] = True
        else:
            p["kernel_size"] = k
        if stride:
            p["stride"] = stride
        if pad:
            p["pad"] = pad
        if floor:
            p["round_mode"] = "FLOOR"
        return self.add(L(name, "Pooling", [x], [name], {"pooling_param": p}))

    def eltwise(self, name, xs, op="SUM", coeff=None) -> str:
        p: dict[str, Any] = {"operation": op}
        if coeff:
            p["coeff"] = list(coeff)
        return self.add(L(name, "Eltwise", list(xs), [name], {"eltwise_param": p}))

    def fc(self, name, x, out, k_in) -> str:
        w = self.rng.standard_normal((out, k_in)).astype(np.float32) / np.sqrt(k_in)
        b = self.rng.standard_normal(out).astype(np.float32) * 0.1
        return self.add(L(name, "InnerProduct", [x], [name], {"inner_product_param": {"num_output": out}}, [w, b]),
                        out)


def resnet18(size: int = 32, widths=(16, 32, 64, 128), binary: bool = False, classes: int = 10, seed: int = 0,
             batch: int = 1) -> tuple[list[L], int]:
    """A ResNet-18 deploy net as Caffe writes it (conv → BatchNorm → Scale → ReLU, Eltwise shortcuts, 1×1
    projection shortcuts, MAX pool 3×3/2 with ceil rounding, global AVE pool, InnerProduct). ``binary``: the
    Bi-Real form, every 3×3 conv of the blocks binary (BinaryActive → ±α conv → BN/Scale, shortcut around each).
    Returns (layers, binary conv count)."""
    n = Net((batch, 3, size, size), seed)
    x = n.conv("conv1", "data", widths[0], 7, stride=2, pad=3, bias=False)
    x = n.relu("conv1_relu", n.bn_scale("conv1", x))
    x = n.pool("pool1", x, "MAX", k=3, stride=2)
    binary_convs = 0
    for stage, width in enumerate(widths):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            name = f"res{stage + 2}{'ab'[block]}"
            shortcut = x
            if stride != 1 or n.channels[x] != width:
                shortcut = n.bn_scale(f"{name}_branch1", n.conv(f"{name}_branch1", x, width, 1, stride=stride,
                                                                bias=False))
            if binary:
                y = n.conv(f"{name}_branch2a", n.sign(f"{name}_sign2a", x), width, 3, stride=stride, pad=1,
                           bias=False, binary=True)
                y = n.bn_scale(f"{name}_branch2a", y)
                mid = n.eltwise(f"{name}_mid", [y, shortcut])
                y = n.conv(f"{name}_branch2b", n.sign(f"{name}_sign2b", mid), width, 3, pad=1, bias=False,
                           binary=True)
                y = n.bn_scale(f"{name}_branch2b", y)
                x = n.eltwise(name, [y, mid])
                binary_convs += 2
            else:
                y = n.conv(f"{name}_branch2a", x, width, 3, stride=stride, pad=1, bias=False)
                y = n.relu(f"{name}_branch2a_relu", n.bn_scale(f"{name}_branch2a", y))
                y = n.bn_scale(f"{name}_branch2b", n.conv(f"{name}_branch2b", y, width, 3, pad=1, bias=False))
                x = n.relu(f"{name}_relu", n.eltwise(name, [y, shortcut]))
    x = n.pool("pool5", x, "AVE", global_pooling=True)
    n.fc("fc", x, classes, n.channels[x])
    return n.layers, binary_convs


# ------------------------------------------------------------------------------------------- the oracle
def torch_forward(layers: list[L], x: np.ndarray, taps: dict[str, list] | None = None) -> dict[str, np.ndarray]:
    """Every top blob of the net on input ``x`` (NCHW), computed by PyTorch; ``taps`` receives the input of each
    BinaryActive layer (name → values) when given."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    blobs: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for layer in layers:
            ins = [blobs[b] for b in layer.bottom]
            w = [torch.from_numpy(b) for b in layer.blobs]
            p = next(iter(layer.params.values()), {}) if layer.params else {}
            t = layer.type
            if t == "Input":
                y = torch.from_numpy(x)
            elif t == "Convolution":
                pad = (p.get("pad_h", p.get("pad", 0)), p.get("pad_w", p.get("pad", 0)))
                y = F.conv2d(ins[0], w[0], w[1] if len(w) > 1 else None, stride=p.get("stride", 1),
                             padding=pad, dilation=p.get("dilation", 1), groups=p.get("group", 1))
            elif t == "BatchNorm":
                f = 0.0 if float(w[2][0]) == 0 else 1.0 / float(w[2][0])
                y = F.batch_norm(ins[0], w[0] * f, w[1] * f, training=False, eps=p.get("eps", 1e-5))
            elif t == "Scale":
                axis = p.get("axis", 1)
                shape = [1] * axis + list(w[0].shape) + [1] * (ins[0].dim() - axis - w[0].dim())
                if p.get("num_axes") == 0:
                    shape = [1] * ins[0].dim()
                y = ins[0] * w[0].reshape(shape) + (w[1].reshape(shape) if len(w) > 1 else 0)
            elif t == "ReLU":
                y = F.leaky_relu(ins[0], p.get("negative_slope", 0.0))
            elif t == "PReLU":
                y = F.prelu(ins[0], w[0])
            elif t == "BinaryActive":
                if taps is not None:
                    taps[layer.name] = ins[0].numpy().copy()
                y = torch.where(ins[0] >= 0, 1.0, -1.0)
            elif t == "Pooling":
                y = _torch_pool(ins[0], p)
            elif t == "Eltwise":
                op = p.get("operation", "SUM")
                coeff = p.get("coeff", [1.0] * len(ins))
                y = ins[0] * coeff[0] if op == "SUM" else ins[0]
                for c, v in zip(coeff[1:], ins[1:], strict=True):
                    y = y + c * v if op == "SUM" else (y * v if op == "PROD" else torch.maximum(y, v))
            elif t == "InnerProduct":
                weight = w[0].T if p.get("transpose") else w[0]
                y = F.linear(ins[0].flatten(p.get("axis", 1)), weight, w[1] if len(w) > 1 else None)
            elif t == "Concat":
                y = torch.cat(ins, dim=p.get("axis", 1))
            elif t == "Softmax":
                y = torch.softmax(ins[0], dim=p.get("axis", 1))
            elif t == "Flatten":
                y = ins[0].flatten(p.get("axis", 1), p.get("end_axis", -1))
            elif t in ("Dropout", "Split"):
                y = ins[0]
            elif t == "Sigmoid":
                y = torch.sigmoid(ins[0])
            elif t == "TanH":
                y = torch.tanh(ins[0])
            else:
                raise NotImplementedError(t)
            for top in layer.top:
                blobs[top] = y
    return {k: v.numpy() for k, v in blobs.items()}


def _torch_pool(x, p: dict[str, Any]):
    import torch.nn.functional as F  # noqa: N812

    if p.get("global_pooling"):
        k, s, pad = tuple(x.shape[2:]), 1, 0
    else:
        k, s, pad = p["kernel_size"], p.get("stride", 1), p.get("pad", 0)
    ceil = p.get("round_mode", "CEIL") == "CEIL"
    if p.get("pool", "MAX") == "MAX":
        return F.max_pool2d(x, k, s, pad, ceil_mode=ceil)
    return F.avg_pool2d(x, k, s, pad, ceil_mode=ceil, count_include_pad=True)


def outputs(layers: list[L]) -> list[str]:
    """The net's output blobs as Caffe defines them: tops no later layer reads, in order."""
    read = {b for x in layers for b in x.bottom}
    return list(dict.fromkeys(t for x in layers for t in x.top if t not in read))


def float32(a) -> bytes:
    return struct.pack("<f", float(a))
