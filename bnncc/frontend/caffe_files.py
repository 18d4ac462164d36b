"""Reading Caffe's two files: the ``.prototxt`` (protobuf text format: the layers) and the ``.caffemodel`` (binary
protobuf: the trained blobs, matched to the layers by name), each failure one :class:`FrontendError` line.

A prototxt may hold layers of types bnncc does not convert, whose parameters (``lrn_param``, a fork's own) the
schema of :mod:`.caffe_schema` lacks. The text is then read a second time skipping unknown fields, and each
``layer { ... }`` block is parsed on its own: an unknown field in a layer of a type bnncc converts is an error
naming that layer (a misspelt parameter must not be silently ignored); in a layer of another type it is not,
since that layer is reported as unsupported anyway, with all the others.
"""

from __future__ import annotations

import os
import re
from collections.abc import Container
from pathlib import Path

import numpy as np

from ..errors import FrontendError
from .base import Problem, UnsupportedLayersError

V1_REFUSED = ("the V1 'layers' format of Caffe before 2015 is not supported: upgrade the file with Caffe's "
              "upgrade_net_proto_text / upgrade_net_proto_binary")
MAX_PROTOTXT_BYTES = 64 << 20  # a deploy net is kilobytes; a larger "prototxt" is another file
# Tokens of the text format that matter for finding top-level blocks: comments and strings are skipped whole.
_TOKEN = re.compile(r"#[^\n]*|\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|[{}<>:]|[A-Za-z_][A-Za-z0-9_]*|\S")


def _read(path: str, what: str) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise FrontendError("is a directory", file=path)
    if not p.is_file():
        raise FrontendError(f"no such {what}", file=path)
    data = p.read_bytes()
    if not data:
        raise FrontendError(f"an empty file (not a Caffe {what})", file=path)
    return data


def _parse_message(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:300]


def layer_blocks(text: str) -> list[str]:
    """The text of every top-level ``layer { ... }`` block, in order."""
    blocks, depth, start, last = [], 0, None, None
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok[0] in "#\"'" or tok == ":":
            continue
        if tok in "{<":
            if depth == 0 and last is not None and last.group() == "layer":
                start = last.start()
            depth += 1
        elif tok in "}>":
            depth -= 1
            if depth == 0 and start is not None:
                blocks.append(text[start:m.end()])
                start = None
        last = m
    return blocks


def load_prototxt(path: str | os.PathLike, supported: Container[str]) -> object:
    """The ``NetParameter`` of a ``.prototxt``; ``supported`` are the layer types bnncc converts."""
    from google.protobuf import text_format

    from .caffe_schema import NetParameter

    file = os.fspath(path)
    data = _read(file, "prototxt")
    if len(data) > MAX_PROTOTXT_BYTES:
        raise FrontendError(f"{len(data)} bytes: not a Caffe .prototxt (a deploy net is kilobytes)", file=file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise FrontendError("not a Caffe .prototxt: not UTF-8 text (a binary .caffemodel?)", file=file) from None
    try:
        net = text_format.Parse(text, NetParameter())
    except text_format.ParseError as e:
        net = _lenient(text, e, supported, file)
    except (ValueError, RecursionError) as e:  # e.g. a string that is not valid UTF-8 after unescaping
        raise FrontendError(f"not a Caffe .prototxt: {_parse_message(e)}", file=file) from None
    if len(net.layers) and not len(net.layer):
        raise FrontendError(V1_REFUSED, file=file)
    return net


def _lenient(text: str, strict: Exception, supported: Container[str], file: str):
    """The net parsed skipping unknown fields, if every unknown field is inside a layer of a type bnncc does not
    convert; else the error naming the layer (or the strict parser's error, with its line and column)."""
    from google.protobuf import text_format

    from .caffe_schema import NetParameter

    syntax = FrontendError(f"not a valid Caffe .prototxt: {_parse_message(strict)}", file=file)
    try:
        net = text_format.Parse(text, NetParameter(), allow_unknown_field=True)
    except (text_format.ParseError, ValueError, RecursionError):
        raise syntax from None
    if len(net.layers) and not len(net.layer):
        raise FrontendError(V1_REFUSED, file=file)
    blocks = layer_blocks(text)
    if len(blocks) != len(net.layer):
        raise syntax
    problems, unknown = [], 0
    for block, layer in zip(blocks, net.layer, strict=True):
        try:
            text_format.Parse(block, NetParameter())
        except text_format.ParseError as e:
            unknown += 1
            if layer.type in supported:
                reason = _parse_message(e).split(" : ", 1)[-1]
                problems.append(Problem(layer.name, layer.type, f"unknown parameter: {reason}"))
        except (ValueError, RecursionError):
            raise syntax from None
    if problems:
        raise UnsupportedLayersError(problems, "", file=file)
    if not unknown:  # the unknown field is outside every layer block
        raise syntax
    return net


def load_caffemodel(path: str | os.PathLike) -> object:
    """The ``NetParameter`` of a ``.caffemodel`` (the layers' names and blobs are what bnncc reads of it)."""
    from google.protobuf.message import DecodeError

    from .caffe_schema import NetParameter

    file = os.fspath(path)
    data = _read(file, "caffemodel")
    try:
        net = NetParameter.FromString(data)
    except (DecodeError, ValueError, RuntimeError, RecursionError) as e:
        raise FrontendError(f"not a Caffe .caffemodel (truncated, or another format?): {_parse_message(e)}",
                            file=file) from None
    if not len(net.layer):
        if len(net.layers):
            raise FrontendError(V1_REFUSED, file=file)
        raise FrontendError("not a Caffe .caffemodel: it holds no layers (truncated, or another format?)", file=file)
    return net


def blob_shape(blob) -> tuple[tuple[int, ...], bool]:
    """(shape, whether it is the legacy num/channels/height/width form)."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim), False
    legacy = (blob.num, blob.channels, blob.height, blob.width)
    if any(legacy):
        return tuple(int(d) for d in legacy), True
    return (max(len(blob.data), len(blob.double_data)),), False


def blob_array(blob, index: int, want: tuple[int, ...], weights_file: str) -> np.ndarray:
    """Blob ``index`` as float32 of shape ``want``; :class:`~.base.Unsupported` (naming the file) if its shape
    or its values do not fit. A legacy 4-D blob fits a shape it equals after padding with 1s on the left
    (Caffe's own rule: old files store a bias of N as 1×1×1×N)."""
    from .base import Unsupported

    shape, legacy = blob_shape(blob)
    fits = shape == want or (legacy and len(want) <= 4 and shape == (1,) * (4 - len(want)) + want)
    if not fits:
        raise Unsupported(f"blob {index} in {weights_file} has shape {shape}, the layer needs {want}")
    count = int(np.prod(want, dtype=object))
    values = blob.data if len(blob.data) else blob.double_data
    if len(values) != count:
        raise Unsupported(f"blob {index} in {weights_file} holds {len(values)} values, its shape {shape} "
                          f"needs {count} (damaged file?)")
    a = np.asarray(values, np.float32).reshape(want)
    if not np.isfinite(a).all():
        raise Unsupported(f"blob {index} in {weights_file} holds {int(a.size - np.isfinite(a).sum())} NaN or "
                          f"infinite value(s) of {a.size}")
    return a
