"""Larq layers with k-bit activations (``DoReFa(k_bit, mode="activations")``) → bnncc's bit-serial ops.

A ``QuantConv2D`` / ``QuantDense`` whose input quantizer computes Larq's DoReFa (probed on values, whatever its
name, like sign quantizers: :func:`k_bit_of`) and whose kernel, as its kernel quantizer computes it, is ±α or
{−α, 0, +α} per output channel (``ste_sign``, ``SteTern``) becomes ``bitplanes`` → ``bsconv2d`` with multiplier
α/n (the float conv of level/n values is acc/n). A dense layer is a 1×1 bsconv on [N, 1, 1, K]. A DoReFa
quantizer used as a layer becomes its float values, and a following layer with no input quantizer reads the
levels of its input (the same values). What the bit-serial op does not cover (a float kernel, groups,
``pad_values`` ≠ 0) stays a float conv of the DoReFa values: the same numbers, without popcounts.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
from tvm import relax

from .. import reference
from ..relay_ops.bsconv2d import MAX_K_BIT, bitplanes, bsconv2d
from . import bnn
from .base import Graph, LayerBuilder, const, shape_of

Evaluate = Callable[[np.ndarray], np.ndarray]  # a quantizer as numpy → numpy (keras._evaluated)


def _probes() -> np.ndarray:
    """The sign probes, every rounding tie (i + ½)/n of k = 1..8 and its float32 neighbours, and uniform values
    around [0, 1]."""
    ties = np.concatenate([(np.arange(2 ** k - 1) + 0.5) / (2 ** k - 1) for k in range(1, MAX_K_BIT + 1)])
    ties = ties.astype(np.float32)
    rng = np.random.default_rng(1)
    return np.concatenate([bnn.SIGN_PROBES, ties, np.nextafter(ties, np.float32(2)), np.nextafter(ties, np.float32(-1)),
                           rng.uniform(-0.5, 1.5, 512).astype(np.float32)])


PROBES = _probes()
# DoReFa values of the float graph → (the float they quantize, k): per Graph, dropped with it.
_LEVELS: weakref.WeakKeyDictionary[Graph, dict[relax.Expr, tuple[relax.Expr, int]]] = weakref.WeakKeyDictionary()


def k_bit_of(run: Evaluate | None, precision=None) -> int | None:
    """k if ``run`` computes Larq's DoReFa(k, "activations") on :data:`PROBES` (exact float32), else None."""
    if run is None:
        return None
    try:
        y = np.asarray(run(PROBES.copy()), np.float32)
    except Exception:  # noqa: BLE001 - not evaluable: not DoReFa (the sign check reports it)
        return None
    if y.shape != PROBES.shape:
        return None
    ks = [precision] if isinstance(precision, int) and 1 <= precision <= MAX_K_BIT else range(1, MAX_K_BIT + 1)
    return next((k for k in ks if np.array_equal(y, reference.dorefa(PROBES, k))), None)


def dorefa_values(b: LayerBuilder, x: relax.Expr, k_bit: int) -> relax.Expr:
    """Larq's DoReFa float values round_half_even(clip(x, 0, 1)·n)/n, recorded as levels of ``x``."""
    n = const(np.float32(2 ** k_bit - 1))
    y = b.emit(relax.op.divide(relax.op.round(relax.op.multiply(relax.op.clip(x, 0.0, 1.0), n)), n))
    _LEVELS.setdefault(b.graph, {})[y] = (x, k_bit)
    return y


def levels_source(b: LayerBuilder, x: relax.Expr) -> tuple[relax.Expr, int] | None:
    """(float, k) if ``x`` are DoReFa values emitted by :func:`dorefa_values`."""
    return _LEVELS.get(b.graph, {}).get(x)


def _integer_kernel(wq: np.ndarray) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(integer kernel, α per output channel, "binary" | "ternary") for a kernel of ±α or {−α, 0, +α} per
    output channel (the last axis); None for any other."""
    found = bnn.binary_kernel(wq)
    if found is not None:
        return found[0], found[1], "binary"
    w = np.asarray(wq, np.float32).reshape(-1, wq.shape[-1])
    alpha = np.abs(w).max(axis=0)
    if not np.all((w == 0) | (np.abs(w) == alpha)):
        return None
    return np.sign(wq), np.where(alpha > 0, alpha, np.float32(1)).astype(np.float32), "ternary"


def conv2d(b: LayerBuilder, x: relax.Expr, k_bit: int, wq: np.ndarray, *, bias, strides, dilation, padding,
           groups: int, pad_value: float) -> relax.Expr:
    """A conv of the DoReFa(k) values of ``x`` with ``wq`` (HWIO, as the layer computes with it), before its
    activation: bit-serial where the op covers it, else a float conv of the DoReFa values."""
    found = _integer_kernel(wq)
    if found is not None and groups == 1 and pad_value == 0.0:
        w_int, alpha, kind = found
        planes = b.emit(bitplanes(x, k_bit, b.bits))
        return b.emit(bsconv2d(planes, w_int, alpha / np.float32(2 ** k_bit - 1), bias, k_bit=k_bit, weights=kind,
                               strides=strides, dilation=dilation, padding=padding))
    return bnn.conv2d(b, dorefa_values(b, x, k_bit), wq, bias=bias, strides=strides, dilation=dilation,
                      padding=padding, pad_value=pad_value, groups=groups)


def dense(b: LayerBuilder, x: relax.Expr, k_bit: int, wq: np.ndarray, *, bias) -> relax.Expr:
    """``dorefa(x) @ wq`` as a 1×1 bit-serial conv on [N, 1, 1, K] when the kernel is binary/ternary."""
    shape = shape_of(x)
    if len(shape) != 2 or _integer_kernel(wq) is None:
        return bnn.dense(b, dorefa_values(b, x, k_bit), wq, bias=bias)
    y = conv2d(b, b.emit(relax.op.reshape(x, (shape[0], 1, 1, shape[1]))), k_bit, wq.reshape(1, 1, *wq.shape),
               bias=bias, strides=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0), groups=1, pad_value=0.0)
    return b.emit(relax.op.reshape(y, (shape[0], wq.shape[1])))
