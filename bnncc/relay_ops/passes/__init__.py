"""Graph passes over Relax modules holding bnncc ops, each a ``tvm.transform`` module pass returning a new module.

The order they run in is :mod:`bnncc.pipeline`'s pass list.
"""

from .annotate_macs import AnnotateMacs
from .fuse_binary_layers import FuseBinaryLayers, fuse_binary_layers
from .pack_in_producers import PackInProducers
from .weight_layout import UseWeightLayout

__all__ = ["AnnotateMacs", "FuseBinaryLayers", "PackInProducers", "UseWeightLayout", "fuse_binary_layers"]
