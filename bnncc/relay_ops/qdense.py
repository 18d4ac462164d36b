"""``bnncc.qdense(x, w, offset)``: int8 fully-connected layer (GEMM), uint8 [M, K] × int8 [K, N] → int32 [M, N].

Exact integer arithmetic (docs/semantics.md): ``out[m, n] = Σ_k (x[m, k] − zx)·w[k, n] + bias[n]`` with
activations uint8 with zero point ``zx`` and weights int8, symmetric (zero point 0). The zero point and bias fold
into one constant per column, ``offset[n] = bias[n] − zx·Σ_k w[k, n]``, so the kernel is a plain u8×s8 GEMM.

Weights are packed at compile time as [N/16, K/4, 16, 4] (``w[k, n]`` at ``[n // 16, k // 4, n % 16, k % 4]``,
zero-padded to N a multiple of 32 and K a multiple of 64): 16 columns × 4 depths = 64 bytes, the operand of
AVX-512 VNNI ``vpdpbusd`` and a row of an AMX B tile; NEON ``sdot`` reads the same 4-deep groups.
"""

from __future__ import annotations

import numpy as np
from tvm import relax, te, tirx

from .. import reference
from ..errors import OpError
from .common import attrs, register_op, shape_of, static_shape

PAD_BLOCK = "bnncc_qdense_pad"  # the input zero-padded to K a multiple of 64
BLOCK = "bnncc_qdense"  # the int32 reduction over [M, Np] (the padded columns are zeros)
OUTPUT_BLOCK = "bnncc_qdense_out"  # + offset
OP_NAME = "bnncc.qdense"
COLUMN_BLOCK, DEPTH_BLOCK = 32, 64  # padding of N and K in the packed weights


def _ceil(a: int, b: int) -> int:
    return -(-a // b) * b


def pack_weights(w: np.ndarray) -> np.ndarray:
    """int8 [K, N] → the packed [Np/16, Kp/4, 16, 4] layout."""
    k, n = w.shape
    kp, np_ = _ceil(k, DEPTH_BLOCK), _ceil(n, COLUMN_BLOCK)
    padded = np.zeros((kp, np_), np.int8)
    padded[:k, :n] = w
    return np.ascontiguousarray(padded.reshape(kp // 4, 4, np_ // 16, 16).transpose(2, 0, 3, 1))


def unpack_weights(packed: np.ndarray, k: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_weights`."""
    nb, kq = packed.shape[:2]
    return packed.transpose(1, 3, 0, 2).reshape(kq * 4, nb * 16)[:k, :n]


def qdense_type(dshape, ddtype, wshape, wdtype, a) -> tuple[tuple[int, ...], str]:
    op = OP_NAME
    if ddtype != "uint8" or wdtype != "int8":
        raise OpError(op, f"input must be uint8 and weights int8, got {ddtype} and {wdtype}")
    if len(dshape) != 2:
        raise OpError(op, f"input must be rank 2 [M, K], got shape {dshape}")
    k, n = int(a["channels_in"]), int(a["channels_out"])
    if dshape[1] != k:
        raise OpError(op, f"input has {dshape[1]} channels, the weights {k}")
    want = (_ceil(n, COLUMN_BLOCK) // 16, _ceil(k, DEPTH_BLOCK) // 4, 16, 4)
    if tuple(wshape) != want:
        raise OpError(op, f"packed weights of {k}×{n} must have shape {want}, got {tuple(wshape)}")
    return (dshape[0], n), "int32"


def compute(data: te.Tensor, weight: te.Tensor, offset: te.Tensor, *, channels_out: int) -> te.Tensor:
    """The TE definition: int32 sum of u8·s8 products over 4-deep groups (:data:`BLOCK`), then the offset
    (:data:`OUTPUT_BLOCK`)."""
    m, k = (int(s) for s in data.shape)
    nb, kq = (int(s) for s in weight.shape[:2])
    q = te.reduce_axis((0, kq), name="kq")
    r = te.reduce_axis((0, 4), name="kk")
    x = te.compute((m, kq * 4), lambda i, j: tirx.if_then_else(
        j < k, data[i, tirx.min(j, k - 1)], tirx.const(0, "uint8")), name=PAD_BLOCK)
    acc = te.compute(
        (m, nb * 16),
        lambda i, j: te.sum(x[i, q * 4 + r].astype("int32") * weight[j // 16, q, j % 16, r].astype("int32"),
                            axis=[q, r]),
        name=BLOCK)
    return te.compute((m, channels_out), lambda i, j: acc[i, j] + offset[j], name=OUTPUT_BLOCK)


def _infer(call, _ctx):
    return relax.TensorType(*qdense_type(*shape_of(call.args[0]), *shape_of(call.args[1]), call.attrs))


OPAQUE = 8  # relax's OpPatternKind::kOpaque


def _legalize(bb, call):
    # Opaque to FuseOps: the AMX kernel replaces the function whole, so it must stay exactly a qdense.
    return bb.call_te(compute, *call.args, channels_out=int(call.attrs["channels_out"]), primfunc_name_hint=BLOCK,
                      primfunc_attrs={"op_pattern": OPAQUE})


QDENSE = register_op("qdense", 3, _infer, _legalize, "int8 fully-connected layer: uint8 × int8 → int32.")


def qdense(data: relax.Expr, kernel: np.ndarray, x_zero_point: int = 0, bias=None) -> relax.Call:
    """int8 dense layer of uint8 [M, K] ``data`` (zero point ``x_zero_point``) with a constant int8 kernel [K, N]
    (Keras layout) and an optional int32 ``bias`` [N]; int32 [M, N] out."""
    op = OP_NAME
    dshape, ddtype = static_shape(op, "input", data)
    kernel = np.asarray(kernel)
    if kernel.ndim != 2 or kernel.dtype != np.int8:
        raise OpError(op, f"kernel must be int8 [K, N], got {kernel.dtype} of shape {kernel.shape}")
    if not 0 <= int(x_zero_point) <= 255:
        raise OpError(op, f"the input zero point must be a uint8 value, got {x_zero_point}")
    k, n = kernel.shape
    offset = np.zeros(_ceil(n, COLUMN_BLOCK), np.int64)
    offset[:n] = -int(x_zero_point) * kernel.astype(np.int64).sum(axis=0)
    if bias is not None:
        offset[:n] += np.asarray(bias, dtype=np.int64).reshape(n)
    if np.abs(offset).max(initial=0) > reference.INT32_MAX:
        raise OpError(op, "bias and zero-point correction leave int32")
    packed = pack_weights(kernel)
    a = dict(channels_in=k, channels_out=n)
    qdense_type(dshape, ddtype, packed.shape, "int8", a)
    return relax.Call(QDENSE, [data, relax.const(packed), relax.const(offset.astype(np.int32))], attrs(**a))
