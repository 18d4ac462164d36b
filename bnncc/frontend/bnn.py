"""The BNN vocabulary every frontend recognises: sign-like input quantizers, ±α kernels, one-/zero-padding, and
the binary ops they become (``bitpack`` → ``bconv2d`` / ``bdense`` with α folded into the multiplier).

A layer is binary when its input is sign-quantized and its kernel is ±α per output channel; a sign input in front
of a float kernel stays a float op on ±1 values. Framework-free: converters pass numpy arrays and Relax values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tvm import relax

from ..relay_ops import bconv2d, bdense, bitpack
from .base import LayerBuilder, Unsupported, const, shape_of

# Input quantizers whose forward pass is sign(x) with sign(0) = +1, as users write them.
SIGN_LIKE: tuple[str, ...] = ("ste_sign", "approx_sign", "swish_sign")
# ...and as frameworks spell them too (Larq's quantizer classes SteSign, ApproxSign, SwishSign, lower-cased).
_SIGN_SPELLINGS = frozenset(s for name in SIGN_LIKE for s in (name, name.replace("_", "")))


def is_sign_like(name: str | None) -> bool:
    """True if a quantizer/activation called ``name`` (any case) computes sign(x) with sign(0) = +1."""
    return name is not None and name.lower() in _SIGN_SPELLINGS


def binary_input(quantizer: str | None) -> bool:
    """True for a sign-like input quantizer, False for none (a float input); anything else is unsupported."""
    if quantizer is None:
        return False
    if is_sign_like(quantizer):
        return True
    raise Unsupported(f"input quantizer {quantizer!r} is not supported: binary layers need a sign quantizer "
                      f"({', '.join(SIGN_LIKE)}) or none")


def binary_kernel(kernel: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray] | None:
    """(±1 kernel, per-output-channel α) if every magnitude in each output channel (``axis``) is the same and
    > 0, i.e. ``kernel == sign · α``; None for any other (float) kernel."""
    w = np.asarray(kernel, np.float32)
    if w.ndim == 0 or w.size == 0:
        return None
    mag = np.moveaxis(np.abs(w), axis, -1).reshape(-1, w.shape[axis])
    if np.all(mag == mag[:1]) and np.all(mag[0] > 0):
        return np.sign(w), mag[0]
    return None


def binary_pad_value(pad_value: float) -> int:
    """The ``pad_value`` of a binary conv: padding with +1 (1) or with 0 bits, which count as -1 (0)."""
    if pad_value not in (0.0, 1.0):
        raise Unsupported(f"pad_values must be 0 or 1 for a binary conv, got {pad_value}")
    return int(pad_value)


def sign(b: LayerBuilder, x: relax.Expr) -> relax.Expr:
    """±1 float values (sign(0) = +1): a binary input quantizer in front of a float kernel."""
    return b.emit(relax.op.where(relax.op.less(x, const(0.0)), const(-1.0), const(1.0)))


def conv2d(b: LayerBuilder, x: relax.Expr, kernel: np.ndarray, *, alpha: np.ndarray | None = None,
           bias: np.ndarray | None = None, sign_input: bool = False, strides: Sequence[int] = (1, 1),
           dilation: Sequence[int] = (1, 1), padding: Sequence[int] = (0, 0, 0, 0), pad_value: float = 0.0,
           groups: int = 1, depthwise: bool = False) -> relax.Expr:
    """An NHWC conv of ``kernel`` (HWIO, as the layer computes with it) before its activation.

    Binary (``bitpack`` → ``bconv2d``) when the input is sign-quantized and the kernel is ±``alpha``; otherwise
    a float conv, of ±1 values if ``sign_input``. ``padding`` is explicit (top, left, bottom, right), filled
    with ``pad_value``. Depthwise convs stay float: one channel per group would fill 1 bit of each packed word.
    """
    c = shape_of(x)[-1]
    if kernel.shape[2] * groups != c:
        raise Unsupported(f"kernel expects {kernel.shape[2] * groups} input channels, input has {c}")
    strides, dilation, padding = tuple(strides), tuple(dilation), tuple(padding)
    if sign_input and alpha is not None and not depthwise:
        value = binary_pad_value(pad_value)
        packed = b.emit(bitpack(x, bits=b.bits, groups=groups))
        return b.emit(bconv2d(packed, np.sign(kernel), alpha, bias, strides=strides, dilation=dilation,
                              padding=padding, pad_value=value, groups=groups))
    if sign_input:
        x = sign(b, x)
    if any(padding) and pad_value != 0.0:  # pad with pad_value first, then convolve 'valid'
        t, le, bo, r = padding
        x = b.emit(relax.op.nn.pad(x, [0, 0, t, bo, le, r, 0, 0], pad_value=pad_value))
        padding = (0, 0, 0, 0)
    y = b.emit(relax.op.nn.conv2d(x, const(kernel), strides=strides, padding=padding, dilation=dilation,
                                  groups=groups, data_layout="NHWC", kernel_layout="HWIO", out_dtype="float32"))
    return y if bias is None else b.emit(relax.op.add(y, const(bias)))


def dense(b: LayerBuilder, x: relax.Expr, kernel: np.ndarray, *, alpha: np.ndarray | None = None,
          bias: np.ndarray | None = None, sign_input: bool = False) -> relax.Expr:
    """``x @ kernel`` ([in, out], as the layer computes with it) before its activation; binary (``bitpack`` →
    ``bdense``) when the input is sign-quantized and the kernel is ±``alpha``."""
    shape = shape_of(x)
    if len(shape) != 2:
        raise Unsupported(f"only 2-D input [batch, features] is supported, got shape {shape}")
    if kernel.shape[0] != shape[1]:
        raise Unsupported(f"kernel expects {kernel.shape[0]} features, input has {shape[1]}")
    if sign_input and alpha is not None:
        packed = b.emit(bitpack(x, bits=b.bits))
        return b.emit(bdense(packed, np.sign(kernel), alpha, bias))
    if sign_input:
        x = sign(b, x)
    y = b.emit(relax.op.matmul(x, const(kernel)))
    return y if bias is None else b.emit(relax.op.add(y, const(bias)))
