"""What every bnncc op module shares: op registration, attribute and type helpers, packed word types."""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import relax, te, tirx

from .. import reference
from ..errors import OpError

INT32_MAX = reference.INT32_MAX
OUTPUTS = ("float32", "bitpacked")
# 16-bit words suit NEON (cnt + uadalp.8h accumulate in 16-bit lanes); 32/64 suit AVX-512 VPOPCNTDQ.
WORD_BITS = (16, 32, 64)
PAD_BLOCK = "bnncc_pad"  # the padded input of a conv or pool, read in place by the schedules


def attrs(**kw) -> tvm.ir.DictAttrs:
    return tvm.ir.make_node("ir.DictAttrs", **kw)


def copy_attrs(call: relax.Call, **changes) -> tvm.ir.DictAttrs:
    """The attributes of ``call`` with some replaced."""
    a = {k: call.attrs[k] for k in call.attrs.keys()}
    a.update(changes)
    return attrs(**a)


def ints(v) -> tuple[int, ...]:
    return tuple(int(x) for x in v)


def static_shape(op: str, what: str, expr: relax.Expr) -> tuple[tuple[int, ...], str]:
    """(shape, dtype) of a tensor-typed Relax value of static shape, else an :class:`OpError`."""
    ty = getattr(expr, "ty", None)
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise OpError(op, f"{what} must be a tensor of known shape, got {ty}")
    try:
        shape = tuple(int(s) for s in ty.shape)
    except TypeError as e:
        raise OpError(op, f"{what} must have a static shape, got {ty.shape}") from e
    return shape, str(ty.dtype)


def shape_of(arg: relax.Expr) -> tuple[tuple[int, ...], str]:
    return tuple(int(s) for s in arg.ty.shape), str(arg.ty.dtype)


def packed_bits(op: str, dtype: str) -> int:
    """Word size of a packed tensor's dtype."""
    if dtype not in ("uint16", "uint32", "uint64"):
        raise OpError(op, f"input must be bitpacked (uint16, uint32 or uint64 words), got {dtype}")
    return int(dtype[4:])


def ohwi_kernel(op: str, kernel, layout: str):
    """A builder's rank-4 conv ``kernel`` in ``layout`` ("HWIO", Keras's, or "OHWI") as an OHWI numpy array."""
    import numpy as np

    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise OpError(op, f"kernel must be rank 4 ({layout}), got shape {kernel.shape}")
    if layout == "HWIO":
        return kernel.transpose(3, 0, 1, 2)
    if layout != "OHWI":
        raise OpError(op, f"kernel_layout must be 'HWIO' or 'OHWI', got {layout!r}")
    return kernel


def register_op(name: str, num_inputs: int, infer: Callable, legalize: Callable, doc: str) -> tvm.ir.Op:
    """Register ``bnncc.<name>`` once per process with its type rule and its legalization to TE."""
    full = f"bnncc.{name}"
    if full in tvm.ir.Op.list_op_names():  # already registered in this process
        return tvm.ir.Op.get(full)
    tvm.ir._ffi_api.RegisterOp(full, doc)
    op = tvm.ir.Op.get(full)
    op.set_num_inputs(num_inputs)
    op.set_attr("FPurity", True)
    op.set_attr("FInferType", infer)
    op.set_attr("FLegalize", legalize)
    return op


# ---------------------------------------------------------------------------------- TE popcount helpers
def popcount(x: te.Tensor | tirx.PrimExpr) -> tirx.PrimExpr:
    return tirx.popcount(x).astype("int32")


def accumulator_type(word: str, max_bits: int) -> str:
    """Popcounts accumulate in the word type (no per-lane widening in the inner loop) when the sum fits."""
    return word if max_bits < 2 ** int(word[4:]) else "uint32"


def popcount_as(x, dtype: str):
    p = tirx.popcount(x)
    return p if str(x.ty) == dtype else p.astype(dtype)
