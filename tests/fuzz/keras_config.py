"""Fuzz the Keras configuration reader that runs before any Keras deserialization
(:mod:`bnncc.frontend.model_config`): ``.h5`` ``model_config``, ``.keras`` zip ``config.json``, SavedModel
``keras_metadata.pb`` and the scan for code-carrying layers. ``python -m tests.fuzz.keras_config -runs=100000``.
The first byte picks the reader, the rest is the file."""

from __future__ import annotations

import io
import json

from tests.fuzz.harness import fuzz_main, instrumented

with instrumented("zipfile"):  # the .keras reader; h5py is compiled (not instrumented)
    from bnncc.frontend import hdf5_guard
    from bnncc.frontend import model_config as mc

hdf5_guard.READ_TIMEOUT = 0.5  # a damaged file HDF5 loops on is refused after this long (a good one: ~10 ms)

READERS = ("h5", "zip", "metadata", "json")


def one_input(data: bytes) -> None:
    if not data:
        return
    kind, body = READERS[data[0] % len(READERS)], data[1:]
    if kind == "h5":
        config = mc.h5_config(body, "fuzz.h5")
    elif kind == "zip":
        config = mc.zip_config(io.BytesIO(body), "fuzz.keras")
    elif kind == "metadata":
        config = mc.metadata_configs(body, "fuzz_savedmodel")
    else:
        config = mc._json(body, "config", "fuzz.json")
    mc.code_layers(config)


def _config() -> bytes:
    lam = {"class_name": "Lambda", "config": {"name": "evil", "function": ["4wEAAAAAAAAA", None, None],
                                               "function_type": "lambda", "module": "__main__"}}
    dense = {"class_name": "Dense", "config": {"name": "head", "units": 2, "activation": "linear"}}
    return json.dumps({"class_name": "Functional", "config": {"name": "m", "layers": [lam, dense]}}).encode()


def seeds() -> dict[str, bytes]:
    import zipfile

    import h5py

    h5 = io.BytesIO()
    with h5py.File(h5, "w") as f:
        f.attrs["model_config"] = _config().decode()
        f.create_dataset("model_weights/head/kernel", data=[[1.0, 2.0]])
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("config.json", _config())
        z.writestr("metadata.json", "{}")
    meta = _config()
    node = b"\x10\x01" + b"\x2a" + _varint(len(meta)) + meta  # SavedObject{node_id=1, metadata=...}
    pb = b"\x0a" + _varint(len(node)) + node  # SavedMetadata{nodes=[node]}
    return {"h5": b"\x00" + h5.getvalue(), "zip": b"\x01" + zipped.getvalue(), "metadata": b"\x02" + pb,
            "json": b"\x03" + _config()}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


if __name__ == "__main__":
    fuzz_main("keras_config", one_input, seeds)
