"""Binary operators as TVM Relax ops (the design's "relay_ops": Relay's successor is Relax)."""

from .compute import BCONV_BLOCK, BDENSE_BLOCK, BITPACK_BLOCK, BMAXPOOL_BLOCK, OUTPUT_BLOCK, PAD_BLOCK
from .ops import bconv2d, bdense, bitpack, bmaxpool2d, output_thresholds

__all__ = ["BCONV_BLOCK", "BDENSE_BLOCK", "BITPACK_BLOCK", "BMAXPOOL_BLOCK", "OUTPUT_BLOCK", "PAD_BLOCK",
           "bitpack", "bconv2d", "bdense", "bmaxpool2d", "output_thresholds"]
