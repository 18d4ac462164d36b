"""``bnncc.bitpack(x)``: float [..., C] → uint{bits} [..., groups·⌈C/groups/bits⌉] (attrs: bits, groups).

Bit i of word j holds channel bits·j + i of its group, set when the value is negative (sign(0) = +1); each group
starts a new word, and the padding bits of a partial word are zero.
"""

from __future__ import annotations

from tvm import relax, te, tirx

from .. import reference
from ..errors import OpError
from .common import WORD_BITS, attrs, register_op, shape_of, static_shape

BLOCK = "bnncc_bitpack"
OP_NAME = "bnncc.bitpack"


def bitpack_type(shape, dtype, bits, groups) -> tuple[tuple[int, ...], str]:
    if len(shape) < 1:
        raise OpError(OP_NAME, "input must have at least one axis (channels last)")
    if not dtype.startswith("float"):
        raise OpError(OP_NAME, f"input must be floating point, got {dtype}")
    if bits not in WORD_BITS:
        raise OpError(OP_NAME, f"bits must be one of {WORD_BITS}, got {bits}")
    c = shape[-1]
    if groups < 1 or c % groups:
        raise OpError(OP_NAME, f"{c} channels cannot be split into {groups} groups")
    return (*shape[:-1], groups * reference.words_per_group(c, groups, bits)), f"uint{bits}"


def compute(data: te.Tensor, bits: int, groups: int) -> te.Tensor:
    """The TE definition (block :data:`BLOCK`)."""
    c = int(data.shape[-1])
    cg = c // groups
    wg = reference.words_per_group(c, groups, bits)
    dtype = f"uint{bits}"
    i = te.reduce_axis((0, bits), name="bit")

    def word(*idx):
        *lead, j = idx
        if cg % bits == 0:
            # Whole words (word j holds channels j·bits + i): the form the bitpack tensor intrinsic matches.
            bit = tirx.if_then_else(data(*lead, j * bits + i) < tirx.const(0, data.dtype),
                                    tirx.const(1, dtype), tirx.const(0, dtype))
            return te.sum(bit << i.astype(dtype), axis=i)
        g, jj = j // wg, j % wg
        ch = jj * bits + i
        neg = data(*lead, tirx.min(g * cg + ch, c - 1)) < tirx.const(0, data.dtype)
        bit = tirx.if_then_else(tirx.all(ch < cg, neg), tirx.const(1, dtype), tirx.const(0, dtype))
        return te.sum(bit << i.astype(dtype), axis=i)

    return te.compute((*data.shape[:-1], groups * wg), word, name=BLOCK)


def _infer(call, _ctx):
    shape, dtype = bitpack_type(*shape_of(call.args[0]), int(call.attrs["bits"]), int(call.attrs["groups"]))
    return relax.TensorType(shape, dtype)


def _legalize(bb, call):
    a = call.attrs
    return bb.call_te(compute, call.args[0], int(a["bits"]), int(a["groups"]), primfunc_name_hint=BLOCK)


BITPACK = register_op("bitpack", 1, _infer, _legalize, "Pack signs of float channels into words.")


def bitpack(data: relax.Expr, bits: int = 32, groups: int = 1) -> relax.Call:
    """Pack ``data < 0`` along the last axis into ``bits``-bit words (each group into its own words)."""
    bitpack_type(*static_shape(OP_NAME, "input", data), int(bits), int(groups))
    return relax.Call(BITPACK, [data], attrs(bits=int(bits), groups=int(groups)))
