"""The binary operators as Relax ops: registered once, with type inference and legalization to TE.

Each op is a ``relax.Call`` to ``bnncc.<name>`` with its attributes in a ``DictAttrs``:

- ``bnncc.bitpack(x)``: float [..., C] → uint{bits} [..., groups·⌈C/groups/bits⌉]  (attrs: bits, groups)
- ``bnncc.bconv2d(x, w, post)``: packed NHWC × packed OHWI → NHWO float32, or packed NHWC words
- ``bnncc.bdense(x, w, post)``: packed [N, W] × packed [O, W] → [N, O] float32, or packed words
- ``bnncc.bmaxpool2d(x)``: packed NHWC → packed NHWC (bitwise AND over the window)

``post`` is float32 [2, O] (multiplier; bias) for float output and int32 [O] thresholds for packed output.
The builders (:func:`bitpack`, :func:`bconv2d`, :func:`bdense`, :func:`bmaxpool2d`) validate their arguments
and raise :class:`bnncc.errors.OpError` naming the op and the reason, so a user never sees a TVM traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tvm
from tvm import relax

from .. import reference
from ..errors import OpError
from . import compute

INT32_MAX = reference.INT32_MAX
OUTPUTS = ("float32", "bitpacked")
# 16-bit words suit NEON (cnt + uadalp.8h accumulate in 16-bit lanes); 32/64 suit AVX-512 VPOPCNTDQ.
WORD_BITS = (16, 32, 64)


def _attrs(**kw) -> tvm.ir.DictAttrs:
    return tvm.ir.make_node("ir.DictAttrs", **kw)


def _ints(v) -> tuple[int, ...]:
    return tuple(int(x) for x in v)


def _static_shape(op: str, what: str, expr: relax.Expr) -> tuple[tuple[int, ...], str]:
    ty = getattr(expr, "ty", None)
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise OpError(op, f"{what} must be a tensor of known shape, got {ty}")
    try:
        shape = tuple(int(s) for s in ty.shape)
    except TypeError as e:
        raise OpError(op, f"{what} must have a static shape, got {ty.shape}") from e
    return shape, str(ty.dtype)


def _packed_dtype(op: str, dtype: str) -> int:
    if dtype not in ("uint16", "uint32", "uint64"):
        raise OpError(op, f"input must be bitpacked (uint16, uint32 or uint64 words), got {dtype}")
    return int(dtype[4:])


# ---------------------------------------------------------------------------------------------- shapes
def bitpack_shape(shape, dtype, bits, groups):
    op = "bnncc.bitpack"
    if len(shape) < 1:
        raise OpError(op, "input must have at least one axis (channels last)")
    if not dtype.startswith("float"):
        raise OpError(op, f"input must be floating point, got {dtype}")
    if bits not in WORD_BITS:
        raise OpError(op, f"bits must be one of {WORD_BITS}, got {bits}")
    c = shape[-1]
    if groups < 1 or c % groups:
        raise OpError(op, f"{c} channels cannot be split into {groups} groups")
    return (*shape[:-1], groups * reference.words_per_group(c, groups, bits)), f"uint{bits}"


def _out_channels_shape(op, lead, o, out, bits):
    if out not in OUTPUTS:
        raise OpError(op, f"out must be one of {OUTPUTS}, got {out!r}")
    if out == "float32":
        return (*lead, o), "float32"
    return (*lead, -(-o // bits)), f"uint{bits}"


def bconv2d_shape(dshape, ddtype, wshape, wdtype, a):
    op = "bnncc.bconv2d"
    bits = _packed_dtype(op, ddtype)
    if wdtype != ddtype:
        raise OpError(op, f"weights ({wdtype}) and input ({ddtype}) must use the same word type")
    if len(dshape) != 4:
        raise OpError(op, f"input must be NHWC (rank 4), got rank {len(dshape)} {dshape}")
    if len(wshape) != 4:
        raise OpError(op, f"weights must be packed OHWI (rank 4), got rank {len(wshape)} {wshape}")
    n, h, w, words = dshape
    layout = str(a["weight_layout"])
    if layout not in ("OHWI", "HWIO"):
        raise OpError(op, f"weight_layout must be 'OHWI' or 'HWIO', got {layout!r}")
    if layout == "HWIO":
        kh, kw, wg, o = wshape
    else:
        o, kh, kw, wg = wshape
    groups, cin = int(a["groups"]), int(a["channels_in"])
    if groups < 1 or cin % groups:
        raise OpError(op, f"{cin} input channels cannot be split into {groups} groups")
    if o % groups:
        raise OpError(op, f"{o} output channels cannot be split into {groups} groups")
    need = reference.words_per_group(cin, groups, bits)
    if words != groups * need:
        raise OpError(op, f"input has {words} words per pixel, but {cin} channels in {groups} group(s) "
                          f"of {bits}-bit words need {groups * need}")
    if wg != need:
        raise OpError(op, f"weights have {wg} words per tap, but {cin // groups} channels per group need {need}")
    (sh, sw), (dh, dw) = _ints(a["strides"]), _ints(a["dilation"])
    pt, pl, pb, pr = _ints(a["padding"])
    if min(sh, sw, dh, dw) < 1:
        raise OpError(op, f"strides and dilation must be positive, got {(sh, sw)} and {(dh, dw)}")
    if int(a["pad_value"]) not in (0, 1):
        raise OpError(op, f"pad_value must be 0 or 1, got {a['pad_value']}")
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if oh < 1 or ow < 1:
        raise OpError(op, f"a {kh}x{kw} kernel (dilation {(dh, dw)}) does not fit the padded {h}x{w} input")
    return _out_channels_shape(op, (n, oh, ow), o, str(a["out"]), bits)


def bdense_shape(dshape, ddtype, wshape, wdtype, a):
    op = "bnncc.bdense"
    bits = _packed_dtype(op, ddtype)
    if wdtype != ddtype:
        raise OpError(op, f"weights ({wdtype}) and input ({ddtype}) must use the same word type")
    if len(dshape) != 2 or len(wshape) != 2:
        raise OpError(op, f"input [N, words] and weights [O, words] must be rank 2, got {dshape} and {wshape}")
    cin = int(a["channels_in"])
    need = reference.words_per_group(cin, 1, bits)
    if dshape[1] != need or wshape[1] != need:
        raise OpError(op, f"{cin} input channels need {need} words, got input {dshape[1]}, weights {wshape[1]}")
    return _out_channels_shape(op, (dshape[0],), wshape[0], str(a["out"]), bits)


def bmaxpool2d_shape(dshape, ddtype, a):
    op = "bnncc.bmaxpool2d"
    _packed_dtype(op, ddtype)
    if len(dshape) != 4:
        raise OpError(op, f"input must be NHWC (rank 4), got rank {len(dshape)} {dshape}")
    (ph, pw), (sh, sw) = _ints(a["pool"]), _ints(a["strides"])
    pt, pl, pb, pr = _ints(a["padding"])
    if min(ph, pw, sh, sw) < 1:
        raise OpError(op, f"pool size and strides must be positive, got {(ph, pw)} and {(sh, sw)}")
    n, h, w, c = dshape
    oh, ow = (h + pt + pb - ph) // sh + 1, (w + pl + pr - pw) // sw + 1
    if oh < 1 or ow < 1:
        raise OpError(op, f"a {ph}x{pw} window does not fit the {h}x{w} input")
    return (n, oh, ow, c), ddtype


# ---------------------------------------------------------------------------------------- registration
def _register(name: str, num_inputs: int, infer, legalize, doc: str) -> tvm.ir.Op:
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


def _shape_of(arg):
    return tuple(int(s) for s in arg.ty.shape), str(arg.ty.dtype)


def _infer_bitpack(call, _ctx):
    shape, dtype = bitpack_shape(*_shape_of(call.args[0]), int(call.attrs["bits"]), int(call.attrs["groups"]))
    return relax.TensorType(shape, dtype)


def _infer_bconv2d(call, _ctx):
    return relax.TensorType(*bconv2d_shape(*_shape_of(call.args[0]), *_shape_of(call.args[1]), call.attrs))


def _infer_bdense(call, _ctx):
    return relax.TensorType(*bdense_shape(*_shape_of(call.args[0]), *_shape_of(call.args[1]), call.attrs))


def _infer_bmaxpool2d(call, _ctx):
    return relax.TensorType(*bmaxpool2d_shape(*_shape_of(call.args[0]), call.attrs))


def _conv_kwargs(a) -> dict:
    return dict(channels_in=int(a["channels_in"]), strides=_ints(a["strides"]), dilation=_ints(a["dilation"]),
                padding=_ints(a["padding"]), pad_value=int(a["pad_value"]), groups=int(a["groups"]),
                clamp=_ints(a["clamp"]), out=str(a["out"]), weight_layout=str(a["weight_layout"]))


def _legalize_bitpack(bb, call):
    a = call.attrs
    return bb.call_te(compute.bitpack, call.args[0], int(a["bits"]), int(a["groups"]),
                      primfunc_name_hint="bnncc_bitpack")


def _legalize_bconv2d(bb, call):
    kw = _conv_kwargs(call.attrs)
    args = list(call.args)
    if kw["pad_value"] == 0 and any(kw["padding"]):
        # A table from the constant weights only: FoldConstant evaluates it at compile time.
        table = bb.emit(bb.call_te(
            compute.bconv2d_pad_correction, [int(s) for s in call.args[0].ty.shape], call.args[1],
            **{k: kw[k] for k in ("channels_in", "strides", "dilation", "padding", "groups", "weight_layout")},
            primfunc_name_hint="bnncc_pad_correction"))
        args.append(table)
    return bb.call_te(compute.bconv2d, *args, **kw, primfunc_name_hint="bnncc_bconv2d")


def _legalize_bdense(bb, call):
    a = call.attrs
    return bb.call_te(compute.bdense, *call.args, channels_in=int(a["channels_in"]), clamp=_ints(a["clamp"]),
                      out=str(a["out"]), primfunc_name_hint="bnncc_bdense")


def _legalize_bmaxpool2d(bb, call):
    a = call.attrs
    return bb.call_te(compute.bmaxpool2d, call.args[0], pool=_ints(a["pool"]), strides=_ints(a["strides"]),
                      padding=_ints(a["padding"]), primfunc_name_hint="bnncc_bmaxpool2d")


BITPACK = _register("bitpack", 1, _infer_bitpack, _legalize_bitpack, "Pack signs of float channels into words.")
BCONV2D = _register("bconv2d", 3, _infer_bconv2d, _legalize_bconv2d, "Binary 2-D convolution on packed words.")
BDENSE = _register("bdense", 3, _infer_bdense, _legalize_bdense, "Binary fully-connected layer on packed words.")
BMAXPOOL2D = _register("bmaxpool2d", 1, _infer_bmaxpool2d, _legalize_bmaxpool2d, "Max-pool on packed words.")


# -------------------------------------------------------------------------------------------- builders
def bitpack(data: relax.Expr, bits: int = 32, groups: int = 1) -> relax.Call:
    """Pack ``data < 0`` along the last axis into ``bits``-bit words (each group into its own words)."""
    bitpack_shape(*_static_shape("bnncc.bitpack", "input", data), int(bits), int(groups))
    return relax.Call(BITPACK, [data], _attrs(bits=int(bits), groups=int(groups)))


def pack_conv_weights(kernel_pm1: np.ndarray, bits: int) -> np.ndarray:
    """±1 (or float, sign taken) OHWI kernel → packed uint{bits} [O, KH, KW, words]."""
    return reference.bitpack(np.asarray(kernel_pm1), bits=bits)


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


def _conv_post(op, o, multiplier, bias, clamp, out, kmax):
    if out not in OUTPUTS:
        raise OpError(op, f"out must be one of {OUTPUTS}, got {out!r}")
    m = np.broadcast_to(np.asarray(1.0 if multiplier is None else multiplier, np.float32), (o,))
    b = np.broadcast_to(np.asarray(0.0 if bias is None else bias, np.float32), (o,))
    if out == "float32":
        return np.stack([m, b]).astype(np.float32), np.zeros(o, bool)
    return output_thresholds(m, b, clamp, kmax, op)


def _pad_packed_channels(pm1: np.ndarray, thresholds: np.ndarray, bits: int, kmax: int):
    """Round the output channels up to whole words: the extra channels' bits are never set (threshold below
    any accumulator), so packing needs no bounds check and the epilogue can follow each register tile."""
    o = pm1.shape[0]
    extra = -o % bits
    if not extra:
        return pm1, thresholds
    pm1 = np.concatenate([pm1, np.ones((extra, *pm1.shape[1:]), pm1.dtype)])
    return pm1, np.concatenate([thresholds, np.full(extra, -kmax - 1, thresholds.dtype)])


def _clamp(clamp) -> tuple[int, int]:
    if clamp is None:
        return (-INT32_MAX, INT32_MAX)
    lo, hi = (int(np.clip(v, -INT32_MAX, INT32_MAX)) for v in clamp)
    return lo, hi


def bconv2d(data: relax.Expr, kernel: np.ndarray, multiplier=None, bias=None, *, strides: Sequence[int] = (1, 1),
            dilation: Sequence[int] = (1, 1), padding: str | Sequence[int] = "valid", pad_value: int = 1,
            groups: int = 1, clamp: Sequence[int] | None = None, out: str = "float32",
            kernel_layout: str = "HWIO") -> relax.Call:
    """Binary conv2d of packed NHWC ``data`` with a constant kernel (sign taken; packed at compile time).

    ``kernel`` is HWIO (Keras; I = channels per group) or OHWI. The output transform is
    y = bias + multiplier · clamp(acc) per output channel; ``out="bitpacked"`` emits the bits of y < 0.
    """
    op = "bnncc.bconv2d"
    dshape, ddtype = _static_shape(op, "input", data)
    bits = _packed_dtype(op, ddtype)
    kernel = np.asarray(kernel)
    if kernel.ndim != 4:
        raise OpError(op, f"kernel must be rank 4 ({kernel_layout}), got shape {kernel.shape}")
    if kernel_layout == "HWIO":
        kernel = kernel.transpose(3, 0, 1, 2)
    elif kernel_layout != "OHWI":
        raise OpError(op, f"kernel_layout must be 'HWIO' or 'OHWI', got {kernel_layout!r}")
    o, kh, kw, cg = kernel.shape
    groups, strides, dilation = int(groups), _ints(strides), _ints(dilation)
    if len(strides) != 2 or len(dilation) != 2:
        raise OpError(op, f"strides and dilation need 2 values, got {strides} and {dilation}")
    if len(dshape) != 4:
        raise OpError(op, f"input must be NHWC (rank 4), got rank {len(dshape)} {dshape}")
    if min(*strides, *dilation) < 1:
        raise OpError(op, f"strides and dilation must be positive, got {strides} and {dilation}")
    try:
        pads = reference.explicit_padding(padding, dshape[1:3], (kh, kw), strides, dilation)
    except ValueError as e:
        raise OpError(op, str(e)) from e
    clamp = _clamp(clamp)
    post, flip = _conv_post(op, o, multiplier, bias, clamp, out, kh * kw * cg)
    pm1 = reference.binarize(kernel).astype(np.int8)
    pm1[flip] *= -1
    if out == "bitpacked" and groups == 1:
        pm1, post = _pad_packed_channels(pm1, post, bits, kh * kw * cg)
    attrs = dict(channels_in=cg * groups, strides=strides, dilation=dilation, padding=pads,
                 pad_value=int(pad_value), groups=groups, clamp=clamp, out=out,
                 weight_layout="OHWI")
    wpacked = pack_conv_weights(pm1, bits)
    bconv2d_shape(dshape, ddtype, wpacked.shape, wpacked.dtype.name, attrs)
    return relax.Call(BCONV2D, [data, relax.const(wpacked), relax.const(post)], _attrs(**attrs))


def bdense(data: relax.Expr, kernel: np.ndarray, multiplier=None, bias=None, *,
           clamp: Sequence[int] | None = None, out: str = "float32") -> relax.Call:
    """Binary dense layer of packed [N, words] ``data`` with a constant kernel [K, O] (Keras layout)."""
    op = "bnncc.bdense"
    dshape, ddtype = _static_shape(op, "input", data)
    bits = _packed_dtype(op, ddtype)
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise OpError(op, f"kernel must be rank 2 [K, O], got shape {kernel.shape}")
    k, o = kernel.shape
    clamp = _clamp(clamp)
    post, flip = _conv_post(op, o, multiplier, bias, clamp, out, k)
    pm1 = reference.binarize(kernel.T).astype(np.int8)
    pm1[flip] *= -1
    if out == "bitpacked":
        pm1, post = _pad_packed_channels(pm1, post, bits, k)
    wpacked = reference.bitpack(pm1, bits=bits)
    attrs = dict(channels_in=k, clamp=clamp, out=out)
    bdense_shape(dshape, ddtype, wpacked.shape, wpacked.dtype.name, attrs)
    return relax.Call(BDENSE, [data, relax.const(wpacked), relax.const(post)], _attrs(**attrs))


def bmaxpool2d(data: relax.Expr, pool: Sequence[int] = (2, 2), strides: Sequence[int] | None = None,
               padding: str | Sequence[int] = "valid") -> relax.Call:
    """Binary max-pool on packed NHWC data (AND of the bits; padding never wins)."""
    op = "bnncc.bmaxpool2d"
    dshape, ddtype = _static_shape(op, "input", data)
    pool = _ints(pool)
    strides = pool if strides is None else _ints(strides)
    if len(pool) != 2 or len(strides) != 2:
        raise OpError(op, f"pool and strides need 2 values, got {pool} and {strides}")
    if len(dshape) != 4:
        raise OpError(op, f"input must be NHWC (rank 4), got rank {len(dshape)} {dshape}")
    if min(*pool, *strides) < 1:
        raise OpError(op, f"pool size and strides must be positive, got {pool} and {strides}")
    try:
        pads = reference.explicit_padding(padding, dshape[1:3], pool, strides, (1, 1))
    except ValueError as e:
        raise OpError(op, str(e)) from e
    attrs = dict(pool=pool, strides=strides, padding=pads)
    bmaxpool2d_shape(dshape, ddtype, attrs)
    return relax.Call(BMAXPOOL2D, [data], _attrs(**attrs))
