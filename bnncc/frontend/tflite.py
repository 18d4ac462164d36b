"""LCE / TFLite ``.tflite`` → Relax: TVM's Relax TFLite importer for the builtins, plus the four Larq Compute
Engine custom ops as bnncc's binary ops.

- ``LceQuantize`` (float → sign bits, 32 channels a word) → ``bitpack(bits=32)``;
- ``LceBconv2d`` (bitpacked int32 filter [O, KH, KW, words]; options ``channels_in``, strides, dilations,
  ``padding`` SAME/VALID, ``pad_values`` 0/1, ``fused_activation_function``; inputs post-activation multiplier
  and bias, or ``output_threshold`` for bitpacked output) → ``bconv2d``. LCE's output transform is bnncc's:
  ``multiplier · clamp(acc) + bias`` with the fused activation clamping the accumulator; a threshold output sets
  the bit of a channel where ``popcount(x ^ w) > threshold``, i.e. where ``acc = K − 2·popcount < K − 2·threshold``:
  bnncc's bitpacked output of ``acc + ½ − (K − 2·threshold)``;
- ``LceBMaxPool2d`` → ``bmaxpool2d``; ``LceDequantize`` (bits → ±1 floats) → shifts and masks.

LCE's words are bnncc's (bit i of word j = channel 32·j + i, 1 for a negative value), so packed tensors pass
between the ops unchanged (as uint32). ``tflite`` and TVM are imported only when a model is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FrontendError
from .base import Problem, UnsupportedLayersError

if TYPE_CHECKING:
    import tvm

LCE_OPS = ("LceQuantize", "LceBconv2d", "LceBMaxPool2d", "LceDequantize")
_MAGIC = b"TFL3"  # the flatbuffer file identifier, bytes 4-8
_INT32_MAX = 2**31 - 1
# tflite's ActivationFunctionType → the accumulator clamp of LceBconv2d (NONE, RELU, RELU_N1_TO_1, RELU6).
_CLAMPS = {0: None, 1: (0, _INT32_MAX), 2: (-1, 1), 3: (0, 6)}


def load_tflite(path: str | os.PathLike) -> Any:
    """The ``tflite.Model`` of ``path``, or a FrontendError saying why it is not one."""
    import tflite

    file = os.fspath(path)
    if not Path(file).is_file():
        raise FrontendError("no such file", file=file)
    data = Path(file).read_bytes()
    if len(data) < 8 or data[4:8] != _MAGIC:
        raise FrontendError(f"not a TFLite model (no {_MAGIC.decode()} file identifier; another format?)",
                            file=file)
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        g = model.Subgraphs(0)
        for i in range(g.TensorsLength()):  # touches every table: a truncated file fails here, not later
            t = g.Tensors(i)
            t.ShapeAsNumpy()
            t.Name()
            if model.Buffers(t.Buffer()) is not None:
                model.Buffers(t.Buffer()).DataAsNumpy()
        for i in range(g.OperatorsLength()):  # and every operator's tensors, opcode and name
            op = g.Operators(i)
            for t in (*op.InputsAsNumpy(), *op.OutputsAsNumpy()):
                if not -1 <= int(t) < g.TensorsLength():
                    raise IndexError(f"operator {i} names tensor {int(t)} of {g.TensorsLength()}")
            if model.OperatorCodes(op.OpcodeIndex()) is None:
                raise IndexError(f"operator {i} names opcode {op.OpcodeIndex()}, which the file does not hold")
            _op_name(model, op).encode()
            op.CustomOptionsAsNumpy()
    except Exception as e:  # noqa: BLE001 - flatbuffers raise anything on a truncated buffer
        raise FrontendError(f"not a TFLite model (truncated?): {type(e).__name__}", file=file) from None
    if model.SubgraphsLength() < 1:
        raise FrontendError("not a TFLite model (no subgraph)", file=file)
    return model


def _options(op) -> dict:
    """An LCE op's custom options (a flexbuffer map); a FrontendError if they do not decode as one."""
    from tvm.relax.frontend.tflite.tflite_flexbuffer import FlexBufferDecoder

    if not op.CustomOptionsLength():
        return {}
    try:
        options = FlexBufferDecoder(op.CustomOptionsAsNumpy().tobytes()).decode()
    except Exception as e:  # noqa: BLE001 - the decoder indexes raw bytes: damaged options raise anything
        raise FrontendError(f"custom options do not decode ({type(e).__name__}: damaged file?)") from None
    if not isinstance(options, dict):
        raise FrontendError(f"custom options are a {type(options).__name__}, not a map (damaged file?)")
    return options


def custom_options(model: Any) -> list[dict]:
    """The decoded custom options of every LCE operator of ``model`` (what the converter reads)."""
    g = model.Subgraphs(0)
    return [_options(g.Operators(i)) for i in range(g.OperatorsLength())
            if _op_name(model, g.Operators(i)) in LCE_OPS]


def _converter_class():
    """TVM's OperatorConverter with the LCE ops (a function: TVM is imported on first use)."""
    from tvm import relax
    from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter

    from .. import reference
    from ..relay_ops import bitpack, bmaxpool2d
    from ..relay_ops.bconv2d import bconv2d

    class LceConverter(OperatorConverter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.allow_custom_ops = True
            self.convert_map["CUSTOM"] = self.convert_lce

        def custom_code(self, op) -> str | None:
            oc = self.model.OperatorCodes(op.OpcodeIndex())
            code = oc.CustomCode()
            return code.decode() if code is not None else None

        def check_unsupported_ops(self) -> None:  # done by bnncc's check_operators, which lists them all
            pass

        def convert_fully_connected(self, op):
            # TFLite's FULLY_CONNECTED without keep_num_dims flattens its input to [-1, n_inputs]; TVM's converter
            # keeps the input's leading dims (a [1, 1, 1, C] pooled map gave [1, 1, 1, units], not [1, units]).
            out = super().convert_fully_connected(op)
            shape = [int(d) for d in self.get_output_tensors(op)[0].tensor.ShapeAsNumpy()]
            return out if self._fc_keeps_dims(op) else relax.op.reshape(out, shape)

        @staticmethod
        def _fc_keeps_dims(op) -> bool:
            from tflite.FullyConnectedOptions import FullyConnectedOptions

            options = FullyConnectedOptions()
            options.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
            return bool(options.KeepNumDims())

        def convert_lce(self, op):
            code = self.custom_code(op)
            ins, outs = self.get_input_tensors(op), self.get_output_tensors(op)
            opts = _options(op)
            x = self.get_tensor_expr(ins[0])
            if code == "LceQuantize":
                return bitpack(x, bits=32)
            if code == "LceDequantize":
                return self._dequantize(x, int(outs[0].tensor.ShapeAsNumpy()[-1]))
            padding = "same" if int(opts.get("padding", 0)) == 0 else "valid"
            strides = (int(opts.get("stride_height", 1)), int(opts.get("stride_width", 1)))
            if code == "LceBMaxPool2d":
                pool = (int(opts["filter_height"]), int(opts["filter_width"]))
                return bmaxpool2d(x, pool, strides, padding)
            return self._bconv(op, x, ins, opts, strides, padding)

        def _bconv(self, op, x, ins, opts, strides, padding):
            words = self.get_tensor_value(ins[1]).view(np.uint32)  # [O, KH, KW, words per group]
            cin = int(opts["channels_in"])
            groups = max(1, cin // (words.shape[-1] * 32)) if cin > words.shape[-1] * 32 else 1
            kernel = reference.unpack(words, cin // groups)  # ±1 OHWI
            real = [t for t in ins[2:] if t.tensor_idx >= 0]
            dilation = (int(opts.get("dilation_height_factor", 1)), int(opts.get("dilation_width_factor", 1)))
            common = dict(strides=strides, dilation=dilation, padding=padding,
                          pad_value=int(opts.get("pad_values", 0)), groups=groups, kernel_layout="OHWI")
            if len(real) == 1 or (len(ins) > 4 and ins[4].tensor_idx >= 0):  # output_threshold: packed output
                thr = self.get_tensor_value(ins[4] if len(ins) > 4 else real[0]).astype(np.float64)
                k = kernel.shape[1] * kernel.shape[2] * kernel.shape[3]
                # LCE sets the bit where popcount(x ^ w) > thr, i.e. acc = K - 2·popcount < K - 2·thr.
                return bconv2d(x, kernel, np.ones_like(thr), 0.5 - (k - 2 * thr), out="bitpacked", **common)
            mult, bias = (self.get_tensor_value(t).astype(np.float32) for t in real[:2])
            clamp = _CLAMPS[int(opts.get("fused_activation_function", 0))]
            return bconv2d(x, kernel, mult, bias, clamp=clamp, **common)

        def _dequantize(self, x, channels: int):
            shape = [int(d) for d in x.ty.shape]
            bits = relax.op.bitwise_and(
                relax.op.right_shift(relax.op.expand_dims(x, -1), relax.const(np.arange(32, dtype=np.uint32))),
                relax.const(np.uint32(1)))
            flat = self.bb.emit(relax.op.reshape(bits, [*shape[:-1], shape[-1] * 32]))
            if shape[-1] * 32 != channels:
                flat = self.bb.emit(relax.op.strided_slice(flat, [len(shape) - 1], [0], [channels]))
            return relax.op.subtract(relax.const(np.float32(1)),
                                     relax.op.multiply(relax.const(np.float32(2)), relax.op.astype(flat, "float32")))

    return LceConverter


def _op_name(model, op) -> str:
    from tflite.BuiltinOperator import BuiltinOperator

    oc = model.OperatorCodes(op.OpcodeIndex())
    code = max(oc.DeprecatedBuiltinCode(), oc.BuiltinCode())
    if code == BuiltinOperator.CUSTOM:
        custom = oc.CustomCode()
        return custom.decode(errors="replace") if custom is not None else "CUSTOM"
    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    return names.get(code, f"builtin {code}")


def check_operators(model: Any, *, file: str | None = None) -> None:
    """One UnsupportedLayersError naming every operator (index, output tensor, op type) that cannot import."""
    from tvm import relax

    converter = _converter_class()(model, model.Subgraphs(0), None, relax.BlockBuilder())
    g = model.Subgraphs(0)
    problems = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        name = _op_name(model, op)
        if name in LCE_OPS or (not name.startswith("Lce") and name in converter.convert_map and name != "CUSTOM"):
            continue
        outs = op.OutputsAsNumpy()
        tensor = (g.Tensors(int(outs[0])).Name() or b"?").decode(errors="replace") if len(outs) else "?"
        problems.append(Problem(f"#{i} ({tensor})", name, "operator is not supported", missing=True))
    if problems:
        raise UnsupportedLayersError(problems, f"{', '.join(LCE_OPS)} and the builtins of TVM's Relax TFLite "
                                     "frontend", unit="operator", file=file)


def from_tflite(model: Any, *, source: str | None = None) -> tvm.IRModule:
    """Import a ``.tflite`` file (path or ``tflite.Model``), LCE custom ops included, into Relax."""
    from tvm import relax
    from tvm.relax.frontend.tflite import from_tflite as tvm_from_tflite

    if isinstance(model, (str, bytes, os.PathLike)):
        source = os.fsdecode(model)
        model = load_tflite(source)
    g = model.Subgraphs(0)
    for i in g.InputsAsNumpy():
        t = g.Tensors(int(i))
        sig = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
        if any(int(d) < 1 for d in sig[1:]):
            raise FrontendError(f"input {t.Name().decode()!r} has a dynamic shape {list(sig)}: bnncc compiles "
                                "static shapes", file=source)
    check_operators(model, file=source)
    try:
        mod = tvm_from_tflite(model, op_converter=_converter_class())
    except FrontendError:
        raise
    except Exception as e:  # noqa: BLE001 - TVM's importer raises anything; report it as a bad model
        text = str(e).strip().splitlines()
        raise FrontendError(f"TVM's TFLite importer failed: {type(e).__name__}: {(text or [''])[0][:300]}",
                            file=source) from None
    mod = relax.transform.DeadCodeElimination()(mod)
    return relax.transform.FoldConstant()(mod)
