"""int8 fake quantization in Keras models (quantization-aware training output): the ``TFOpLambda`` layers of
``tf.quantization.fake_quant_with_min_max_{vars,args,vars_per_channel}``, onto bnncc's int8 operators.

Each fake-quant layer becomes TF's exact arithmetic (:mod:`bnncc.relay_ops.fake_quant`; its float output is
bit-identical with TF's). A per-tensor fake-quant of at most 8 bits feeding a ``Conv2D`` (groups = 1) or
``Dense`` — directly or through ``Flatten``, ``Reshape``, ``MaxPooling2D`` or ``ZeroPadding2D``, which map codes to
codes — whose kernel lies on a symmetric int8 grid per output channel (every weight exactly float32(k · s[o])
with k in [−128, 127], as fake-quantized weights are) makes that layer int8: the fake-quant's uint8 codes (zero
point = the code of real 0, so zero padding stays exact) → ``bnncc.qdense`` / ``im2col`` → int32 →
``dequantize`` (· s_x·s[o]) → bias and activation in float, as PTQ emits (:mod:`bnncc.ptq.rewrite`). Any other
layer after a fake-quant stays float (logged, with the reason).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tvm import relax

from .. import reference
from ..relay_ops import fake_quant as fq
from ..relay_ops.qconv2d import dequantize, qconv2d
from ..relay_ops.qdense import qdense
from .base import LayerBuilder, Unsupported, shape_of

log = logging.getLogger(__name__)

# TF function → (positional parameter names after the input, defaults, whether it divides by the scale)
OPS: dict[str, tuple[tuple[str, ...], dict[str, Any], bool]] = {
    "fake_quant_with_min_max_vars": (("min", "max", "num_bits", "narrow_range"), {}, True),
    "fake_quant_with_min_max_vars_per_channel": (("min", "max", "num_bits", "narrow_range"), {}, False),
    "fake_quant_with_min_max_args": (("min", "max", "num_bits", "narrow_range"), {"min": -6.0, "max": 6.0},
                                     False),
}
_F32_TINY = np.finfo(np.float32).tiny


@dataclass(frozen=True)
class OpCall:
    """One ``TFOpLambda`` node: the TF function (``symbol``), its call arguments beside the input tensor, and
    how many Keras tensors it reads (a computed min/max would be a second one)."""

    symbol: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    tensor_inputs: int = 1


def op_name(symbol: str) -> str | None:
    """The fake-quant function a TFOpLambda symbol names (``quantization.…``, ``compat.v1.…``), else None."""
    name = str(symbol).rsplit(".", 1)[-1]
    return name if name in OPS else None


def _number(v: Any, what: str) -> np.ndarray:
    try:  # a number, a list, an array, or a TF constant/variable
        return np.asarray(v.numpy() if hasattr(v, "numpy") else v, np.float32)
    except (TypeError, ValueError, AttributeError):
        raise Unsupported(f"{what} must be a number or a list of numbers, got {type(v).__name__}") from None


def params(call: OpCall) -> reference.FakeQuant:
    """The call's :class:`~bnncc.reference.FakeQuant`; :class:`Unsupported` for what TF refuses or bnncc cannot
    reproduce exactly (a non-constant or non-finite range, min > max, a range whose scale is not a normal float)."""
    name = op_name(call.symbol)
    names, defaults, divide = OPS[name]
    if call.tensor_inputs != 1:
        raise Unsupported("min and max must be constants, not tensors computed in the model")
    bound = {**defaults, **dict(zip(names, call.args[1:], strict=False)), **call.kwargs}
    if "min" not in bound or "max" not in bound:
        raise Unsupported(f"{name} needs min and max")
    num_bits, narrow = int(bound.get("num_bits", 8)), bool(bound.get("narrow_range", False))
    if not 2 <= num_bits <= 16:
        raise Unsupported(f"num_bits must be between 2 and 16, got {num_bits}")
    mn, mx = _number(bound["min"], "min"), _number(bound["max"], "max")
    per_channel = name.endswith("per_channel")
    if mn.shape != mx.shape or mn.ndim != (1 if per_channel else 0):
        want = "vectors of one length" if per_channel else "scalars"
        raise Unsupported(f"min and max must be {want}, got shapes {mn.shape} and {mx.shape}")
    if not (np.isfinite(mn).all() and np.isfinite(mx).all()):
        raise Unsupported("min and max must be finite")
    zero = (mn == 0) & (mx == 0) if name != "fake_quant_with_min_max_args" else np.zeros(mn.shape, bool)
    if np.any((mn >= mx) & ~zero):
        raise Unsupported(f"min must be smaller than max, got [{mn.min():g}, {mx.max():g}]")
    p = reference.fake_quant_params(mn, mx, num_bits, narrow, divide=divide)
    if np.any((p.scale < _F32_TINY) & ~p.zero):
        raise Unsupported("the range is too narrow: its step is not a normal float32 (TF flushes it to 0)")
    return p


def check(call: OpCall) -> None:
    params(call)


def convert(b: LayerBuilder, call: OpCall, x: relax.Expr) -> relax.Expr:
    """The fake-quant of ``x``; a per-tensor one of ≤ 8 bits is recorded with its codes for an int8 consumer."""
    p = params(call)
    if p.scale.size > 1 and shape_of(x)[-1] != p.scale.size:
        raise Unsupported(f"{p.scale.size} per-channel ranges for {shape_of(x)[-1]} channels")
    k = fq.codes(b.graph.bb, x, p)
    out = fq.fake_quant(b.graph.bb, x, p, k)
    if p.scale.size == 1 and p.levels <= 256 and not p.zero.any():
        b.graph.quantized[out] = (fq.to_uint8(b.graph.bb, k, p), p)
    return out


def follow(b: LayerBuilder, x: relax.Expr, y: relax.Expr, same: Callable[[relax.Expr, int], relax.Expr]) -> None:
    """``y`` = an op of ``x`` that maps codes to codes (reshape, max-pool, zero padding): if ``x`` is a recorded
    fake-quant output, so is ``y``, with codes ``same(codes of x, zero point)``."""
    found = b.graph.quantized.get(x)
    if found is not None:
        codes, p = found
        b.graph.quantized[y] = (b.emit(same(codes, int(p.quant_zero[0]))), p)


def follow_reshape(b: LayerBuilder, x: relax.Expr, y: relax.Expr) -> None:
    follow(b, x, y, lambda codes, _zp: relax.op.reshape(codes, shape_of(y)))


def weight_grid(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | str:
    """(int8 kernel, float32 scale per output channel — the last axis) when every weight is exactly
    float32(k · s[o]) with integer k in [−128, 127]; else the reason it is not such a grid."""
    w = np.asarray(kernel, np.float32)
    flat = w.reshape(-1, w.shape[-1])
    m = np.abs(flat).max(axis=0)
    found = np.zeros(m.shape, np.int32)  # the code of the largest magnitude, per channel (0: not yet)
    found[m == 0] = -1
    with np.errstate(divide="ignore", invalid="ignore"):
        for top in range(1, 256):  # the coarsest grid whose multiples hold every weight, within 1e-3 of a step
            if (found != 0).all():
                break
            r = flat * (np.float32(top) / m)
            ok = (np.abs(r - np.round(r)) <= 1e-3).all(axis=0) & (found == 0)
            found[ok] = top
    if (found == 0).any():
        return f"{int((found == 0).sum())} output channel(s) are not on an int8 grid"
    if found.max() > 128:  # an 8-bit grid, but not around 0: e.g. codes −85..170 of an asymmetric range
        return (f"{int((found > 128).sum())} output channel(s) need codes up to ±{int(found.max())}: not int8 "
                "(an asymmetric range wider than [−128, 127] steps)")
    top = np.maximum(found, 1).astype(np.float32)
    base = (m / top).astype(np.float32)
    scale = np.where(found < 0, np.float32(1), np.nan).astype(np.float32)
    codes = np.zeros(flat.shape, np.int64)
    for ulps in (0, 1, -1, 2, -2, 3, -3):  # the float32 step s with float32(k·s) == w exactly, near m / top
        s = base
        for _ in range(abs(ulps)):
            s = np.nextafter(s, np.float32(np.inf if ulps > 0 else -np.inf)).astype(np.float32)
        k = np.round(flat / s)
        exact = ((k * s).astype(np.float32) == flat).all(axis=0) & np.isnan(scale) & (found > 0)
        scale[exact], codes[:, exact] = s[exact], k[:, exact]
    if np.isnan(scale).any():
        return f"{int(np.isnan(scale).sum())} output channel(s) are on a grid only up to float rounding"
    if codes.max(initial=0) > 127 or codes.min(initial=0) < -128:
        return (f"the weight grid needs codes {int(codes.min())}..{int(codes.max())}: not int8 (an asymmetric "
                "range wider than [−128, 127] steps)")
    return codes.astype(np.int8).reshape(w.shape), scale


def _int8_input(b: LayerBuilder, x: relax.Expr, kernel: np.ndarray, layer: str):
    """(uint8 codes, FakeQuant, int8 kernel, weight scales) if ``x`` is a recorded fake-quant output and the
    kernel an int8 grid; None (logged when only the kernel is in the way)."""
    found = b.graph.quantized.get(x)
    if found is None:
        return None
    grid = weight_grid(kernel)
    if isinstance(grid, str):
        log.warning("layer %r: kept float after its fake-quantized input: %s", layer, grid)
        return None
    return (*found, *grid)


def _dequantized(b: LayerBuilder, acc: relax.Expr, p: reference.FakeQuant, sw: np.ndarray,
                 bias: np.ndarray | None) -> relax.Expr:
    y = dequantize(b.graph.bb, acc, (p.scale * sw).astype(np.float32))
    return y if bias is None else b.emit(relax.op.add(y, relax.const(np.asarray(bias, np.float32))))


def int8_conv(b: LayerBuilder, x: relax.Expr, kernel: np.ndarray, bias: np.ndarray | None, *, strides,
              dilation, padding, groups: int, layer: str) -> relax.Expr | None:
    """The int8 conv (zero padding) of a fake-quantized ``x`` with an int8-grid HWIO ``kernel``, else None."""
    if groups != 1:
        return None
    found = _int8_input(b, x, kernel, layer)
    if found is None:
        return None
    u, p, k, sw = found
    acc = qconv2d(b.graph.bb, u, k, int(p.quant_zero[0]), strides=strides, dilation=dilation, padding=padding)
    return _dequantized(b, acc, p, sw, bias)


def int8_dense(b: LayerBuilder, x: relax.Expr, kernel: np.ndarray, bias: np.ndarray | None, *,
               layer: str) -> relax.Expr | None:
    """The int8 dense layer of a fake-quantized 2-D ``x`` with an int8-grid [K, N] ``kernel``, else None."""
    if len(shape_of(x)) != 2:
        return None
    found = _int8_input(b, x, kernel, layer)
    if found is None:
        return None
    u, p, k, sw = found
    acc = b.emit(qdense(u, k, int(p.quant_zero[0])))
    return _dequantized(b, acc, p, sw, bias)
