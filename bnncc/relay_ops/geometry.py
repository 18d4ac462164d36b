"""Window geometry of convolutions and pools, written once: output sizes and the border classes of padding."""

from __future__ import annotations

from tvm import tirx


def window_output_size(size: int, window: int, stride: int, dilation: int, pad_before: int, pad_after: int) -> int:
    """Output positions of a sliding window along one axis (floor mode)."""
    return (size + pad_before + pad_after - dilation * (window - 1) - 1) // stride + 1


def output_hw(in_hw, window_hw, strides, dilation, padding) -> tuple[int, int]:
    """(OH, OW) for NHWC data; ``padding`` is (top, left, bottom, right)."""
    pt, pl, pb, pr = padding
    return (window_output_size(in_hw[0], window_hw[0], strides[0], dilation[0], pt, pb),
            window_output_size(in_hw[1], window_hw[1], strides[1], dilation[1], pl, pr))


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
