"""The output transform of the binary conv/dense ops, shared by both.

float32 output: y = bias + multiplier · clamp(acc) per output channel (``post`` = float32 [2, O]).
bitpacked output: bit = acc < threshold (``post`` = int32 [O]); the thresholds are derived at compile time from
the very float32 formula of the oracle, so packed chaining is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tvm import te, tirx

from .. import reference
from ..errors import OpError
from .common import INT32_MAX, OUTPUTS

OUTPUT_BLOCK = "bnncc_output"


def output_type(op: str, lead: tuple[int, ...], o: int, out: str, bits: int) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of an op's result with ``o`` output channels."""
    if out not in OUTPUTS:
        raise OpError(op, f"out must be one of {OUTPUTS}, got {out!r}")
    if out == "float32":
        return (*lead, o), "float32"
    return (*lead, -(-o // bits)), f"uint{bits}"


def clamp_range(clamp: Sequence[int] | None) -> tuple[int, int]:
    if clamp is None:
        return (-INT32_MAX, INT32_MAX)
    lo, hi = (int(np.clip(v, -INT32_MAX, INT32_MAX)) for v in clamp)
    return lo, hi


def output_thresholds(multiplier, bias, clamp, kmax: int, op: str = "bnncc.bconv2d") -> tuple[np.ndarray, np.ndarray]:
    """Integer thresholds for packed output: bit = (y < 0) with y = bias + multiplier · clamp(acc) in float32.

    Returns (threshold int32 [O], flip bool [O]): bit = acc < threshold, where channels with ``flip`` must
    have their weights negated (negating the weights negates acc, turning an up-set into a down-set). The
    boundary is found by bisection on the very float32 formula of the oracle, so it is exact.
    """
    m = np.asarray(multiplier, np.float32)
    b = np.asarray(bias, np.float32)
    if not (np.isfinite(m).all() and np.isfinite(b).all()):
        raise OpError(op, "multiplier and bias must be finite to derive output thresholds")
    lo_c, hi_c = clamp

    def neg(a):
        return reference.output_transform(a, m, b, (lo_c, hi_c)) < 0

    lo = np.full(m.shape, -kmax, np.int64)
    hi = np.full(m.shape, kmax, np.int64)
    start, end = neg(lo), neg(hi)
    while (hi - lo > 1).any():  # invariant: neg(lo) == start and, where the bit changes, neg(hi) != start
        mid = (lo + hi) // 2
        same = neg(mid) == start
        lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
    first_change = hi
    threshold = np.where(start & end, kmax + 1,
                         np.where(~start & ~end, -kmax - 1,
                                  np.where(start, first_change, 1 - first_change)))
    flip = ~start & end
    return threshold.astype(np.int32), flip


def post_constants(op: str, o: int, multiplier, bias, clamp, out: str, kmax: int) -> tuple[np.ndarray, np.ndarray]:
    """(``post`` constant, channels whose weights must be negated) for ``o`` output channels."""
    if out not in OUTPUTS:
        raise OpError(op, f"out must be one of {OUTPUTS}, got {out!r}")
    m = np.broadcast_to(np.asarray(1.0 if multiplier is None else multiplier, np.float32), (o,))
    b = np.broadcast_to(np.asarray(0.0 if bias is None else bias, np.float32), (o,))
    if out == "float32":
        return np.stack([m, b]).astype(np.float32), np.zeros(o, bool)
    return output_thresholds(m, b, clamp, kmax, op)


def binary_weights(kernel_oi: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """±1 int8 weights (output channels first) with the flipped channels negated."""
    pm1 = reference.binarize(kernel_oi).astype(np.int8)
    pm1[flip] *= -1
    return pm1


def pad_packed_channels(pm1: np.ndarray, thresholds: np.ndarray, bits: int, kmax: int):
    """Round the output channels up to whole words: the extra channels' bits are never set (threshold below
    any accumulator), so packing needs no bounds check and the epilogue can follow each register tile."""
    o = pm1.shape[0]
    extra = -o % bits
    if not extra:
        return pm1, thresholds
    pm1 = np.concatenate([pm1, np.ones((extra, *pm1.shape[1:]), pm1.dtype)])
    return pm1, np.concatenate([thresholds, np.full(extra, -kmax - 1, thresholds.dtype)])


def output_compute(acc: te.Tensor, post: te.Tensor, out: str, clamp, bits: int) -> te.Tensor:
    """The output transform on [..., O] int32 accumulators, as TE (block :data:`OUTPUT_BLOCK`).

    For packed output the clamp and the sign of the multiplier were folded into the thresholds and weights by
    the builder; bits are packed into uint{bits} words along O.
    """
    lo, hi = (int(v) for v in clamp)
    if out == "float32":
        def fout(*idx):
            a = acc(*idx)
            if lo > -INT32_MAX or hi < INT32_MAX:
                a = tirx.max(tirx.min(a, hi), lo)
            o = idx[-1]
            return post[1, o] + post[0, o] * a.astype("float32")

        return te.compute(acc.shape, fout, name=OUTPUT_BLOCK)
    o_total = int(acc.shape[-1])
    dtype = f"uint{bits}"
    i = te.reduce_axis((0, bits), name="obit")

    def word(*idx):
        *lead, j = idx
        o = j * bits + i
        if o_total % bits == 0:  # the builders pad channels to whole words where they can
            bit = (acc(*lead, o) < post[o]).astype(dtype)
        else:
            oc = tirx.min(o, o_total - 1)
            bit = tirx.if_then_else(tirx.all(o < o_total, acc(*lead, oc) < post[oc]),
                                    tirx.const(1, dtype), tirx.const(0, dtype))
        return te.sum(bit << i.astype(dtype), axis=i)

    return te.compute((*acc.shape[:-1], -(-o_total // bits)), word, name=OUTPUT_BLOCK)
