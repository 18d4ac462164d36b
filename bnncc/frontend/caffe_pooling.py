"""Caffe's pooling geometry (BVLC ``PoolingLayer``), which differs from TensorFlow's and ONNX's defaults:

- output size ``⌈(size + 2·pad − kernel) / stride⌉ + 1`` (``round_mode: CEIL``, the default; ``FLOOR`` rounds
  down), then, if there is padding, one less when the last window would start in the padding past the input
  (``(out − 1)·stride ≥ size + pad``). Without padding Caffe keeps such a window and pools nothing there (−FLT_MAX
  for MAX, a negative divisor for AVE): bnncc refuses that geometry rather than copy it;
- a window may then run past the padded input (ceil rounding): MAX takes the maximum of the input pixels it
  covers; AVE sums them and divides by the window's size clipped to ``size + pad`` — padding counts, the part past
  the padding does not: ``divisor = (min(start + kernel, size + pad) − start)`` per axis, ``start = i·stride − pad``.

PyTorch's ``ceil_mode=True, count_include_pad=True`` computes the same (the oracle of the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Unsupported


@dataclass(frozen=True)
class PoolGeometry:
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, left, bottom, right: every window whole inside
    out: tuple[int, int]
    crop: tuple[int, int]  # the input rows/columns any window reads (fewer than the input with FLOOR rounding)
    last_divisor: tuple[int, int]  # Caffe's AVE divisor of the last row / column of windows (the others: kernel)

    def divisor(self, axis: int) -> np.ndarray:
        """The AVE divisor of each output row (axis 0) or column (axis 1)."""
        d = np.full(self.out[axis], self.kernel[axis], np.float64)
        d[-1] = self.last_divisor[axis]
        return d


def _hw(p, name: str, default: int | None) -> tuple[int, int] | None:
    """(h, w) of ``kernel_size`` or ``stride``: given once, or as ``kernel_h``/``kernel_w`` (``stride_h``/...)."""
    has, base = p.HasField, "kernel" if name == "kernel_size" else name
    if has(f"{base}_h") or has(f"{base}_w"):
        if has(name):
            raise Unsupported(f"either {name} or {base}_h/{base}_w may be given, not both")
        if not (has(f"{base}_h") and has(f"{base}_w")):
            raise Unsupported(f"{base}_h and {base}_w must be given together")
        return int(getattr(p, f"{base}_h")), int(getattr(p, f"{base}_w"))
    if not has(name):
        return None if default is None else (default, default)
    return int(getattr(p, name)), int(getattr(p, name))


def _pad(p) -> tuple[int, int]:
    if p.HasField("pad_h") or p.HasField("pad_w"):
        if p.HasField("pad"):
            raise Unsupported("either pad or pad_h/pad_w may be given, not both")
        return int(p.pad_h), int(p.pad_w)
    return int(p.pad), int(p.pad)


def check_pooling(p) -> None:
    """What a pooling layer's parameters alone decide (the input size is not known yet)."""
    if p.pool == p.STOCHASTIC:
        raise Unsupported("STOCHASTIC pooling is not supported (MAX and AVE are)")
    stride, pad = _hw(p, "stride", 1), _pad(p)
    if p.global_pooling:
        if _hw(p, "kernel_size", None) is not None:
            raise Unsupported("global_pooling takes no kernel size")
        if pad != (0, 0) or stride != (1, 1):
            raise Unsupported("global_pooling takes only pad 0 and stride 1")
        return
    kernel = _hw(p, "kernel_size", None)
    if kernel is None:
        raise Unsupported("kernel_size (or kernel_h and kernel_w) is not given")
    if min(*kernel, *stride) < 1:
        raise Unsupported(f"kernel {kernel} and stride {stride} must be at least 1")
    if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise Unsupported(f"pad {pad} must be smaller than the kernel {kernel}")


def _axis(size: int, k: int, s: int, pad: int, ceil: bool, name: str) -> tuple[int, int, int, int]:
    """(output size, padding after, input kept, AVE divisor of the last window) along one axis. Only the last
    window can run past ``size + pad`` (ceil and floor rounding differ by one window), so every other divisor is
    ``k``: nothing here is sized by the (file-given) geometry."""
    span = size + 2 * pad - k
    if span < 0:
        raise Unsupported(f"the kernel ({k}) is larger than the padded input {name} ({size + 2 * pad})")
    out = (-(-span // s) if ceil else span // s) + 1
    if pad and (out - 1) * s >= size + pad:
        out -= 1
    if (out - 1) * s >= size + pad:
        raise Unsupported(f"with stride {s} the last pooling window along {name} starts past the input "
                          f"({size}): Caffe pools nothing there (round_mode: FLOOR, or a padding, avoids it)")
    after = (out - 1) * s + k - size - pad
    last = (out - 1) * s - pad
    return out, max(after, 0), size + min(after, 0), min(last + k, size + pad) - last


def pool_geometry(p, h: int, w: int) -> PoolGeometry:
    """The geometry of pooling an ``h × w`` input (see the module's docstring)."""
    check_pooling(p)
    if p.global_pooling:
        kernel, stride, pad = (h, w), (1, 1), (0, 0)
    else:
        kernel, stride, pad = _hw(p, "kernel_size", None), _hw(p, "stride", 1), _pad(p)
    ceil = p.round_mode == p.CEIL
    oh, bottom, ch, dh = _axis(h, kernel[0], stride[0], pad[0], ceil, "H")
    ow, right, cw, dw = _axis(w, kernel[1], stride[1], pad[1], ceil, "W")  # dh, dw: the last windows' divisors
    return PoolGeometry(kernel, stride, (pad[0], pad[1], bottom, right), (oh, ow), (ch, cw), (dh, dw))
