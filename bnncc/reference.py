"""The numpy oracle: binary operators computed straight from their definition (docs/semantics.md).

Everything here works on unpacked ±1 values with plain integer arithmetic — no popcount tricks — so that it can
check the compiled kernels. Tests and benchmarks share it. The compiler uses only its geometry helpers
(padding) and :func:`bitpack` to pack constant weights; the Larq/LCE tests check those independently.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

INT32_MAX = 2**31 - 1


def binarize(x: np.ndarray) -> np.ndarray:
    """sign(x) with sign(0) = +1, as int8 ±1."""
    return np.where(np.asarray(x) < 0, -1, 1).astype(np.int8)


def words_per_group(channels: int, groups: int, bits: int) -> int:
    return -(-(channels // groups) // bits)


def bitpack(x: np.ndarray, bits: int = 32, groups: int = 1) -> np.ndarray:
    """Pack ``x < 0`` along the last axis: bit i of word j holds channel bits·j + i (per group)."""
    x = np.asarray(x)
    c = x.shape[-1]
    cg = c // groups
    wg = words_per_group(c, groups, bits)
    neg = (x < 0).reshape(*x.shape[:-1], groups, cg)
    padded = np.zeros((*x.shape[:-1], groups, wg * bits), dtype=bool)
    padded[..., :cg] = neg
    planes = padded.reshape(*x.shape[:-1], groups, wg, bits).astype(np.uint64)
    words = (planes << np.arange(bits, dtype=np.uint64)).sum(axis=-1, dtype=np.uint64)
    return words.reshape(*x.shape[:-1], groups * wg).astype(f"uint{bits}")


def unpack(words: np.ndarray, channels: int, bits: int = 32, groups: int = 1) -> np.ndarray:
    """Inverse of :func:`bitpack`: ±1 int8 values with the padding bits dropped."""
    words = np.asarray(words).astype(np.uint64)
    cg = channels // groups
    wg = words.shape[-1] // groups
    b = (words[..., None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)
    b = b.reshape(*words.shape[:-1], groups, wg * bits)[..., :cg]
    return np.where(b.reshape(*words.shape[:-1], channels) == 1, -1, 1).astype(np.int8)


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding (before, after) along one axis."""
    eff = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def explicit_padding(padding, in_hw, kernel_hw, strides, dilation) -> tuple[int, int, int, int]:
    """'valid' | 'same' | (top, left, bottom, right) → (top, left, bottom, right)."""
    if isinstance(padding, str):
        if min(*strides, *dilation) < 1:
            raise ValueError(f"strides and dilation must be positive, got {tuple(strides)} and {tuple(dilation)}")
        if padding.lower() == "valid":
            return (0, 0, 0, 0)
        if padding.lower() != "same":
            raise ValueError(f"padding must be 'same', 'valid' or 4 integers, not {padding!r}")
        (t, b), (le, r) = (same_padding(in_hw[i], kernel_hw[i], strides[i], dilation[i]) for i in range(2))
        return (t, le, b, r)
    if min(*strides, *dilation) < 1:
        raise ValueError(f"strides and dilation must be positive, got {tuple(strides)} and {tuple(dilation)}")
    try:
        padding = tuple(int(p) for p in padding)
    except TypeError:
        raise ValueError(f"padding must be 'same', 'valid' or 4 integers, not {padding!r}") from None
    if len(padding) != 4 or min(padding) < 0:
        raise ValueError(f"padding must be 'same', 'valid' or 4 non-negative integers, not {padding!r}")
    return padding


def bconv2d_acc(x_pm1: np.ndarray, w_pm1: np.ndarray, strides=(1, 1), dilation=(1, 1), padding="valid",
                pad_value: int = 1, groups: int = 1) -> np.ndarray:
    """Integer accumulators of a binary conv: x NHWC ±1, w OHWI ±1 (I = C/groups) → NHWO int32.

    Padded pixels are ``pad_value`` (+1 or 0), so with 0 they contribute nothing.
    """
    x = np.asarray(x_pm1, dtype=np.int32)
    w = np.asarray(w_pm1, dtype=np.int32)
    n, h, wd, c = x.shape
    o, kh, kw, cg = w.shape
    assert c == cg * groups and o % groups == 0
    t, le, b, r = explicit_padding(padding, (h, wd), (kh, kw), strides, dilation)
    xp = np.full((n, h + t + b, wd + le + r, c), pad_value, dtype=np.int32)
    xp[:, t:t + h, le:le + wd, :] = x
    oh = (h + t + b - dilation[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (wd + le + r - dilation[1] * (kw - 1) - 1) // strides[1] + 1
    og = o // groups
    acc = np.zeros((n, oh, ow, o), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dilation[0], j * dilation[1]
            patch = xp[:, y0:y0 + strides[0] * (oh - 1) + 1:strides[0], x0:x0 + strides[1] * (ow - 1) + 1:strides[1]]
            for g in range(groups):
                xs = patch[..., g * cg:(g + 1) * cg]
                ws = w[g * og:(g + 1) * og, i, j, :]
                acc[..., g * og:(g + 1) * og] += np.einsum("nhwc,oc->nhwo", xs, ws)
    return acc.astype(np.int32)


def bdense_acc(x_pm1: np.ndarray, w_pm1: np.ndarray) -> np.ndarray:
    """Integer accumulators of a binary dense layer: x [N, K] ±1, w [O, K] ±1 → [N, O]."""
    return (np.asarray(x_pm1, dtype=np.int64) @ np.asarray(w_pm1, dtype=np.int64).T).astype(np.int32)


def output_transform(acc: np.ndarray, multiplier, bias, clamp=(-INT32_MAX, INT32_MAX)) -> np.ndarray:
    """y = bias + multiplier · clamp(acc), in float32, per output channel (the last axis)."""
    a = np.clip(np.asarray(acc), clamp[0], clamp[1]).astype(np.float32)
    return (np.asarray(bias, np.float32) + np.asarray(multiplier, np.float32) * a).astype(np.float32)


def bmaxpool2d(x_pm1: np.ndarray, pool=(2, 2), strides=(2, 2), padding="valid") -> np.ndarray:
    """Max-pool of ±1 NHWC values; padded pixels are ignored."""
    x = np.asarray(x_pm1, dtype=np.int32)
    n, h, w, c = x.shape
    t, le, b, r = explicit_padding(padding, (h, w), pool, strides, (1, 1))
    xp = np.full((n, h + t + b, w + le + r, c), np.iinfo(np.int32).min, dtype=np.int32)
    xp[:, t:t + h, le:le + w] = x
    oh = (h + t + b - pool[0]) // strides[0] + 1
    ow = (w + le + r - pool[1]) // strides[1] + 1
    out = np.full((n, oh, ow, c), np.iinfo(np.int32).min, dtype=np.int32)
    for i in range(pool[0]):
        for j in range(pool[1]):
            out = np.maximum(out, xp[:, i:i + strides[0] * (oh - 1) + 1:strides[0],
                                     j:j + strides[1] * (ow - 1) + 1:strides[1]])
    return out.astype(np.int8)


# ------------------------------------------------------------------------------------------ int8 operators
def qdense(x_u8: np.ndarray, w_s8: np.ndarray, x_zero_point: int = 0, bias=None) -> np.ndarray:
    """int8 fully-connected layer: Σ_k (x[m, k] − zx)·w[k, n] + bias[n], exact in int64, returned as int32.

    ``x`` is uint8 [M, K] with zero point ``zx``; ``w`` is int8 [K, N] (symmetric: zero point 0)."""
    acc = (np.asarray(x_u8).astype(np.int64) - int(x_zero_point)) @ np.asarray(w_s8).astype(np.int64)
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)
    if acc.size and (acc.max() > INT32_MAX or acc.min() < -INT32_MAX - 1):
        raise OverflowError("int8 accumulation leaves int32")
    return acc.astype(np.int32)


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """float → uint8: clip(round_half_even(x · (1/scale)) + zero_point, 0, 255)."""
    inv = np.float32(1.0 / scale)
    q = np.round(np.asarray(x, np.float32) * inv) + np.float32(zero_point)
    return np.clip(q, 0, 255).astype(np.uint8)


def dequantize(acc: np.ndarray, scale) -> np.ndarray:
    """int32 accumulators → float32: acc · scale (per output channel, the last axis)."""
    return np.asarray(acc).astype(np.float32) * np.asarray(scale, np.float32)


def im2col(x_u8: np.ndarray, kernel_hw, strides=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0), pad_value=0
           ) -> np.ndarray:
    """NHWC → [N·OH·OW, KH·KW·C] patches (row order n, y, x; column order kh, kw, c), padded with ``pad_value``."""
    x = np.asarray(x_u8)
    n, h, w, c = x.shape
    (kh, kw), (sh, sw), (dh, dw), (t, le, bo, r) = kernel_hw, strides, dilation, padding
    xp = np.full((n, h + t + bo, w + le + r, c), pad_value, x.dtype)
    xp[:, t:t + h, le:le + w] = x
    oh = (h + t + bo - (kh - 1) * dh - 1) // sh + 1
    ow = (w + le + r - (kw - 1) * dw - 1) // sw + 1
    cols = [xp[:, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
            for i in range(kh) for j in range(kw)]
    return np.concatenate(cols, axis=-1).reshape(n * oh * ow, kh * kw * c)


# ------------------------------------------------------------------------------- TensorFlow's fake quantization
class FakeQuant(NamedTuple):
    """TensorFlow's nudged fake-quant parameters, float32 per channel (a scalar range: shape ``[1]``).

    The range is nudged so that real 0 is a code: ``scale`` and ``inv_scale`` are computed separately (as TF
    does), ``quant_zero`` is the code of real 0 counted from the lowest code. ``zero`` marks channels whose
    range is min = max = 0 (TF outputs 0 there); ``divide`` is True for fake_quant_with_min_max_vars, which
    divides by ``scale`` where the other two ops multiply by ``inv_scale``. ``levels`` codes: 2^bits, one fewer
    with ``narrow_range``."""

    nudged_min: np.ndarray
    nudged_max: np.ndarray
    scale: np.ndarray
    inv_scale: np.ndarray
    quant_zero: np.ndarray
    zero: np.ndarray
    levels: int
    divide: bool


def fake_quant_params(min_, max_, num_bits: int = 8, narrow_range: bool = False, *,
                      divide: bool = False) -> FakeQuant:
    """:class:`FakeQuant` for the range [``min_``, ``max_``] (scalars or per-channel vectors), exactly as
    TensorFlow 2.16's ``Nudge`` (tensorflow/core/kernels/fake_quant_ops_functor.h), in float32."""
    f32 = np.float32
    mn, mx = np.atleast_1d(np.asarray(min_, f32)), np.atleast_1d(np.asarray(max_, f32))
    qmin, qmax = int(bool(narrow_range)), (1 << int(num_bits)) - 1
    zero = (mn == 0) & (mx == 0)
    mn, mx = np.where(zero, f32(-1), mn), np.where(zero, f32(1), mx)  # any range: those channels output 0
    steps = f32(qmax) - f32(qmin)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = ((mx - mn) / steps).astype(f32)
        inv = (steps / (mx - mn)).astype(f32)
        from_min = (f32(qmin) - mn / scale).astype(f32)
    # std::round of a value in [qmin, qmax]: half away from zero
    zp = np.where(from_min < qmin, qmin, np.where(from_min > qmax, qmax,
                                                   np.floor(from_min.astype(np.float64) + 0.5))).astype(f32)
    nmin = ((f32(qmin) - zp) * scale).astype(f32)
    nmax = ((f32(qmax) - zp) * scale).astype(f32)
    qz = np.floor(((-nmin) * inv).astype(f32) + f32(0.5)).astype(f32)
    return FakeQuant(nmin, nmax, scale, inv, qz, zero, qmax - qmin + 1, bool(divide))


def fake_quant_codes(x: np.ndarray, p: FakeQuant) -> np.ndarray:
    """The integer TF rounds ``x`` to, relative to real 0: floor(clamp(x) − nudged_min) ·/ scale − quant_zero
    + 0.5), float32 (exact small integers; NaN for NaN, as TF's). Channels are the last axis."""
    f32 = np.float32
    x = np.asarray(x, f32)
    shifted = (np.maximum(np.minimum(x, p.nudged_max), p.nudged_min) - p.nudged_min).astype(f32)
    t = (shifted / p.scale if p.divide else shifted * p.inv_scale).astype(f32)
    k = np.floor(((t - p.quant_zero).astype(f32) + f32(0.5)).astype(f32))
    return np.where(np.isnan(x), x, k).astype(f32)


def fake_quant(x: np.ndarray, p: FakeQuant) -> np.ndarray:
    """TensorFlow's fake-quant output: code · scale in float32 (0 in min = max = 0 channels, NaN for NaN)."""
    out = (fake_quant_codes(x, p) * p.scale).astype(np.float32)
    return np.where(p.zero, np.float32(0), out).astype(np.float32)


def fake_quant_uint8(x: np.ndarray, p: FakeQuant) -> np.ndarray:
    """The uint8 code of a per-tensor ``p`` with at most 256 levels: code + quant_zero, the zero point (NaN reads
    as real 0, i.e. the zero point: it has no code)."""
    k = fake_quant_codes(x, p)
    return np.where(np.isnan(k), p.quant_zero, k + p.quant_zero).astype(np.uint8)

# -------------------------------------------------------------------- k-bit activations and ternary weights
def dorefa_levels(x: np.ndarray, k_bit: int) -> np.ndarray:
    """Larq's ``DoReFa(k_bit, mode="activations")`` as integer levels 0..n, n = 2^k − 1: in float32,
    round_half_even(clip(x, 0, 1) · n) (``tf.round`` rounds half to even). NaN maps to level 0 (Larq: NaN)."""
    n = np.float32(2 ** int(k_bit) - 1)
    x = np.nan_to_num(np.asarray(x, np.float32), nan=0.0)
    return np.round(np.clip(x, np.float32(0), np.float32(1)) * n).astype(np.int32)


def dorefa(x: np.ndarray, k_bit: int) -> np.ndarray:
    """The float32 value Larq's DoReFa activation quantizer outputs: level / n."""
    return (dorefa_levels(x, k_bit).astype(np.float32) / np.float32(2 ** int(k_bit) - 1)).astype(np.float32)


def ste_tern(w: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Larq's ``ste_tern`` with a fixed threshold t, as int8 {−1, 0, +1}: sign(sign(w + t) + sign(w − t)) in
    float32, i.e. +1 for w ≥ |t|, −1 for w ≤ −|t|, 0 between (w = ±t is ±1; t = 0 gives sign(w), sign(0) = 0)."""
    w = np.asarray(w, np.float32)
    t = np.float32(threshold)
    return np.sign(np.sign(w + t) + np.sign(w - t)).astype(np.int8)


def bitplanes(levels: np.ndarray, k_bit: int, bits: int = 32) -> np.ndarray:
    """k-bit levels [..., C] → packed planes [..., ⌈C/bits⌉·k]: word j·k + i holds bit i of the levels of channels
    bits·j … bits·j + bits − 1 (channel bits·j + b in bit b, padding bits 0)."""
    levels = np.asarray(levels, np.int64)
    planes = np.stack([bitpack(-(((levels >> i) & 1).astype(np.float32)), bits) for i in range(int(k_bit))], -1)
    return planes.reshape(*planes.shape[:-2], -1)


def bsconv2d_acc(levels: np.ndarray, w_int: np.ndarray, strides=(1, 1), dilation=(1, 1), padding="valid"
                 ) -> np.ndarray:
    """Integer accumulators of a bit-serial conv: k-bit levels NHWC × integer weights OHWI ({−1, +1} or
    {−1, 0, +1}) → NHWO int32, padded pixels level 0 (Larq's zero padding of DoReFa activations)."""
    return bconv2d_acc(levels, w_int, strides, dilation, padding, pad_value=0)
