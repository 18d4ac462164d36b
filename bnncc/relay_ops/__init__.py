"""bnncc's operators as TVM Relax ops (the design's "relay_ops": Relay's successor is Relax), one module each.

Each op module holds the op's whole definition: its type rule (validation with :class:`bnncc.errors.OpError`
naming the op and the reason), its registration (``bnncc.<name>``, type inference, legalization), its TE compute
(block names as constants: the schedules, passes, tuner and profiler find the blocks by them) and its builder.
Shared pieces are written once: :mod:`.common` (registration, types), :mod:`.geometry` (window sizes, border
classes), :mod:`.output_transform` (multiplier/bias/clamp and packed-output thresholds). The numpy oracle of
every op is :mod:`bnncc.reference`; the semantics are in ``docs/semantics.md``. Graph passes over these ops:
:mod:`bnncc.relay_ops.passes`.

- ``bnncc.bitpack(x)``: float [..., C] → uint{bits} [..., groups·⌈C/groups/bits⌉]
- ``bnncc.bconv2d(x, w, post)``: packed NHWC × packed OHWI/HWIO → NHWO float32, or packed NHWC words
- ``bnncc.bdense(x, w, post)``: packed [N, W] × packed [O, W] → [N, O] float32, or packed words
- ``bnncc.bmaxpool2d(x)``: packed NHWC → packed NHWC (bitwise AND over the window)
- ``bnncc.bitplanes(x)`` / ``bnncc.bsconv2d(planes, w, offset, post)``: k-bit DoReFa activations as bit-planes ×
  binary or ternary weights → NHWO float32 (bit-serial popcounts)
"""

from .bconv2d import BCONV2D, bconv2d
from .bconv2d import BLOCK as BCONV_BLOCK
from .bdense import BDENSE, bdense
from .bdense import BLOCK as BDENSE_BLOCK
from .bitpack import BITPACK, bitpack
from .bitpack import BLOCK as BITPACK_BLOCK
from .bmaxpool2d import BLOCK as BMAXPOOL_BLOCK
from .bmaxpool2d import BMAXPOOL2D, bmaxpool2d
from .bsconv2d import BITPLANES, BSCONV2D, bitplanes, bsconv2d
from .bsconv2d import BLOCK as BSCONV_BLOCK
from .bsconv2d import PLANES_BLOCK as BITPLANES_BLOCK
from .common import PAD_BLOCK, WORD_BITS
from .output_transform import OUTPUT_BLOCK, output_thresholds

# The blocks holding a binary conv/dense popcount reduction.
BINARY_REDUCTION_BLOCKS = (BCONV_BLOCK, BDENSE_BLOCK)

__all__ = ["BCONV2D", "BCONV_BLOCK", "BDENSE", "BDENSE_BLOCK", "BINARY_REDUCTION_BLOCKS", "BITPACK", "BITPACK_BLOCK",
           "BITPLANES", "BITPLANES_BLOCK", "BMAXPOOL2D", "BMAXPOOL_BLOCK", "BSCONV2D", "BSCONV_BLOCK", "OUTPUT_BLOCK",
           "PAD_BLOCK", "WORD_BITS", "bconv2d", "bdense", "bitpack", "bitplanes", "bmaxpool2d", "bsconv2d",
           "output_thresholds"]
