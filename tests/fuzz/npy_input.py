"""Fuzz the ``.npy`` input reader of ``bnncc run -i`` (:func:`bnncc.inputs.read_npy`):
``python -m tests.fuzz.npy_input -runs=100000``."""

from __future__ import annotations

import io

from tests.fuzz.harness import fuzz_main, instrumented

with instrumented("numpy.lib.format"):  # numpy's .npy header parser is what the bytes exercise
    from bnncc import inputs


def one_input(data: bytes) -> None:
    inputs.read_npy(io.BytesIO(data), "fuzz.npy")


def seeds() -> dict[str, bytes]:
    import numpy as np

    arrays = {"f32": np.zeros((1, 8, 8, 8), np.float32), "f64-fortran": np.asfortranarray(np.ones((3, 4))),
              "i8": np.arange(10, dtype=np.int8), "bool": np.array([True, False]), "scalar": np.float32(1.5),
              "big-endian": np.arange(6, dtype=">f4").reshape(2, 3), "nan": np.array([np.nan], np.float32),
              "empty": np.zeros((0, 3), np.float32)}
    out = {}
    for name, a in arrays.items():
        buf = io.BytesIO()
        np.save(buf, a)
        out[name] = buf.getvalue()
    return out


if __name__ == "__main__":
    fuzz_main("npy_input", one_input, seeds)
