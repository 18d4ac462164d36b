"""RQ2's networks: QuickNet's residual stages alone, with and without their full-precision shortcuts.

A stage is ``blocks`` QuickNet residual blocks (binary 3×3 conv with ReLU on the accumulator → BatchNorm →
``x + shortcut``, :func:`bnncc.models.quicknet._residual`) at one of QuickNet's stage shapes; the variant without
shortcuts drops the add. With the shortcut, every block's float output is written, added to the float shortcut
and packed again; without it, BatchNorm and the sign fold into the conv, which writes packed bits straight away.
The latency difference is what the full-precision shortcuts cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# QuickNet's stages at 224×224: (height = width, channels); four residual blocks each.
QUICKNET_STAGES: tuple[tuple[int, int], ...] = ((56, 64), (28, 128), (14, 256), (7, 512))
BLOCKS_PER_STAGE = 4


def stage(size: int, channels: int, blocks: int = BLOCKS_PER_STAGE, shortcut: bool = True, seed: int = 0):
    """A Keras model of one QuickNet stage, seeded random weights, calibrated BatchNorm (as the zoo's)."""
    from .. import models
    from .._tf import keras
    from ..models.quicknet import binary_block

    inp = keras.Input((size, size, channels))
    x = inp
    for _ in range(blocks):
        x = binary_block(x) + x if shortcut else binary_block(x)
    model = keras.Model(inp, x, name=f"stage{size}x{channels}{'' if shortcut else '_noshortcut'}")
    rng = np.random.default_rng([seed, 2])
    models.randomize_weights(model, rng)
    models.calibrate_batchnorm(model, rng)
    return model


def stages(shapes: Sequence[tuple[int, int]] = QUICKNET_STAGES, blocks: int = BLOCKS_PER_STAGE):
    """[(label, with-shortcut model, without-shortcut model)] for each stage shape."""
    return [(f"{s}×{s}×{c}", stage(s, c, blocks, True), stage(s, c, blocks, False)) for s, c in shapes]
