"""TensorFlow's fake quantization (``tf.quantization.fake_quant_with_min_max_{vars,args,vars_per_channel}``) as
Relax compositions, step for step TF's float32 arithmetic so that the output is bit-identical with TF's
(parameters and oracle: :func:`bnncc.reference.fake_quant_params` / :func:`~bnncc.reference.fake_quant`).

It is not bnncc's :func:`~bnncc.relay_ops.qconv2d.quantize`: TF clamps to the nudged range first, shifts by the
nudged minimum, and rounds half *up* (floor(t + 0.5)) where ``quantize`` rounds half to even. Each step is its
own rounded float op (TVM's LLVM code generation does not contract a multiply and an add into an FMA; the tests
against TF would see it). NaN stays NaN in the float output, as in TF (TVM's min/max would clamp it).
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from ..reference import FakeQuant


def _c(v) -> relax.Constant:
    return relax.const(np.ascontiguousarray(np.asarray(v, np.float32)))


def codes(bb: relax.BlockBuilder, x: relax.Expr, p: FakeQuant) -> relax.Expr:
    """float32 integers: the code of ``x`` relative to real 0 (NaN for NaN); per channel on the last axis."""
    op = relax.op
    clamped = op.maximum(op.minimum(x, _c(p.nudged_max)), _c(p.nudged_min))
    shifted = op.subtract(clamped, _c(p.nudged_min))
    t = op.divide(shifted, _c(p.scale)) if p.divide else op.multiply(shifted, _c(p.inv_scale))
    k = op.floor(op.add(op.subtract(t, _c(p.quant_zero)), _c(0.5)))
    return bb.emit(op.where(op.isnan(x), x, k))


def fake_quant(bb: relax.BlockBuilder, x: relax.Expr, p: FakeQuant, k: relax.Expr | None = None) -> relax.Expr:
    """TF's float output, code · scale (``k``: the :func:`codes` of ``x`` when already emitted)."""
    k = codes(bb, x, p) if k is None else k
    out = relax.op.multiply(k, _c(p.scale))
    if p.zero.any():  # min = max = 0: TF writes 0 whatever the input
        out = relax.op.where(relax.const(np.ascontiguousarray(p.zero)), _c(0.0), out)
    return bb.emit(out)


def to_uint8(bb: relax.BlockBuilder, k: relax.Expr, p: FakeQuant) -> relax.Expr:
    """uint8 codes with zero point ``quant_zero`` from :func:`codes` of a per-tensor range of at most 256 levels;
    NaN reads as real 0 (the zero point): it has no code."""
    if p.levels > 256 or p.scale.size != 1:
        raise ValueError(f"uint8 codes need one range of at most 256 levels, got {p.scale.size} of {p.levels}")
    qz = _c(p.quant_zero)
    u = relax.op.where(relax.op.isnan(k), qz, relax.op.add(k, qz))
    return bb.emit(relax.op.astype(u, "uint8"))
