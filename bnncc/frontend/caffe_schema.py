"""The part of Caffe's ``caffe.proto`` (BVLC/caffe, ``package caffe``, proto2) that deploy nets use, as protobuf
message classes: :data:`NetParameter` reads a ``.caffemodel`` (binary) and a ``.prototxt`` (text format).

The field numbers, types and defaults are BVLC's; a message or field not listed here is unknown to the parser (in
a binary file it is skipped, in a text file it is an error that :mod:`.caffe_files` attributes to its layer).

Why the schema is built in Python (``descriptor_pb2`` + ``message_factory``) rather than compiled from a ``.proto``
with protoc: nothing to compile, so no install or first-use step that CI, a wheel or a read-only install could
miss, and no generated code tied to one protobuf version; the table below is as short as the ``.proto`` would be.
The messages live in their own descriptor pool, so they never clash with another library's ``caffe`` package.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _F.TYPE_STRING, "bool": _F.TYPE_BOOL, "float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE,
            "int32": _F.TYPE_INT32, "uint32": _F.TYPE_UINT32, "int64": _F.TYPE_INT64}
REPEATED, PACKED = "repeated", "packed"

# message → enums nested in it ({name: [values]}, numbered from 0) and fields (name, number, type, default or
# REPEATED/PACKED). A type is a scalar, a message name, or ".Enum" for an enum of the message (Phase: the file's).
_ENGINE = {"Engine": ["DEFAULT", "CAFFE", "CUDNN"]}
_MESSAGES: dict[str, tuple[dict[str, list[str]], list[tuple[str, int, str, Any]]]] = {
    "BlobShape": ({}, [("dim", 1, "int64", PACKED)]),
    "BlobProto": ({}, [
        ("shape", 7, "BlobShape", None), ("data", 5, "float", PACKED), ("diff", 6, "float", PACKED),
        ("double_data", 8, "double", PACKED), ("double_diff", 9, "double", PACKED),
        ("num", 1, "int32", 0), ("channels", 2, "int32", 0), ("height", 3, "int32", 0), ("width", 4, "int32", 0)]),
    "NetState": ({}, [("phase", 1, "Phase", "TEST"), ("level", 2, "int32", 0), ("stage", 3, "string", REPEATED)]),
    "NetStateRule": ({}, [("phase", 1, "Phase", None), ("min_level", 2, "int32", None),
                          ("max_level", 3, "int32", None), ("stage", 4, "string", REPEATED),
                          ("not_stage", 5, "string", REPEATED)]),
    "ParamSpec": ({"DimCheckMode": ["STRICT", "PERMISSIVE"]}, [
        ("name", 1, "string", None), ("share_mode", 2, ".DimCheckMode", None), ("lr_mult", 3, "float", 1.0),
        ("decay_mult", 4, "float", 1.0)]),
    "FillerParameter": ({"VarianceNorm": ["FAN_IN", "FAN_OUT", "AVERAGE"]}, [
        ("type", 1, "string", "constant"), ("value", 2, "float", 0.0), ("min", 3, "float", 0.0),
        ("max", 4, "float", 1.0), ("mean", 5, "float", 0.0), ("std", 6, "float", 1.0), ("sparse", 7, "int32", -1),
        ("variance_norm", 8, ".VarianceNorm", "FAN_IN")]),
    "V1LayerParameter": ({}, []),  # the pre-2015 'layers' format: recognised to be refused by name
    "ConvolutionParameter": (_ENGINE, [
        ("num_output", 1, "uint32", None), ("bias_term", 2, "bool", True), ("pad", 3, "uint32", REPEATED),
        ("kernel_size", 4, "uint32", REPEATED), ("stride", 6, "uint32", REPEATED),
        ("dilation", 18, "uint32", REPEATED), ("pad_h", 9, "uint32", 0), ("pad_w", 10, "uint32", 0),
        ("kernel_h", 11, "uint32", None), ("kernel_w", 12, "uint32", None), ("stride_h", 13, "uint32", None),
        ("stride_w", 14, "uint32", None), ("group", 5, "uint32", 1), ("weight_filler", 7, "FillerParameter", None),
        ("bias_filler", 8, "FillerParameter", None), ("engine", 15, ".Engine", "DEFAULT"),
        ("axis", 16, "int32", 1), ("force_nd_im2col", 17, "bool", False)]),
    "InnerProductParameter": ({}, [
        ("num_output", 1, "uint32", None), ("bias_term", 2, "bool", True),
        ("weight_filler", 3, "FillerParameter", None), ("bias_filler", 4, "FillerParameter", None),
        ("axis", 5, "int32", 1), ("transpose", 6, "bool", False)]),
    "BatchNormParameter": ({}, [("use_global_stats", 1, "bool", None),
                                ("moving_average_fraction", 2, "float", 0.999), ("eps", 3, "float", 1e-5)]),
    "ScaleParameter": ({}, [("axis", 1, "int32", 1), ("num_axes", 2, "int32", 1),
                            ("filler", 3, "FillerParameter", None), ("bias_term", 4, "bool", False),
                            ("bias_filler", 5, "FillerParameter", None)]),
    "ReLUParameter": (_ENGINE, [("negative_slope", 1, "float", 0.0), ("engine", 2, ".Engine", "DEFAULT")]),
    "PReLUParameter": ({}, [("filler", 1, "FillerParameter", None), ("channel_shared", 2, "bool", False)]),
    "PoolingParameter": ({"PoolMethod": ["MAX", "AVE", "STOCHASTIC"], "RoundMode": ["CEIL", "FLOOR"], **_ENGINE}, [
        ("pool", 1, ".PoolMethod", "MAX"), ("pad", 4, "uint32", 0), ("pad_h", 9, "uint32", 0),
        ("pad_w", 10, "uint32", 0), ("kernel_size", 2, "uint32", None), ("kernel_h", 5, "uint32", None),
        ("kernel_w", 6, "uint32", None), ("stride", 3, "uint32", 1), ("stride_h", 7, "uint32", None),
        ("stride_w", 8, "uint32", None), ("engine", 11, ".Engine", "DEFAULT"),
        ("global_pooling", 12, "bool", False), ("round_mode", 13, ".RoundMode", "CEIL")]),
    "EltwiseParameter": ({"EltwiseOp": ["PROD", "SUM", "MAX"]}, [
        ("operation", 1, ".EltwiseOp", "SUM"), ("coeff", 2, "float", REPEATED),
        ("stable_prod_grad", 3, "bool", True)]),
    "ConcatParameter": ({}, [("axis", 2, "int32", 1), ("concat_dim", 1, "uint32", 1)]),
    "SoftmaxParameter": (_ENGINE, [("engine", 1, ".Engine", "DEFAULT"), ("axis", 2, "int32", 1)]),
    "FlattenParameter": ({}, [("axis", 1, "int32", 1), ("end_axis", 2, "int32", -1)]),
    "DropoutParameter": ({}, [("dropout_ratio", 1, "float", 0.5), ("scale_train", 2, "bool", True)]),
    "InputParameter": ({}, [("shape", 1, "BlobShape", REPEATED)]),
    "SigmoidParameter": (_ENGINE, [("engine", 1, ".Engine", "DEFAULT")]),
    "TanHParameter": (_ENGINE, [("engine", 1, ".Engine", "DEFAULT")]),
    "LayerParameter": ({}, [
        ("name", 1, "string", None), ("type", 2, "string", None), ("bottom", 3, "string", REPEATED),
        ("top", 4, "string", REPEATED), ("phase", 10, "Phase", None), ("loss_weight", 5, "float", REPEATED),
        ("param", 6, "ParamSpec", REPEATED), ("blobs", 7, "BlobProto", REPEATED),
        ("propagate_down", 11, "bool", REPEATED), ("include", 8, "NetStateRule", REPEATED),
        ("exclude", 9, "NetStateRule", REPEATED), ("batch_norm_param", 139, "BatchNormParameter", None),
        ("concat_param", 104, "ConcatParameter", None), ("convolution_param", 106, "ConvolutionParameter", None),
        ("dropout_param", 108, "DropoutParameter", None), ("eltwise_param", 110, "EltwiseParameter", None),
        ("flatten_param", 135, "FlattenParameter", None),
        ("inner_product_param", 117, "InnerProductParameter", None), ("input_param", 143, "InputParameter", None),
        ("pooling_param", 121, "PoolingParameter", None), ("prelu_param", 131, "PReLUParameter", None),
        ("relu_param", 123, "ReLUParameter", None), ("scale_param", 142, "ScaleParameter", None),
        ("sigmoid_param", 124, "SigmoidParameter", None), ("softmax_param", 125, "SoftmaxParameter", None),
        ("tanh_param", 127, "TanHParameter", None)]),
    "NetParameter": ({}, [
        ("name", 1, "string", None), ("input", 3, "string", REPEATED), ("input_shape", 8, "BlobShape", REPEATED),
        ("input_dim", 4, "int32", REPEATED), ("force_backward", 5, "bool", False), ("state", 6, "NetState", None),
        ("debug_info", 7, "bool", False), ("layer", 100, "LayerParameter", REPEATED),
        ("layers", 2, "V1LayerParameter", REPEATED)]),
}
_FILE_ENUMS = {"Phase": ["TRAIN", "TEST"]}


def _default(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _field(message: str, name: str, number: int, kind: str, extra: Any) -> descriptor_pb2.FieldDescriptorProto:
    f = _F(name=name, number=number, label=_F.LABEL_REPEATED if extra in (REPEATED, PACKED) else _F.LABEL_OPTIONAL)
    if kind in _SCALARS:
        f.type = _SCALARS[kind]
    elif kind.startswith(".") or kind in _FILE_ENUMS:
        f.type, f.type_name = _F.TYPE_ENUM, f".caffe.{message}{kind}" if kind.startswith(".") else f".caffe.{kind}"
    else:
        f.type, f.type_name = _F.TYPE_MESSAGE, f".caffe.{kind}"
    if extra == PACKED:
        f.options.packed = True
    elif extra not in (None, REPEATED):
        f.default_value = _default(extra)
    return f


def _enum(name: str, values: list[str]) -> descriptor_pb2.EnumDescriptorProto:
    return descriptor_pb2.EnumDescriptorProto(
        name=name, value=[descriptor_pb2.EnumValueDescriptorProto(name=v, number=i) for i, v in enumerate(values)])


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="bnncc/caffe.proto", package="caffe", syntax="proto2")
    proto.enum_type.extend(_enum(n, v) for n, v in _FILE_ENUMS.items())
    for name, (enums, fields) in _MESSAGES.items():
        m = proto.message_type.add(name=name)
        m.enum_type.extend(_enum(n, v) for n, v in enums.items())
        m.field.extend(_field(name, *spec) for spec in fields)
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
NetParameter = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("caffe.NetParameter"))
LayerParameter = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("caffe.LayerParameter"))
BlobProto = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("caffe.BlobProto"))
