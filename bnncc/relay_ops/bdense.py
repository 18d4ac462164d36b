"""``bnncc.bdense(x, w, post)``: binary fully-connected layer, packed [N, W] × packed [O, W] → [N, O] float32 or
packed words. The accumulator is K − 2·popcount(x ^ w); ``post`` is the output transform (:mod:`.output_transform`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tvm import relax, te

from .. import reference
from ..errors import OpError
from .common import accumulator_type, attrs, ints, packed_bits, popcount_as, register_op, shape_of, static_shape
from .output_transform import (
    binary_weights,
    clamp_range,
    output_compute,
    output_type,
    pad_packed_channels,
    post_constants,
)

BLOCK = "bnncc_bdense"  # the popcount reduction
OP_NAME = "bnncc.bdense"


def bdense_type(dshape, ddtype, wshape, wdtype, a) -> tuple[tuple[int, ...], str]:
    op = OP_NAME
    bits = packed_bits(op, ddtype)
    if wdtype != ddtype:
        raise OpError(op, f"weights ({wdtype}) and input ({ddtype}) must use the same word type")
    if len(dshape) != 2 or len(wshape) != 2:
        raise OpError(op, f"input [N, words] and weights [O, words] must be rank 2, got {dshape} and {wshape}")
    cin = int(a["channels_in"])
    need = reference.words_per_group(cin, 1, bits)
    if dshape[1] != need or wshape[1] != need:
        raise OpError(op, f"{cin} input channels need {need} words, got input {dshape[1]}, weights {wshape[1]}")
    return output_type(op, (dshape[0],), wshape[0], str(a["out"]), bits)


def compute(data: te.Tensor, weight: te.Tensor, post: te.Tensor, *, channels_in: int, clamp, out: str) -> te.Tensor:
    """The TE definition: popcount reduction (:data:`BLOCK`), accumulator, output transform."""
    n = data.shape[0]
    o, wd = weight.shape
    bits = int(str(data.dtype)[4:])
    k = te.reduce_axis((0, wd), name="k")
    acc_t = accumulator_type(str(data.dtype), int(wd) * bits)
    popc = te.compute((n, o), lambda b, c: te.sum(popcount_as(data[b, k] ^ weight[c, k], acc_t), axis=k),
                      name=BLOCK)
    acc = te.compute(popc.shape, lambda b, c: channels_in - 2 * popc[b, c].astype("int32"), name="bnncc_acc")
    return output_compute(acc, post, out, clamp, bits)


def _infer(call, _ctx):
    return relax.TensorType(*bdense_type(*shape_of(call.args[0]), *shape_of(call.args[1]), call.attrs))


def _legalize(bb, call):
    a = call.attrs
    return bb.call_te(compute, *call.args, channels_in=int(a["channels_in"]), clamp=ints(a["clamp"]),
                      out=str(a["out"]), primfunc_name_hint=BLOCK)


BDENSE = register_op("bdense", 3, _infer, _legalize, "Binary fully-connected layer on packed words.")


def bdense(data: relax.Expr, kernel: np.ndarray, multiplier=None, bias=None, *,
           clamp: Sequence[int] | None = None, out: str = "float32") -> relax.Call:
    """Binary dense layer of packed [N, words] ``data`` with a constant kernel [K, O] (Keras layout)."""
    op = OP_NAME
    dshape, ddtype = static_shape(op, "input", data)
    bits = packed_bits(op, ddtype)
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise OpError(op, f"kernel must be rank 2 [K, O], got shape {kernel.shape}")
    k, o = kernel.shape
    clamp = clamp_range(clamp)
    post, flip = post_constants(op, o, multiplier, bias, clamp, out, k)
    pm1 = binary_weights(kernel.T, flip)
    if out == "bitpacked":
        pm1, post = pad_packed_channels(pm1, post, bits, k)
    wpacked = reference.bitpack(pm1, bits=bits)
    a = dict(channels_in=k, clamp=clamp, out=out)
    bdense_type(dshape, ddtype, wpacked.shape, wpacked.dtype.name, a)
    return relax.Call(BDENSE, [data, relax.const(wpacked), relax.const(post)], attrs(**a))


def unpacked_kernel(call: relax.Call) -> np.ndarray:
    """The ±1 [O, K] kernel of a bdense call, from its packed constant weights."""
    w = call.args[1].value.numpy()
    return reference.unpack(w, int(call.attrs["channels_in"]), int(str(w.dtype)[4:]))


def rebuild(call: relax.Call, data: relax.Expr, multiplier, bias, clamp, out: str) -> relax.Call:
    """The same dense layer with another output transform (the builder re-derives thresholds and packing)."""
    kernel = unpacked_kernel(call)
    if str(call.attrs["out"]) == "float32":
        kernel = kernel[:int(call.ty.shape[-1])]
    return bdense(data, kernel.T, multiplier, bias, clamp=clamp, out=out)
