"""The BNN vocabulary every frontend recognises: sign-like input quantizers, ±α kernels, one-/zero-padding, and
the binary ops they become (``bitpack`` → ``bconv2d`` / ``bdense`` with α folded into the multiplier).

A layer is binary when its input is sign-quantized and its kernel is ±α per output channel; a sign input in front
of a float kernel stays a float op on ±1 values. A quantizer is sign-like by what it computes on
:data:`SIGN_PROBES`, whatever its name; a sign used as a layer feeding a ±α kernel makes that layer binary too.
Framework-free: converters pass numpy arrays and Relax values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tvm import relax

from ..relay_ops import bconv2d, bdense, bitpack
from .base import LayerBuilder, Unsupported, const, shape_of

# The quantizers users name for a binary input; any function computing the same is accepted too (it is probed).
SIGN_LIKE: tuple[str, ...] = ("ste_sign", "approx_sign", "swish_sign")
HEAVISIDE_LIKE: tuple[str, ...] = ("ste_heaviside",)  # {0, 1}: 1 for x > 0
_F32_TINY = np.finfo(np.float32).tiny  # smallest normal float32


def _probes() -> np.ndarray:
    """Values a sign quantizer is evaluated on: ±0.5 first (so tanh reports the telling 0.5 → 0.462), signed
    zeros, ±1, the smallest normal and denormals, the largest magnitudes, and random normals of mixed scales."""
    edge = [0.5, -0.5, 0.0, -0.0, 1.0, -1.0, _F32_TINY, -_F32_TINY, 1e-38, -1e-38, 1.4e-45, -1.4e-45,
            1e30, -1e30, 3e38, -3e38]
    rng = np.random.default_rng(0)
    scales = 10.0 ** rng.integers(-30, 31, 320)
    return np.concatenate([np.float32(edge), (rng.standard_normal(320) * scales).astype(np.float32)])


SIGN_PROBES: np.ndarray = _probes()


def _mismatch(outputs: Any, probes: np.ndarray, want: np.ndarray, at_zero: float) -> tuple[float, float] | None:
    y = outputs(probes.copy()) if callable(outputs) else outputs
    y = np.asarray(y, np.float32)
    if y.shape != probes.shape:
        return float(probes[0]), float("nan")
    denormal = (probes != 0) & (np.abs(probes) < _F32_TINY)
    bad = np.flatnonzero(~((y == want) | (denormal & (y == np.float32(at_zero)))))
    return None if bad.size == 0 else (float(probes[bad[0]]), float(y[bad[0]]))


def sign_mismatch(outputs: Any, probes: np.ndarray = SIGN_PROBES) -> tuple[float, float] | None:
    """The first probe ``x`` a quantizer does not map to sign(x) (with sign(±0) = +1), as ``(x, output)``; None
    if it is sign-like. ``outputs`` are its values on ``probes``, or a numpy → numpy callable evaluated there.

    On denormals +1 is accepted as well: TensorFlow on CPU reads them as 0 (flush-to-zero), whatever the
    quantizer; any other disagreement is exact float32 inequality.
    """
    return _mismatch(outputs, probes, np.where(probes < 0, np.float32(-1.0), np.float32(1.0)), 1.0)


def heaviside_mismatch(outputs: Any, probes: np.ndarray = SIGN_PROBES) -> tuple[float, float] | None:
    """As :func:`sign_mismatch` for the Heaviside step: 1 for x > 0, 0 for x ≤ 0 (±0 included; 0 accepted on
    denormals, which TensorFlow flushes to 0)."""
    return _mismatch(outputs, probes, np.where(probes > 0, np.float32(1.0), np.float32(0.0)), 0.0)


SIGN, HEAVISIDE = "sign", "heaviside"  # the binary inputs: ±1 values, or {0, 1} values


def binary_input(quantizer: Any, name: str | None = None, *, what: str = "input quantizer") -> str | None:
    """:data:`SIGN` for a sign-like input quantizer, :data:`HEAVISIDE` for a Heaviside step, None for none (a
    float input); anything else is unsupported.

    ``quantizer`` is None, its outputs on :data:`SIGN_PROBES`, or a numpy → numpy callable; what it is is
    decided by what it computes, not by its ``name`` (which, with ``what`` it is, only names it in the error).
    """
    if quantizer is None:
        return None
    y = quantizer(SIGN_PROBES.copy()) if callable(quantizer) else quantizer
    bad = sign_mismatch(y)
    if bad is None:
        return SIGN
    if heaviside_mismatch(y) is None:
        return HEAVISIDE
    x, v = bad
    raise Unsupported(f"{what} {name!r} is not sign-like: maps {x:g} to {v:.3g} (a binary layer needs "
                      f"sign(x) with sign(0) = +1 or the step x > 0; accepted: {', '.join(SIGN_LIKE)}, "
                      f"{', '.join(HEAVISIDE_LIKE)} or any function computing one of them)")


def binary_kernel(kernel: np.ndarray, axis: int = -1, *, rounding: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """(±1 kernel, per-output-channel α) if every magnitude in each output channel (``axis``) is the same and
    > 0, i.e. ``kernel == sign · α``; None for any other (float) kernel.

    ``rounding`` > 0 accepts magnitudes that differ by up to ``rounding · max(1, α)`` (absolute): an exporter
    that folded an STE ``α·sign(W) - clamp(W) + clamp(W)`` leaves ±α only up to float rounding; α is then the
    channel's mean magnitude."""
    w = np.asarray(kernel, np.float32)
    if w.ndim == 0 or w.size == 0:
        return None
    mag = np.moveaxis(np.abs(w), axis, -1).reshape(-1, w.shape[axis])
    if np.all(mag == mag[:1]) and np.all(mag[0] > 0):
        return np.sign(w), mag[0]
    if rounding > 0:
        alpha = mag.mean(axis=0, dtype=np.float64)
        spread = mag.max(axis=0) - mag.min(axis=0)
        if np.all(alpha > 0) and np.all(spread <= rounding * np.maximum(1.0, alpha)):
            return np.sign(w), alpha.astype(np.float32)
    return None


def binary_pad_value(pad_value: float) -> int:
    """The ``pad_value`` of a binary conv: padding with +1 (1) or with 0 bits, which count as -1 (0)."""
    if pad_value not in (0.0, 1.0):
        raise Unsupported(f"pad_values must be 0 or 1 for a binary conv, got {pad_value}")
    return int(pad_value)


def sign(b: LayerBuilder, x: relax.Expr) -> relax.Expr:
    """±1 float values (sign(0) = +1): a sign quantizer used as a layer, or in front of a float kernel.

    Recorded in the graph, so a binary-kernel layer reading them packs ``x`` itself (the same bits) and the ±1
    floats are dead code unless something else reads them.
    """
    y = b.emit(relax.op.where(relax.op.less(x, const(0.0)), const(-1.0), const(1.0)))
    b.graph.signs[y] = x
    return y


def heaviside(b: LayerBuilder, x: relax.Expr) -> relax.Expr:
    """{0, 1} float values, 1 for x > 0 (Larq's ``ste_heaviside``); recorded like :func:`sign`'s."""
    y = b.emit(relax.op.where(relax.op.greater(x, const(0.0)), const(1.0), const(0.0)))
    b.graph.heavisides[y] = x
    return y


def follow_reshape(b: LayerBuilder, x: relax.Expr, y: relax.Expr) -> None:
    """``y`` is a reshape of ``x`` (Flatten, Reshape): if ``x`` holds :func:`sign` / :func:`heaviside` values,
    so does ``y``, of the reshaped source — a binary layer after a Flatten still packs."""
    for table in (b.graph.signs, b.graph.heavisides):
        if x in table:
            table[y] = b.emit(relax.op.reshape(table[x], shape_of(y)))


def _packed_source(b: LayerBuilder, x: relax.Expr, sign_input: bool, heaviside_input: bool,
                   alpha: np.ndarray | None) -> tuple[relax.Expr | None, bool]:
    """(the float a binary layer bitpacks, whether it is a Heaviside input): its input, or what ±1 / {0, 1}
    values from :func:`sign` / :func:`heaviside` are computed from; None when the layer stays float (a float
    kernel, or a float input that is not such values)."""
    if alpha is None:
        return None, False
    if sign_input or heaviside_input:
        return x, heaviside_input
    if x in b.graph.heavisides:
        return b.graph.heavisides[x], True
    return b.graph.signs.get(x), False


def _heaviside_transform(b: LayerBuilder, source: relax.Expr, kernel_sign: np.ndarray, alpha: np.ndarray,
                         bias: np.ndarray | None, axes: tuple[int, ...]) -> tuple[relax.Expr, np.ndarray, np.ndarray]:
    """A {0, 1} input a = (1 − s)/2 in ±1 terms, s = −1 where x > 0, i.e. the sign bits of −x: then
    Σ a·w = (Σ w − Σ s·w)/2, so the binary op's multiplier is −α/2 and its bias α·Σ w/2 (+ the layer's).
    Returns (−x to pack, multiplier, bias)."""
    total = kernel_sign.astype(np.float64).sum(axis=axes)
    shift = (np.asarray(alpha, np.float64) * total / 2 + (0.0 if bias is None else np.asarray(bias, np.float64)))
    return b.emit(relax.op.negative(source)), (-np.asarray(alpha, np.float32) / 2), shift.astype(np.float32)


def conv2d(b: LayerBuilder, x: relax.Expr, kernel: np.ndarray, *, alpha: np.ndarray | None = None,
           bias: np.ndarray | None = None, sign_input: bool = False, heaviside_input: bool = False,
           strides: Sequence[int] = (1, 1), dilation: Sequence[int] = (1, 1), padding: Sequence[int] = (0, 0, 0, 0),
           pad_value: float = 0.0, groups: int = 1, depthwise: bool = False) -> relax.Expr:
    """An NHWC conv of ``kernel`` (HWIO, as the layer computes with it) before its activation.

    Binary (``bitpack`` → ``bconv2d``) when the input is sign-quantized (or the ±1 output of :func:`sign`) and
    the kernel is ±``alpha``; likewise a Heaviside input ({0, 1}, :func:`_heaviside_transform`) padded with 0
    or not padded; otherwise a float conv, of ±1 / {0, 1} values if ``sign_input`` / ``heaviside_input``.
    ``padding`` is explicit (top, left, bottom, right), filled with ``pad_value``. Depthwise convs stay float:
    one channel per group would fill 1 bit of each packed word.
    """
    c = shape_of(x)[-1]
    if kernel.shape[2] * groups != c:
        raise Unsupported(f"kernel expects {kernel.shape[2] * groups} input channels, input has {c}")
    strides, dilation, padding = tuple(strides), tuple(dilation), tuple(padding)
    source, step = (None, False) if depthwise else _packed_source(b, x, sign_input, heaviside_input, alpha)
    if step and any(padding) and pad_value != 0.0:  # a padded 1 is a −1 bit: bconv2d pads with +1 or nothing
        source = None
    if source is not None:
        multiplier, shift, value = alpha, bias, binary_pad_value(pad_value)
        if step:  # a padded 0 is s = +1: zero words, bconv2d's pad_value 1
            source, multiplier, shift = _heaviside_transform(b, source, np.sign(kernel), alpha, bias, (0, 1, 2))
            value = 1
        packed = b.emit(bitpack(source, bits=b.bits, groups=groups))
        return b.emit(bconv2d(packed, np.sign(kernel), multiplier, shift, strides=strides, dilation=dilation,
                              padding=padding, pad_value=value, groups=groups))
    if sign_input:
        x = sign(b, x)
    elif heaviside_input:
        x = heaviside(b, x)
    if any(padding) and pad_value != 0.0:  # pad with pad_value first, then convolve 'valid'
        t, le, bo, r = padding
        x = b.emit(relax.op.nn.pad(x, [0, 0, t, bo, le, r, 0, 0], pad_value=pad_value))
        padding = (0, 0, 0, 0)
    y = b.emit(relax.op.nn.conv2d(x, const(kernel), strides=strides, padding=padding, dilation=dilation,
                                  groups=groups, data_layout="NHWC", kernel_layout="HWIO", out_dtype="float32"))
    return y if bias is None else b.emit(relax.op.add(y, const(bias)))


def dense(b: LayerBuilder, x: relax.Expr, kernel: np.ndarray, *, alpha: np.ndarray | None = None,
          bias: np.ndarray | None = None, sign_input: bool = False, heaviside_input: bool = False) -> relax.Expr:
    """``x @ kernel`` ([in, out], as the layer computes with it) before its activation; binary (``bitpack`` →
    ``bdense``) when the input is sign- or Heaviside-quantized (or the output of :func:`sign` /
    :func:`heaviside`) and the kernel is ±``alpha``."""
    shape = shape_of(x)
    if len(shape) != 2:
        raise Unsupported(f"only 2-D input [batch, features] is supported, got shape {shape}")
    if kernel.shape[0] != shape[1]:
        raise Unsupported(f"kernel expects {kernel.shape[0]} features, input has {shape[1]}")
    source, step = _packed_source(b, x, sign_input, heaviside_input, alpha)
    if source is not None:
        multiplier, shift = alpha, bias
        if step:
            source, multiplier, shift = _heaviside_transform(b, source, np.sign(kernel), alpha, bias, (0,))
        packed = b.emit(bitpack(source, bits=b.bits))
        return b.emit(bdense(packed, np.sign(kernel), multiplier, shift))
    if sign_input:
        x = sign(b, x)
    elif heaviside_input:
        x = heaviside(b, x)
    y = b.emit(relax.op.matmul(x, const(kernel)))
    return y if bias is None else b.emit(relax.op.add(y, const(bias)))
