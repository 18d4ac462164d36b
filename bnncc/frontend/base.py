"""What every frontend shares: a converter table per frontend, the check that lists every unsupported layer
before conversion starts, and the Relax graph the converters emit into.

Framework-free (numpy and Relax only), so a Keras, TFLite, ONNX or Caffe frontend each read their own format and
hand the numbers and Relax values to these helpers (and to :mod:`bnncc.frontend.bnn` for the binary layers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import relax

from ..errors import FrontendError, printable
from ..provenance import with_layers

Outputs = relax.Expr | Sequence[relax.Expr]
ConvertFn = Callable[..., Outputs]  # (LayerBuilder, layer, *inputs) → one output or a sequence of outputs
CheckFn = Callable[[Any], None]  # (layer) → None; raises Unsupported for a configuration the converter lacks


class Unsupported(Exception):  # noqa: N818 - read as `raise Unsupported(reason)`
    """A layer configuration a converter cannot import; the table adds the file, layer name and kind.

    Deliberately not a ValueError: frontends turn stray ValueErrors into a generic "could not import" error.
    """


@dataclass(frozen=True)
class Layer:
    """One layer as a frontend's model walk sees it: ``kind`` selects the converter, ``obj`` is what it reads."""

    name: str
    kind: str
    obj: Any = None
    inputs: int | None = None  # how many tensors feed it, when the walk knows


@dataclass(frozen=True)
class Problem:
    """Why one layer cannot be imported."""

    layer: str
    kind: str
    reason: str
    missing: bool = False  # no converter for the kind at all (the message then lists the supported kinds)

    def __str__(self) -> str:
        return f"{printable(self.kind)}: {self.reason}"


class UnsupportedLayersError(FrontendError):
    """Every layer of a model bnncc cannot import, in one error (``problems`` lists them)."""

    def __init__(self, problems: Sequence[Problem], supported: str, *, unit: str = "layer",
                 file: str | None = None):
        self.problems = tuple(problems)
        tail = f"; supported {unit}s: {supported}" if any(p.missing for p in self.problems) else ""
        if len(self.problems) == 1:
            super().__init__(f"{self.problems[0]}{tail}", file=file, layer=self.problems[0].layer)
        else:
            listed = "; ".join(f"{unit} '{printable(p.layer)}': {p}" for p in self.problems)
            super().__init__(f"{len(self.problems)} {unit}s cannot be imported: {listed}{tail}", file=file)


@dataclass(frozen=True)
class Converter:
    """One table entry: the layer kinds it converts, how, and the cheap check run before any conversion."""

    kinds: tuple[str, ...]
    convert: ConvertFn
    check: CheckFn | None = None
    variadic: bool = False  # takes any number of inputs (else exactly one)


class ConverterTable:
    """Layer kind → converter for one frontend, filled by the :meth:`converter` decorator.

    The supported-kind list in error messages is derived from this table, so it cannot drift from what converts.
    """

    def __init__(self, unit: str = "layer", kind_noun: str = "layer class"):
        self.unit, self.kind_noun = unit, kind_noun
        self._by_kind: dict[str, Converter] = {}

    def converter(self, *kinds: str, check: CheckFn | None = None,
                  variadic: bool = False) -> Callable[[ConvertFn], ConvertFn]:
        """Register the decorated ``fn(builder, layer, *inputs)`` for ``kinds``; ``check(layer)`` runs before
        any conversion and raises :class:`Unsupported` for a configuration ``fn`` cannot import."""
        if not kinds:
            raise TypeError("converter() needs at least one layer kind")

        def register(fn: ConvertFn) -> ConvertFn:
            taken = [k for k in kinds if k in self._by_kind]
            if taken:
                raise ValueError(f"layer kinds already have a converter: {', '.join(taken)}")
            entry = Converter(tuple(kinds), fn, check, variadic)
            self._by_kind.update(dict.fromkeys(kinds, entry))
            return fn

        return register

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every supported kind, in registration order."""
        return tuple(self._by_kind)

    @property
    def supported(self) -> str:
        return ", ".join(self._by_kind)

    def get(self, kind: str) -> Converter | None:
        return self._by_kind.get(kind)

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def problem(self, layer: Layer) -> Problem | None:
        """Why ``layer`` cannot be converted, or None; runs only the converter's cheap check."""
        entry = self._by_kind.get(layer.kind)
        if entry is None:
            return Problem(layer.name, layer.kind, f"{self.kind_noun} is not supported", missing=True)
        if not entry.variadic and layer.inputs is not None and layer.inputs != 1:
            return Problem(layer.name, layer.kind, f"expected one input, got {layer.inputs}")
        if entry.check is not None:
            try:
                entry.check(layer.obj)
            except Unsupported as e:
                return Problem(layer.name, layer.kind, str(e))
        return None

    def problems(self, layers: Iterable[Layer]) -> list[Problem]:
        """The problem of every layer that has one, each (layer, reason) once, in walk order."""
        found = (self.problem(layer) for layer in layers)
        return list(dict.fromkeys(p for p in found if p is not None))

    def check_all(self, layers: Iterable[Layer], *, file: str | None = None) -> None:
        """Raise one :class:`UnsupportedLayersError` naming every layer that cannot be imported."""
        problems = self.problems(layers)
        if problems:
            raise UnsupportedLayersError(problems, self.supported, unit=self.unit, file=file)

    def convert(self, graph: Graph, layer: Layer, inputs: Sequence[relax.Expr]) -> list[relax.Expr]:
        """Convert one layer; its outputs as a list. Checks it again first (cheap), so a layer the converter
        cannot import is a FrontendError naming it even when :meth:`check_all` did not run."""
        problem = self.problem(Layer(layer.name, layer.kind, layer.obj, len(inputs)))
        if problem is not None:
            raise UnsupportedLayersError([problem], self.supported, unit=self.unit, file=graph.source)
        try:
            out = self._by_kind[layer.kind].convert(graph.layer(layer.name), layer.obj, *inputs)
        except Unsupported as e:
            raise FrontendError(f"{layer.kind}: {e}", file=graph.source, layer=layer.name) from None
        return list(out) if isinstance(out, (list, tuple)) else [out]


# ---------------------------------------------------------------------------------------------------- the graph
def check_input_shape(name: str, shape: Sequence[int], source: str | None) -> None:
    """A model input must have no zero dimension and at most :data:`bnncc.limits.MAX_TENSOR_ELEMENTS` elements."""
    from ..limits import MAX_TENSOR_ELEMENTS

    if any(int(d) <= 0 for d in shape):
        raise FrontendError(f"input {name!r} has shape {tuple(shape)}: every dimension must be at least 1",
                            file=source)
    if int(np.prod([int(d) for d in shape], dtype=object)) > MAX_TENSOR_ELEMENTS:
        raise FrontendError(f"input {name!r} has shape {tuple(shape)}: more than {MAX_TENSOR_ELEMENTS} elements",
                            file=source)


def const(x: Any) -> relax.Constant:
    """A float32 Relax constant."""
    return relax.const(np.ascontiguousarray(np.asarray(x, np.float32)))


def shape_of(expr: relax.Expr) -> tuple[int, ...]:
    return tuple(int(s) for s in expr.ty.shape)


class Graph:
    """The Relax function ``main`` a frontend builds: inputs, then layers emitted through :meth:`layer`."""

    def __init__(self, *, bits: int = 32, source: str | None = None, bb: relax.BlockBuilder | None = None):
        self.bits, self.source = bits, source
        self.bb = bb if bb is not None else relax.BlockBuilder()  # a graph pass passes its mutator's builder
        # ±1 values bnn.sign emitted → the float they are the sign of (a binary layer reading them packs that).
        self.signs: dict[relax.Expr, relax.Expr] = {}
        self.heavisides: dict[relax.Expr, relax.Expr] = {}  # {0, 1} values bnn.heaviside emitted → their x
        # fake-quantized float values → (their uint8 codes, FakeQuant): an int8 layer reading them reads the codes.
        self.quantized: dict[relax.Expr, Any] = {}

    @staticmethod
    def input(name: str, shape: Sequence[int]) -> relax.Var:
        return relax.Var(name, relax.TensorType(tuple(shape), "float32"))

    def layer(self, name: str) -> LayerBuilder:
        """The builder a converter of layer ``name`` emits with (values are named after the layer)."""
        return LayerBuilder(self, name.replace("/", "_").replace(".", "_"), name)

    def build(self, params: Sequence[relax.Var], body: Callable[[], Sequence[relax.Expr]]) -> tvm.IRModule:
        """Module with ``main(*params)`` returning ``body()``'s outputs (one, or a tuple)."""
        failure = None
        with self.bb.function("main", list(params)):
            with self.bb.dataflow():
                try:
                    outs = list(body())
                except Exception as e:  # noqa: BLE001 - close the function first, then re-raise
                    failure, outs = e, list(params[:1])
                out = self.bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
            self.bb.emit_func_output(out)
        if failure is not None:
            raise failure
        return self.bb.get()


@dataclass(frozen=True)
class LayerBuilder:
    """Emits one layer's Relax values into a :class:`Graph`."""

    graph: Graph
    name_hint: str
    layer: str = ""  # the source layer's name as the user wrote it (recorded in each call's span)

    @property
    def bits(self) -> int:
        """Packed word size of binary layers."""
        return self.graph.bits

    def emit(self, expr: relax.Expr) -> relax.Var:
        """Bind ``expr``; a call records its layer (:mod:`bnncc.provenance`: the profiler's attribution)."""
        return self.graph.bb.emit(with_layers(expr, [self.layer or self.name_hint]), name_hint=self.name_hint)


# ---------------------------------------------------------------------------------------------- float activations
ACTIVATIONS: dict[str, Callable[[relax.Expr], relax.Expr] | None] = {
    "linear": None,
    "relu": relax.op.nn.relu,
    "relu6": lambda v: relax.op.clip(v, 0.0, 6.0),
    "hard_tanh": lambda v: relax.op.clip(v, -1.0, 1.0),
    "tanh": relax.op.tanh,
    "sigmoid": relax.op.sigmoid,
    "softmax": lambda v: relax.op.nn.softmax(v, axis=-1),
}
_IDENTITY = (None, "none", "linear")


def check_activation(name: str | None) -> None:
    if name not in _IDENTITY and name not in ACTIVATIONS:
        raise Unsupported(f"activation {name!r} is not supported (supported: {', '.join(ACTIVATIONS)})")


def activation(b: LayerBuilder, x: relax.Expr, name: str | None) -> relax.Expr:
    """``x`` through the activation called ``name`` (None, 'none' and 'linear' are the identity)."""
    check_activation(name)
    op = None if name in _IDENTITY else ACTIVATIONS[name]
    return x if op is None else b.emit(op(x))
