"""One conv layer at four precisions, interleaved in one run, 1 thread: 2-bit activations × binary weights
(2A1W, ``bitplanes`` → ``bsconv2d``), × ternary weights (2A2W), the 1-bit layer (``bitpack`` → ``bconv2d``) and
the int8 layer (``quantize`` → ``qconv2d`` → ``dequantize``), on the benchmark layers L1–L5 (3×3, stride 1,
'same'; :data:`bnncc.compare.layers.LAYERS`).

Every contender takes the same float32 NHWC input and returns float32 (its quantization of the input included,
identity output transform), and is checked exactly against the numpy oracle before it is timed: the 1-bit and
bit-serial accumulators, the int8 int32 accumulators times the scale. ``2A1W planes`` is the bit-plane
quantization alone (its share of the 2A1W time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import reference as ref
from .layers import LAYERS, BnnccRunner
from .timing import median_times

COLUMNS = ["layer", "shape", "MACs", "1-bit ms", "2A1W ms", "2A2W ms", "int8 ms", "2A1W planes ms",
           "2A1W / 1-bit", "2A2W / 2A1W", "int8 / 2A1W", "exact"]
X_SCALE = 1.0 / 255.0  # the int8 layer's input scale: [0, 1] activations in u8 (zero point 0)


def layer_data(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float input around DoReFa's [0, 1], latent HWIO kernel, ternary HWIO kernel) of a layer."""
    layer = LAYERS[name]
    rng = np.random.default_rng([seed, int(name[1:])])
    x = rng.uniform(-0.2, 1.2, layer.input_shape).astype(np.float32)
    k = rng.standard_normal((3, 3, layer.input_shape[3], layer.filters)).astype(np.float32)
    return x, k, np.where(np.abs(k) < 0.6, 0.0, np.sign(k)).astype(np.float32)


def _int8_kernel(kernel: np.ndarray) -> np.ndarray:
    return np.clip(np.round(kernel * 40), -127, 127).astype(np.int8)


def build(name: str, bits: int = 64, target: str = "host") -> dict[str, Any]:
    """The compiled contenders of a layer: name → (Executable, expected output)."""
    from ..relay_ops import bconv2d, bitpack, bitplanes, bsconv2d
    from ..relay_ops.qconv2d import dequantize, qconv2d, quantize
    from ..testing import compile_graph

    x, k, tern = layer_data(name)
    shape = (x.shape, "float32")
    ohwi = k.transpose(3, 0, 1, 2)
    levels = ref.dorefa_levels(x, 2)
    kq = _int8_kernel(k)

    def int8(bb, x):
        q = quantize(bb, x, X_SCALE, 0)
        acc = qconv2d(bb, q, kq, 0, padding=(1, 1, 1, 1))
        return dequantize(bb, acc, np.full(kq.shape[3], X_SCALE, np.float32))

    q = ref.quantize(x, X_SCALE, 0)
    n, h, w, c = x.shape
    acc8 = ref.qdense(ref.im2col(q, (3, 3), padding=(1, 1, 1, 1)), kq.reshape(9 * c, -1)).reshape(n, h, w, -1)
    graphs = {
        "1-bit": (lambda bb, x: bconv2d(bb.emit(bitpack(x, bits=bits)), k, padding="same", pad_value=1),
                  ref.bconv2d_acc(ref.binarize(x), ref.binarize(ohwi), padding="same", pad_value=1)),
        "2A1W": (lambda bb, x: bsconv2d(bb.emit(bitplanes(x, 2, bits)), k, k_bit=2, padding="same"),
                 ref.bsconv2d_acc(levels, ref.binarize(ohwi), padding="same")),
        "2A2W": (lambda bb, x: bsconv2d(bb.emit(bitplanes(x, 2, bits)), tern, k_bit=2, weights="ternary",
                                        padding="same"),
                 ref.bsconv2d_acc(levels, tern.transpose(3, 0, 1, 2).astype(np.int8), padding="same")),
        "int8": (int8, ref.dequantize(acc8, np.float32(X_SCALE))),
        "2A1W planes": (lambda bb, x: bitplanes(x, 2, bits), ref.bitplanes(levels, 2, bits)),
    }
    return {key: (compile_graph(body, shape, target=target), want) for key, (body, want) in graphs.items()}


def bench_layer(name: str, repeats: int = 15, warmup: int = 3, burst_ms: float = 2.0, bits: int = 64
                ) -> dict[str, Any]:
    """Check every contender exactly, then time them round-robin; one row."""
    x, _, _ = layer_data(name)
    built = build(name, bits)
    runners = {}
    for key, (exe, want) in built.items():
        runner = BnnccRunner(exe)
        got = np.asarray(runner(x))
        if not np.array_equal(got, np.asarray(want).astype(got.dtype)):
            raise AssertionError(f"{name}: {key} differs from the oracle")
        runners[key] = runner
    ms = median_times(runners, x, repeats, warmup, burst_ms)
    layer = LAYERS[name]
    _, h, w, c = layer.input_shape
    row = {"layer": name, "shape": f"{h}x{w}x{c}->{layer.filters}", "MACs": layer.binary_macs,
           **{f"{k} ms": v for k, v in ms.items()}, "exact": True}
    row["2A1W / 1-bit"] = ms["2A1W"] / ms["1-bit"]
    row["2A2W / 2A1W"] = ms["2A2W"] / ms["2A1W"]
    row["int8 / 2A1W"] = ms["int8"] / ms["2A1W"]
    return row


def bench_layers(layers: Sequence[str], **kw) -> list[dict[str, Any]]:
    from . import roofline as R

    R.set_tvm_threads(1)
    return [bench_layer(name, **kw) for name in layers]
