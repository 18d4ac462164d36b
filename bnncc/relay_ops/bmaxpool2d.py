"""``bnncc.bmaxpool2d(x)``: max-pool on packed NHWC words → packed NHWC (attrs: pool, strides, padding).

A bit is set for a negative value, so the max of ±1 values is the AND of their bits; padding never wins (it is
all ones, the AND's identity).
"""

from __future__ import annotations

from collections.abc import Sequence

from tvm import relax, te, tirx, topi

from ..errors import OpError
from .common import PAD_BLOCK, attrs, ints, packed_bits, register_op, shape_of, static_shape
from .geometry import explicit_window, output_hw

BLOCK = "bnncc_bmaxpool"
OP_NAME = "bnncc.bmaxpool2d"


def bmaxpool2d_type(dshape, ddtype, a) -> tuple[tuple[int, ...], str]:
    op = OP_NAME
    packed_bits(op, ddtype)
    if len(dshape) != 4:
        raise OpError(op, f"input must be NHWC (rank 4), got rank {len(dshape)} {dshape}")
    pool, strides = ints(a["pool"]), ints(a["strides"])
    if min(*pool, *strides) < 1:
        raise OpError(op, f"pool size and strides must be positive, got {pool} and {strides}")
    n, h, w, c = dshape
    oh, ow = output_hw((h, w), pool, strides, (1, 1), ints(a["padding"]))
    if oh < 1 or ow < 1:
        raise OpError(op, f"a {pool[0]}x{pool[1]} window does not fit the {h}x{w} input")
    return (n, oh, ow, c), ddtype


def compute(data: te.Tensor, *, pool, strides, padding) -> te.Tensor:
    """The TE definition (block :data:`BLOCK`): the AND of the words in the window."""
    n, h, w, c = (int(s) for s in data.shape)
    pt, pl, pb, pr = padding
    dtype = str(data.dtype)
    ones = ~tirx.const(0, dtype)
    xpad = topi.nn.pad(data, [0, pt, pl, 0], [0, pb, pr, 0], pad_value=ones, name=PAD_BLOCK) \
        if any(padding) else data
    oh, ow = output_hw((h, w), pool, strides, (1, 1), padding)
    band = te.comm_reducer(lambda a, b: a & b, lambda t: ~tirx.const(0, t), name="bitwise_and")
    i = te.reduce_axis((0, pool[0]), name="pi")
    j = te.reduce_axis((0, pool[1]), name="pj")
    return te.compute(
        (n, oh, ow, c),
        lambda b, y, x, k: band(xpad[b, y * strides[0] + i, x * strides[1] + j, k], axis=[i, j]),
        name=BLOCK,
    )


def _infer(call, _ctx):
    return relax.TensorType(*bmaxpool2d_type(*shape_of(call.args[0]), call.attrs))


def _legalize(bb, call):
    a = call.attrs
    return bb.call_te(compute, call.args[0], pool=ints(a["pool"]), strides=ints(a["strides"]),
                      padding=ints(a["padding"]), primfunc_name_hint="bnncc_bmaxpool2d")


BMAXPOOL2D = register_op("bmaxpool2d", 1, _infer, _legalize, "Max-pool on packed words.")


def bmaxpool2d(data: relax.Expr, pool: Sequence[int] = (2, 2), strides: Sequence[int] | None = None,
               padding: str | Sequence[int] = "valid") -> relax.Call:
    """Binary max-pool on packed NHWC data (AND of the bits; padding never wins)."""
    op = OP_NAME
    dshape, ddtype = static_shape(op, "input", data)
    pool = ints(pool)
    strides = pool if strides is None else ints(strides)
    pads = explicit_window(op, dshape, padding, pool, strides, names=("pool", "strides"))
    a = dict(pool=pool, strides=strides, padding=pads)
    bmaxpool2d_type(dshape, ddtype, a)
    return relax.Call(BMAXPOOL2D, [data], attrs(**a))
