"""Caffe ``.prototxt`` + ``.caffemodel`` → Relax (TVM has no Caffe frontend): this module walks the net (inputs,
phase rules, blobs matched to layers by name, outputs); one converter per layer type in
:data:`.caffe_layers.CAFFE`; the files read by :mod:`.caffe_files` with the schema of :mod:`.caffe_schema`.

Layout: Caffe's blobs are NCHW; bnncc's binary ops are NHWC. The model's inputs and outputs keep Caffe's layout;
inside, every 4-D blob is held NHWC (a transpose after each input and before each 4-D output), so a converter
maps Caffe's axes of a 4-D blob (:func:`.caffe_layers.relax_axis`) and flattens in Caffe's C, H, W order.

Binary layers, as low-bit Caffe forks write them: a ``BinaryActive`` layer (``top = bottom >= 0 ? 1 : -1``, so
sign(0) = +1, as bnncc binarizes) followed by a ``Convolution`` / ``InnerProduct`` whose stored weights are ±α per
output channel (``α · sign(W)``, what an XNOR-Net/BNN fork deploys). They become ``bitpack → bconv2d / bdense``
through :mod:`bnncc.frontend.bnn`, the vocabulary every frontend shares: the ±α test is ``bnn.binary_kernel`` (the
one the ONNX path's recognition pass applies after TVM's importer); the sign input is known directly, since this
frontend emits the graph itself. A sign feeding a float kernel, or a ±α kernel on a float input, stays a float op.
Caffe pads a convolution with zeros after the sign: the binary conv's ``pad_value = 0``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tvm import relax

from ..errors import BnnccError, FrontendError, printable
from .base import Graph, Layer, Problem, Unsupported, UnsupportedLayersError, check_input_shape
from .caffe_layers import (
    CAFFE,
    SIGN_LAYERS,
    WEIGHTED,
    CaffeLayer,
    caffe_shape,
    check_elements,
    from_caffe_layout,
    to_caffe_layout,
)

if TYPE_CHECKING:
    import tvm

__all__ = ["CAFFE", "SIGN_LAYERS", "Unsupported", "from_caffe", "input_shapes", "problems_of"]


# ------------------------------------------------------------------------------------------------- the net
def _included(layer, phase: int) -> bool:
    """Caffe's NetStateRule by phase (deploy nets run in TEST); level and stage rules are not applied."""
    def meets(rule) -> bool:
        return not rule.HasField("phase") or rule.phase == phase

    if len(layer.include):
        return any(meets(r) for r in layer.include)
    return not any(meets(r) for r in layer.exclude)


def _dims(dims: Sequence[int], name: str, source: str, batch_size: int | None) -> tuple[int, ...]:
    shape = [int(d) for d in dims]
    if not shape:
        raise FrontendError(f"input {name!r} has no shape: bnncc compiles static shapes (give input_param "
                            "{ shape { dim: ... } } or input_shape)", file=source)
    if batch_size is not None:
        shape[0] = int(batch_size)
    if any(d < 0 for d in shape):
        raise FrontendError(f"input {name!r} has a dynamic shape {tuple(shape)}: bnncc compiles static shapes",
                            file=source)
    if len(shape) not in (2, 4):
        raise FrontendError(f"input {name!r} has shape {tuple(shape)}: only N×C×H×W and N×D inputs are "
                            "supported", file=source)
    check_input_shape(name, shape, source)
    return tuple(shape)


def input_shapes(net, source: str, batch_size: int | None = None) -> dict[str, tuple[int, ...]]:
    """Every input blob and its static shape: net-level ``input`` (with ``input_shape`` or ``input_dim``) and
    ``Input`` layers."""
    shapes: dict[str, tuple[int, ...]] = {}
    names = list(net.input)
    if len(net.input_shape) and len(net.input_shape) != len(names):
        raise FrontendError(f"{len(names)} inputs but {len(net.input_shape)} input_shape entries", file=source)
    if len(net.input_dim) and len(net.input_dim) != 4 * len(names):
        raise FrontendError(f"{len(names)} inputs need {4 * len(names)} input_dim values, got {len(net.input_dim)}",
                            file=source)
    for i, name in enumerate(names):
        dims = (net.input_shape[i].dim if len(net.input_shape) else net.input_dim[4 * i:4 * i + 4])
        shapes[name] = _dims(dims, name, source, batch_size)
    for layer in net.layer:
        if layer.type != "Input" or not _included(layer, 1):
            continue
        given = list(layer.input_param.shape)
        if given and len(given) not in (1, len(layer.top)):
            raise FrontendError(f"Input: {len(given)} shapes for {len(layer.top)} tops", file=source,
                                layer=layer.name)
        for i, top in enumerate(layer.top):
            shapes[top] = _dims(given[0 if len(given) == 1 else i].dim if given else [], top, source, batch_size)
    if not shapes:
        raise FrontendError("the net has no inputs (no Input layer, no input: field)", file=source)
    return shapes


def sibling_weights(prototxt: str) -> str:
    """The ``.caffemodel`` beside a ``.prototxt`` with the same stem."""
    return str(Path(prototxt).with_suffix(".caffemodel"))


class _Import:
    def __init__(self, net, weights, *, source: str, weights_file: str | None, bits: int,
                 batch_size: int | None):
        self.net, self.source = net, source
        self.weights_file = weights_file
        self.layers = [x for x in net.layer if _included(x, 1)]
        self.graph = Graph(bits=bits, source=source)
        self.blobs = {x.name: list(x.blobs) for x in (weights.layer if weights is not None else ())}
        self.inputs = input_shapes(net, source, batch_size)

    def as_layer(self, x) -> Layer:
        name = Path(self.weights_file).name if self.weights_file else "the .caffemodel"
        return Layer(x.name, x.type, CaffeLayer(x, self.blobs.get(x.name), name), len(x.bottom))

    def check(self) -> None:
        problems = CAFFE.problems(self.as_layer(x) for x in self.layers if x.type != "Input")
        if problems:
            raise UnsupportedLayersError(problems, "Input, " + CAFFE.supported, file=self.source)
        missing = [x for x in self.layers if x.type in WEIGHTED and not self.blobs.get(x.name)]
        if missing:
            where = self.weights_file or f"{sibling_weights(self.source)} (none given)"
            listed = ", ".join(f"'{printable(x.name)}' ({x.type})" for x in missing[:20])
            raise FrontendError(f"{len(missing)} layer(s) need trained blobs that {where} does not hold: {listed}",
                                file=self.source)
        for x in self.layers:
            if not x.name:
                raise FrontendError(f"a {printable(x.type)} layer has no name", file=self.source)
            if x.type != "Input" and len(x.top) == 0:
                raise FrontendError(f"{printable(x.type)}: the layer has no top blob", file=self.source,
                                    layer=x.name)

    def convert(self) -> tvm.IRModule:
        from ..provenance import SOURCE_LAYERS_ATTR

        self.check()
        params = [Graph.input(_var_name(n), s) for n, s in self.inputs.items()]
        values: dict[str, relax.Expr] = {}
        consumed: set[str] = set()
        produced: list[str] = []

        def body():
            for name, p in zip(self.inputs, params, strict=True):
                values[name] = from_caffe_layout(self.graph.layer(f"{name}_nhwc"), p)
            for x in self.layers:
                if x.type == "Input":
                    continue
                missing = [t for t in x.bottom if t not in values]
                if missing:
                    raise FrontendError(f"{x.type}: reads blob '{printable(missing[0])}', which no earlier layer "
                                        "produces", file=self.source, layer=x.name)
                consumed.update(x.bottom)
                outs = CAFFE.convert(self.graph, self.as_layer(x), [values[t] for t in x.bottom])
                if len(outs) != len(x.top):
                    raise FrontendError(f"{x.type}: {len(x.top)} top blobs, the layer makes {len(outs)}",
                                        file=self.source, layer=x.name)
                for v in outs:
                    try:
                        check_elements(caffe_shape(v), "the output")
                    except Unsupported as e:
                        raise FrontendError(f"{x.type}: {e}", file=self.source, layer=x.name) from None
                for t, v in zip(x.top, outs, strict=True):
                    values[t] = v
                    produced.append(t)
            outputs = list(dict.fromkeys(t for t in produced if t not in consumed))
            if not outputs:
                raise FrontendError("the net has no output (every top blob is read by a later layer)",
                                    file=self.source)
            b = self.graph.layer("output")
            return [to_caffe_layout(b, values[t]) for t in outputs]

        mod = self.graph.build(params, body)
        mod = relax.transform.DeadCodeElimination()(mod)
        return mod.with_attr(SOURCE_LAYERS_ATTR, json.dumps([[x.name, x.type] for x in self.layers]))


def _var_name(blob: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in blob) or "data"


def from_caffe(prototxt: str | os.PathLike, caffemodel: str | os.PathLike | None = None, *, bits: int = 32,
               batch_size: int | None = None) -> tvm.IRModule:
    """Import a Caffe net (``.prototxt`` and its trained ``.caffemodel``; by default the one with the same stem
    beside it) into Relax. Inputs and outputs are NCHW as in Caffe; ``batch_size`` replaces the file's batch."""
    from .caffe_files import load_caffemodel, load_prototxt

    source = os.fspath(prototxt)
    if batch_size is not None and int(batch_size) < 1:
        raise FrontendError(f"batch size must be at least 1, got {batch_size}", file=source)
    net = load_prototxt(source, CAFFE)
    weights_file = os.fspath(caffemodel) if caffemodel is not None else sibling_weights(source)
    if caffemodel is None and not Path(weights_file).exists():
        if any(x.type in WEIGHTED for x in net.layer):
            raise FrontendError(f"no trained weights: expected {weights_file} beside the prototxt",
                                file=source)
        weights, weights_file = None, None
    else:
        weights = load_caffemodel(weights_file)
    try:
        return _Import(net, weights, source=source, weights_file=weights_file, bits=bits,
                       batch_size=batch_size).convert()
    except BnnccError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError) as e:  # TVM's type
        # inference (RuntimeError) or a layer bnncc misread: one line, not a traceback
        text = str(e).strip().splitlines()
        raise FrontendError(f"could not import the net: {type(e).__name__}: {(text or [''])[0][:200]}",
                            file=source) from None


def problems_of(prototxt: str | os.PathLike) -> list[Problem]:
    """Every layer of a prototxt bnncc cannot convert (no weights needed): what the fuzz target checks."""
    from .caffe_files import load_prototxt

    net = load_prototxt(os.fspath(prototxt), CAFFE)
    return CAFFE.problems(Layer(x.name, x.type, CaffeLayer(x), len(x.bottom)) for x in net.layer
                          if x.type != "Input")
