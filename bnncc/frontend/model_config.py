"""A Keras model file's configuration read as data, before any Keras deserialization: the file kind (by its
bytes, not its name) and the layers that carry Python code.

Keras rebuilds a ``Lambda`` layer by unmarshalling and running the bytecode stored in the file, with or without
``safe_mode`` for ``.h5`` files, so a downloaded model could run anything when loaded. bnncc reads the JSON the
file stores (the ``.h5`` ``model_config`` attribute, the ``.keras`` zip's ``config.json``, a SavedModel's
``keras_metadata.pb``) and refuses such layers unless the caller trusts the model (``--trust-model``).
Only h5py, zipfile and json are used: this runs before TensorFlow is imported.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import FrontendError
from .hdf5_guard import read_model_config

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
MAX_CONFIG_BYTES = 64 * 2**20  # a model's JSON configuration is kilobytes; refuse to inflate more than this

# Layer classes Keras rebuilds by running code stored in the file (tf_keras: Lambda; the RNN cell wrappers'
# dropout_state_filter_visitor; Keras 3 serializes a Python lambda as class "__lambda__"). TFOpLambda is not
# one: it stores the name of a TensorFlow op, which Keras looks up, not code.
CODE_CLASSES = frozenset({"Lambda", "__lambda__", "DropoutWrapper", "ResidualWrapper", "DeviceWrapper"})
TRUST_HINT = "pass --trust-model (trust_model=True) only if you trust where the file came from"


def file_kind(path: str | os.PathLike) -> str:
    """"h5", "keras" (zip) or "savedmodel" (a directory), by content; FrontendError for anything else."""
    p = Path(path)
    if p.is_dir():
        if (p / "saved_model.pb").is_file():
            return "savedmodel"
        raise FrontendError("a directory, but not a SavedModel (no saved_model.pb)", file=str(p))
    try:
        with open(p, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise FrontendError("no such file or directory", file=str(p)) from None
    except OSError as e:
        raise FrontendError(f"cannot be read ({e.strerror})", file=str(p)) from None
    if head == HDF5_MAGIC:
        return "h5"
    if head[:4] == ZIP_MAGIC:
        return "keras"
    what = "an empty file" if not head else "neither HDF5 (.h5) nor a zip (.keras)"
    raise FrontendError(f"not a Keras model file: {what}", file=str(p))


def _json(text: bytes | str, what: str, file: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise FrontendError(f"not a Keras model file: its {what} is not JSON ({type(e).__name__})",
                            file=file) from None


def h5_config(data: str | os.PathLike | bytes, file: str) -> Any:
    """The ``model_config`` JSON of a Keras ``.h5`` file (a path or its bytes), the whole file read first in a
    child process with a time limit (:mod:`bnncc.frontend.hdf5_guard`: HDF5 can hang on a damaged file)."""
    raw = read_model_config(data if isinstance(data, bytes) else os.fspath(data), file)
    if raw is None:
        raise FrontendError("an HDF5 file without a Keras model configuration (weights only?)", file=file)
    return _json(raw, "model_config", file)


def zip_config(data: str | os.PathLike | io.BytesIO, file: str) -> Any:
    """The ``config.json`` of a Keras ``.keras`` zip."""
    try:
        with zipfile.ZipFile(data) as z:
            info = z.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise FrontendError(f"config.json claims {info.file_size} bytes", file=file)
            with z.open(info) as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
            weights = next((i for i in z.infolist() if i.filename.endswith(".h5")), None)
            if weights is not None:  # Keras reads it with HDF5: through the guard first
                with z.open(weights) as f:
                    read_model_config(f.read(), f"{file}/{weights.filename}")
    except KeyError:
        raise FrontendError("a zip file without config.json: not a .keras model", file=file) from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        raise FrontendError(f"not a .keras model bnncc can read (zip: {str(e)[:160]})", file=file) from None
    return _json(raw, "config.json", file)


def _protobuf_fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message; ValueError when it is not one."""
    i, n = 0, len(buf)

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            if i >= n or shift > 63:
                raise ValueError("truncated varint")
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            yield field, wire, varint()
        elif wire == 2:
            length = varint()
            if i + length > n:
                raise ValueError("truncated field")
            yield field, wire, buf[i:i + length]
            i += length
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
            if i > n:
                raise ValueError("truncated field")
        else:
            raise ValueError(f"wire type {wire}")


def metadata_configs(data: bytes, file: str) -> list[Any]:
    """The per-object JSON metadata of a SavedModel's ``keras_metadata.pb`` (SavedMetadata: ``nodes`` = 1,
    each SavedObject's ``metadata`` = 5)."""
    try:
        nodes = [v for f, w, v in _protobuf_fields(data) if f == 1 and w == 2]
        metadata = [v for node in nodes for f, w, v in _protobuf_fields(node) if f == 5 and w == 2]
    except ValueError as e:
        raise FrontendError(f"keras_metadata.pb is not a Keras SavedModel metadata file ({e})", file=file) from None
    return [_json(m, "keras_metadata.pb", file) for m in metadata]


def savedmodel_configs(path: Path) -> list[Any]:
    meta = path / "keras_metadata.pb"
    if not meta.is_file():
        return []  # a plain TensorFlow SavedModel: graphs and no Python code
    return metadata_configs(meta.read_bytes(), str(path))


def code_layers(config: Any) -> list[tuple[str, str]]:
    """(layer name, class) of every code-carrying layer anywhere in a configuration (nested models, wrappers):
    a class of :data:`CODE_CLASSES`, or any object whose ``*type`` field says ``"lambda"`` (marshalled code)."""
    found: dict[str, str] = {}
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            cls = node.get("class_name")
            cfg = node.get("config")
            name = str((cfg.get("name") if isinstance(cfg, dict) else None) or node.get("name") or "?")
            if isinstance(cls, str) and cls in CODE_CLASSES:
                found[name] = cls
            elif any(isinstance(k, str) and k.endswith("type") and v == "lambda" for k, v in node.items()):
                found.setdefault(name, "Python-lambda")
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, list):
            stack.extend(reversed(node))
    return list(found.items())


def check_model_file(path: str | os.PathLike, *, trust_model: bool = False) -> str:
    """The file kind (:func:`file_kind`), after refusing a model with code-carrying layers unless
    ``trust_model``. Raises :class:`FrontendError` naming the file and the layer."""
    p, file = Path(path), str(path)
    kind = file_kind(p)
    if kind == "h5":
        configs = [h5_config(p, file)]
    elif kind == "keras":
        configs = [zip_config(p, file)]
    else:
        configs = savedmodel_configs(p)
    if trust_model:
        return kind
    found = code_layers(configs)
    if found:
        name, cls = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise FrontendError(f"{cls} layers hold Python code that loading would run: refused{more}; "
                            f"{TRUST_HINT}", file=file, layer=name)
    return kind
