"""Window geometry of convolutions and pools, written once: output sizes and the border classes of padding."""

from __future__ import annotations

from tvm import tirx

from .. import reference
from ..errors import OpError


def window_output_size(size: int, window: int, stride: int, dilation: int, pad_before: int, pad_after: int) -> int:
    """Output positions of a sliding window along one axis (floor mode)."""
    return (size + pad_before + pad_after - dilation * (window - 1) - 1) // stride + 1


def output_hw(in_hw, window_hw, strides, dilation, padding) -> tuple[int, int]:
    """(OH, OW) for NHWC data; ``padding`` is (top, left, bottom, right)."""
    pt, pl, pb, pr = padding
    return (window_output_size(in_hw[0], window_hw[0], strides[0], dilation[0], pt, pb),
            window_output_size(in_hw[1], window_hw[1], strides[1], dilation[1], pl, pr))


def explicit_window(op: str, dshape, padding, window, strides, dilation=(1, 1), *, names=("strides", "dilation")
                    ) -> tuple[int, int, int, int]:
    """Validate a conv/pool builder's window arguments on NHWC data (``names``: what the two pairs it checks are
    called in errors; a pool checks its size and strides) and return the padding as (top, left, bottom, right)."""
    pairs = (window, strides) if names[0].startswith("pool") else (strides, dilation)
    if len(pairs[0]) != 2 or len(pairs[1]) != 2:
        raise OpError(op, f"{names[0]} and {names[1]} need 2 values, got {pairs[0]} and {pairs[1]}")
    if len(dshape) != 4:
        raise OpError(op, f"input must be NHWC (rank 4), got rank {len(dshape)} {dshape}")
    if min(*pairs[0], *pairs[1]) < 1:
        what = "pool size" if names[0].startswith("pool") else names[0]
        raise OpError(op, f"{what} and {names[1]} must be positive, got {pairs[0]} and {pairs[1]}")
    try:
        return reference.explicit_padding(padding, dshape[1:3], window, strides, dilation)
    except ValueError as e:
        raise OpError(op, str(e)) from e


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
