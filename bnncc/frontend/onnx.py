"""ONNX → Relax: TVM's Relax ONNX importer, with the binary layers of PyTorch BNNs running on bnncc's kernels.

1. the file is read and checked (one :class:`~bnncc.errors.FrontendError` line for a file that is not ONNX, an
   input of dynamic shape, and every node of an operator TVM's importer lacks, all listed at once);
2. the straight-through-estimator arithmetic trainers write is rewritten to the sign it stands for
   (:mod:`.onnx_ste`);
3. TVM imports the graph (NCHW), constants are folded (``α·sign(W)`` becomes an exact ±α kernel) and convs are
   converted to NHWC / HWIO, the layout of bnncc's binary ops;
4. inference BatchNorms become ``x · s + t`` (what the graph phase folds into a binary layer), and every
   ``conv2d`` / ``matmul`` of a sign with a ±α kernel becomes ``bitpack → bconv2d / bdense`` (:mod:`.onnx_binary`).

``onnx`` and TVM are imported when a model is imported, not with bnncc.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FrontendError
from .base import Problem, UnsupportedLayersError

if TYPE_CHECKING:
    import tvm

_HANDLED_BY_IMPORTER = ("Constant", "If")  # ops TVM's importer handles outside its converter map


def load_onnx(path: str | os.PathLike) -> Any:
    """The ``onnx.ModelProto`` of ``path``, or a FrontendError saying why it does not parse as one."""
    import onnx
    from google.protobuf.message import DecodeError

    file = os.fspath(path)
    if not Path(file).is_file():
        raise FrontendError("no such file", file=file)
    try:
        model = onnx.load(file)
    except (DecodeError, RuntimeError, ValueError, OSError) as e:
        raise FrontendError(f"not an ONNX model (truncated, or another format?): {_first_line(e)}",
                            file=file) from None
    if model.ir_version < 3 or not model.graph.node:
        raise FrontendError("not an ONNX model (no graph nodes; truncated, or another format?)", file=file)
    return model


def check_model(model: Any, *, file: str | None = None) -> None:
    """onnx's checker (after :func:`check_operators`, which names every unknown op at once; the checker stops
    at the first)."""
    import onnx

    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise FrontendError(f"invalid ONNX model: {_first_line(e)}", file=file) from None
    except UnicodeDecodeError:  # a name or string attribute that is not UTF-8 (protobuf strings must be)
        raise FrontendError("invalid ONNX model: a name or string is not UTF-8 (damaged file?)", file=file) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def static_input_shapes(model: Any, shapes: Mapping[str, Sequence[int]] | None = None, *,
                        batch_size: int | None = None, file: str | None = None) -> dict[str, tuple[int, ...]]:
    """Each graph input's static shape; a FrontendError for a dynamic one. ``shapes`` gives an input's whole
    shape, ``batch_size`` a dynamic first (batch) dimension."""
    import onnx

    given = dict(shapes or {})
    weights = {t.name for t in model.graph.initializer}
    out = {}
    for value in model.graph.input:
        if value.name in weights:
            continue
        t = value.type.tensor_type
        if t.elem_type != onnx.TensorProto.FLOAT:
            dtype = (onnx.TensorProto.DataType.Name(t.elem_type) if t.elem_type in onnx.TensorProto.DataType.values()
                     else f"element type {t.elem_type} (unknown)")
            raise FrontendError(f"input {value.name!r} is {dtype}: only float32 inputs are supported", file=file)
        if value.name in given:
            out[value.name] = tuple(int(d) for d in given[value.name])
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                for d in t.shape.dim]
        if batch_size is not None and dims and isinstance(dims[0], str):
            dims[0] = int(batch_size)
        dynamic = [i for i, d in enumerate(dims) if isinstance(d, str)]
        if dynamic or not t.HasField("shape"):
            raise FrontendError(f"input {value.name!r} has a dynamic shape {dims if t.HasField('shape') else '?'} "
                                f"(dimension {dynamic[0] if dynamic else 'all'}): bnncc compiles static shapes; "
                                "export with a fixed input shape (or give the batch size)", file=file)
        out[value.name] = tuple(dims)
    return out


def check_operators(model: Any, *, file: str | None = None) -> None:
    """One UnsupportedLayersError naming every node (and its op type) TVM's importer cannot convert."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    problems = []
    for i, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx"):
            reason = f"operator of domain {node.domain!r} is not supported"
        elif node.op_type in known or node.op_type in _HANDLED_BY_IMPORTER:
            continue
        else:
            reason = "operator is not supported"
        problems.append(Problem(node.name or f"#{i}", node.op_type, reason, missing=True))
    if problems:
        raise UnsupportedLayersError(problems, "the ai.onnx operators of TVM's Relax ONNX frontend (opsets 1-23)",
                                     unit="node", file=file)


def from_onnx(model: Any, *, bits: int = 32, batch_size: int | None = None,
              input_shapes: Mapping[str, Sequence[int]] | None = None,
              source: str | None = None, report: dict | None = None) -> tvm.IRModule:
    """Import an ONNX model (``onnx.ModelProto`` or a path) into a Relax module with bnncc's binary ops.

    ``bits`` is the packed word size of the binary layers; ``batch_size`` fixes a dynamic batch dimension,
    ``input_shapes`` (name → shape) the whole shape of inputs;
    ``report``, if given, receives how many binary convs/dense layers and STE expressions were recognised.
    """
    import onnx
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx as tvm_from_onnx

    from .onnx_binary import binarize, fold_batch_norm
    from .onnx_ste import simplify_ste

    if not isinstance(model, onnx.ModelProto):
        source = os.fspath(model)
        model = load_onnx(source)
    shapes = static_input_shapes(model, input_shapes, batch_size=batch_size, file=source)
    check_operators(model, file=source)
    check_model(model, file=source)
    model_copy = onnx.ModelProto()
    model_copy.CopyFrom(model)  # the rewrite is in place; the caller's model stays as it was
    stes = simplify_ste(model_copy)
    try:
        mod = tvm_from_onnx(model_copy, shape_dict=shapes)
    except Exception as e:  # noqa: BLE001 - TVM's importer raises anything; report it as a bad model
        raise FrontendError(f"TVM's ONNX importer failed: {type(e).__name__}: {_first_line(e)}",
                            file=source) from None
    passes = [relax.transform.DeadCodeElimination(), relax.transform.FoldConstant(),
              relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]}), relax.transform.FoldConstant()]
    for p in passes:
        mod = p(mod)
    mod, found = binarize(fold_batch_norm(mod), bits=bits, source=source)
    if report is not None:
        report.update(binary_convs=found.convs, binary_dense=found.dense, ste_rewrites=stes,
                      float_with_sign_input=list(found.float_with_sign_input))
    return mod
