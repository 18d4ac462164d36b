"""TE compute definitions of the binary operators (what legalization lowers them to).

Block names are stable (``bnncc_*``): the schedules in :mod:`bnncc.schedules` find the blocks by these names.
"""

from __future__ import annotations

from tvm import te, tirx, topi

from ..reference import INT32_MAX, words_per_group

# Block names of the TE computes: schedules, passes, tuning and the profiler find the blocks by these names.
BITPACK_BLOCK = "bnncc_bitpack"
BCONV_BLOCK = "bnncc_bconv"
BDENSE_BLOCK = "bnncc_bdense"
BMAXPOOL_BLOCK = "bnncc_bmaxpool"
OUTPUT_BLOCK = "bnncc_output"  # the output transform of bconv/bdense
PAD_BLOCK = "bnncc_pad"


def _popcount(x: te.Tensor | tirx.PrimExpr) -> tirx.PrimExpr:
    return tirx.popcount(x).astype("int32")


def _accumulator_type(word: str, max_bits: int) -> str:
    """Popcounts accumulate in the word type (no per-lane widening in the inner loop) when the sum fits."""
    return word if max_bits < 2 ** int(word[4:]) else "uint32"


def _popcount_as(x, dtype: str):
    p = tirx.popcount(x)
    return p if str(x.ty) == dtype else p.astype(dtype)


def bitpack(data: te.Tensor, bits: int, groups: int) -> te.Tensor:
    """Float [..., C] → uint{bits} [..., groups·⌈C/groups/bits⌉]; bit = (x < 0), zero padding bits."""
    c = int(data.shape[-1])
    cg = c // groups
    wg = words_per_group(c, groups, bits)
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

    return te.compute((*data.shape[:-1], groups * wg), word, name=BITPACK_BLOCK)


def _transform(acc: te.Tensor, post: te.Tensor, out: str, clamp, bits: int) -> te.Tensor:
    """The output transform on [..., O] int32 accumulators.

    float32: y = bias + multiplier · clamp(acc), ``post`` = [[multiplier], [bias]].
    bitpacked: bit = acc < threshold (``post`` int32 [O]; the clamp and the sign of the multiplier were folded
    into the thresholds and weights by the builder), packed into uint{bits} words along O.
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


class BorderClasses:
    """Output rows (or columns) grouped by which kernel taps fall into the padding.

    Rows ``y < a`` are each their own class (top border), rows in ``[a, b)`` share class ``a`` (interior, no
    padded tap), rows ``y ≥ b`` are classes ``a + 1 + (y − b)`` (bottom border). Maps smaller than the
    kernel, where borders overlap, keep one class per row.
    """

    def __init__(self, size: int, out: int, kernel: int, stride: int, dilation: int, pad: int):
        self.size, self.stride, self.dilation, self.pad = size, stride, dilation, pad
        a = min(out, -(-pad // stride))
        b = max(0, min(out, -(-(size + pad - (kernel - 1) * dilation) // stride)))
        self.a, self.b = (a, b) if a <= b else (out, out)
        self.count = self.a + 1 + (out - self.b) if self.a < out else out

    def of(self, y):
        """The class of output row ``y``."""
        if self.a == self.b:  # no interior
            return y
        return tirx.if_then_else(y < self.a, y, tirx.if_then_else(y < self.b, self.a, y - self.b + self.a + 1))

    def row(self, c):
        """A representative output row of class ``c``."""
        if self.a == self.b:
            return c
        return tirx.if_then_else(c <= self.a, c, c - self.a - 1 + self.b)

    def padded(self, y, tap):
        r = y * self.stride + tap * self.dilation - self.pad
        return tirx.any(r < 0, r >= self.size)


def _weight_access(weight: te.Tensor, weight_layout: str):
    """(O, KH, KW, words, wt(c, i, j, k)) for packed OHWI or HWIO weights."""
    if weight_layout == "HWIO":
        kh, kw, wg, o = (int(s) for s in weight.shape)
        return o, kh, kw, wg, lambda c, i, j, k: weight[i, j, k, c]
    o, kh, kw, wg = (int(s) for s in weight.shape)
    return o, kh, kw, wg, lambda c, i, j, k: weight[c, i, j, k]


def _conv_geometry(data_shape, kh, kw, strides, dilation, padding):
    n, h, w, _ = (int(s) for s in data_shape)
    pt, pl, pb, pr = padding
    oh = (h + pt + pb - dilation[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + pl + pr - dilation[1] * (kw - 1) - 1) // strides[1] + 1
    return (n, h, w, oh, ow, BorderClasses(h, oh, kh, strides[0], dilation[0], pt),
            BorderClasses(w, ow, kw, strides[1], dilation[1], pl))


def bconv2d_pad_correction(data_shape, weight: te.Tensor, *, channels_in: int, strides, dilation, padding,
                           groups: int, weight_layout: str = "OHWI") -> te.Tensor:
    """int32 [row classes, column classes, O]: what zero-padded taps wrongly added as +1 pixels.

    With pad_value=0, taps in the padding must not count; the kernel pads with +1 (zero bits) and subtracts
    Σ_padded (kg − 2·popcount(w_tap)). It depends only on the weights and the border class of the position,
    so it is computed from the constant weights at compile time (Relax folds this call) into a small table.
    """
    o, kh, kw, wg, wt = _weight_access(weight, weight_layout)
    _, _, _, _, _, rows, cols = _conv_geometry(data_shape, kh, kw, strides, dilation, padding)
    kg = channels_in // groups
    k = te.reduce_axis((0, wg), name="wk")
    wpop = te.compute((o, kh, kw), lambda c, i, j: te.sum(_popcount(wt(c, i, j, k)), axis=k), name="bnncc_wpop")
    ci = te.reduce_axis((0, kh), name="ci")
    cj = te.reduce_axis((0, kw), name="cj")
    return te.compute(
        (rows.count, cols.count, o),
        lambda cy, cx, c: te.sum(
            tirx.if_then_else(tirx.any(rows.padded(rows.row(cy), ci), cols.padded(cols.row(cx), cj)),
                              kg - 2 * wpop[c, ci, cj], 0), axis=[ci, cj]),
        name="bnncc_pad_correction",
    )


def bconv2d(data: te.Tensor, weight: te.Tensor, post: te.Tensor, correction: te.Tensor | None = None, *,
            channels_in: int, strides, dilation, padding, pad_value: int, groups: int, clamp, out: str,
            weight_layout: str = "OHWI") -> te.Tensor:
    """Binary conv2d, NHWC packed input × packed weights → NHWO output (float32 or packed).

    Weights are packed OHWI ([O, KH, KW, words]) or HWIO ([KH, KW, words, O], output channels contiguous:
    what vectorizing over output channels wants). ``correction`` is the table of
    :func:`bconv2d_pad_correction`, needed for pad_value=0 with padding.
    """
    o, kh, kw, wg, wt = _weight_access(weight, weight_layout)
    n, h, w, oh, ow, rows, cols = _conv_geometry(data.shape, kh, kw, strides, dilation, padding)
    bits = int(str(data.dtype)[4:])
    sh, sw = strides
    dh, dw = dilation
    pt, pl, pb, pr = padding
    og = o // groups
    kg = channels_in // groups
    # Padded pixels are +1, i.e. zero bits; pad_value=0 is corrected by the table.
    xpad = topi.nn.pad(data, [0, pt, pl, 0], [0, pb, pr, 0], pad_value=0, name=PAD_BLOCK) \
        if any(padding) else data
    rkh = te.reduce_axis((0, kh), name="kh")
    rkw = te.reduce_axis((0, kw), name="kw")
    rk = te.reduce_axis((0, wg), name="k")
    acc_t = _accumulator_type(str(data.dtype), kh * kw * wg * bits)
    popc = te.compute(
        (n, oh, ow, o),
        lambda b, y, x, c: te.sum(
            _popcount_as(xpad[b, y * sh + rkh * dh, x * sw + rkw * dw, (c // og) * wg + rk] ^ wt(c, rkh, rkw, rk),
                         acc_t),
            axis=[rkh, rkw, rk]),
        name=BCONV_BLOCK,
    )
    if correction is None:
        acc = te.compute(popc.shape, lambda b, y, x, c: kg * kh * kw - 2 * popc[b, y, x, c].astype("int32"),
                         name="bnncc_acc")
    else:
        acc = te.compute(popc.shape,
                         lambda b, y, x, c: kg * kh * kw - 2 * popc[b, y, x, c].astype("int32")
                         - correction[rows.of(y), cols.of(x), c],
                         name="bnncc_acc")
    return _transform(acc, post, out, clamp, bits)


def bdense(data: te.Tensor, weight: te.Tensor, post: te.Tensor, *, channels_in: int, clamp, out: str) -> te.Tensor:
    """Binary dense: packed [N, W] × packed [O, W] → [N, O] (float32 or packed)."""
    n = data.shape[0]
    o, wd = weight.shape
    bits = int(str(data.dtype)[4:])
    k = te.reduce_axis((0, wd), name="k")
    acc_t = _accumulator_type(str(data.dtype), int(wd) * bits)
    popc = te.compute((n, o), lambda b, c: te.sum(_popcount_as(data[b, k] ^ weight[c, k], acc_t), axis=k),
                      name=BDENSE_BLOCK)
    acc = te.compute(popc.shape, lambda b, c: channels_in - 2 * popc[b, c].astype("int32"), name="bnncc_acc")
    return _transform(acc, post, out, clamp, bits)


def bmaxpool2d(data: te.Tensor, *, pool, strides, padding) -> te.Tensor:
    """Max-pool on packed NHWC data: the AND of the words in the window (padding is ignored)."""
    n, h, w, c = (int(s) for s in data.shape)
    pt, pl, pb, pr = padding
    dtype = str(data.dtype)
    ones = ~tirx.const(0, dtype)
    xpad = topi.nn.pad(data, [0, pt, pl, 0], [0, pb, pr, 0], pad_value=ones, name=PAD_BLOCK) \
        if any(padding) else data
    oh = (h + pt + pb - pool[0]) // strides[0] + 1
    ow = (w + pl + pr - pool[1]) // strides[1] + 1
    band = te.comm_reducer(lambda a, b: a & b, lambda t: ~tirx.const(0, t), name="bitwise_and")
    i = te.reduce_axis((0, pool[0]), name="pi")
    j = te.reduce_axis((0, pool[1]), name="pj")
    return te.compute(
        (n, oh, ow, c),
        lambda b, y, x, k: band(xpad[b, y * strides[0] + i, x * strides[1] + j, k], axis=[i, j]),
        name=BMAXPOOL_BLOCK,
    )
