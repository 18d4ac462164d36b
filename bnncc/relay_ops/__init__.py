"""Binary operators as TVM Relax ops (the design's "relay_ops": Relay's successor is Relax)."""

from .ops import bconv2d, bdense, bitpack, bmaxpool2d, output_thresholds

__all__ = ["bitpack", "bconv2d", "bdense", "bmaxpool2d", "output_thresholds"]
