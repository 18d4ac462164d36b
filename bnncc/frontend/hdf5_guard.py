"""Reading a Keras ``.h5`` file in a forked child process with a time limit.

The HDF5 library loops forever on some damaged files (the fuzzer of tests/fuzz/keras_config.py found one: reading
an attribute never returned, and no signal interrupts it) and may crash on others. The child opens the file,
reads the model configuration and every attribute and dataset, as Keras will, and sends the configuration back;
if it does not finish in time or dies, the file is refused with one clear error and the parent never touches it.
Once the child has read everything, Keras reading the same bytes in this process does the same reads.
"""

from __future__ import annotations

import io
from typing import Any

from ..errors import FrontendError
from ..isolated import Isolated, run_isolated

READ_TIMEOUT = 60.0  # seconds to read a model file; bnncc's models take well under one


def _read(source: str | bytes) -> tuple[str, Any]:
    import h5py

    try:
        with h5py.File(io.BytesIO(source) if isinstance(source, bytes) else source, "r") as f:
            raw = f.attrs.get("model_config")

            def visit(_name: str, obj) -> None:
                dict(obj.attrs)
                if isinstance(obj, h5py.Dataset):
                    obj[()]

            dict(f.attrs)
            f.visititems(visit)
    except Exception as e:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError... for a broken file
        return "error", (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    if raw is not None and not isinstance(raw, (bytes, str)):
        return "not-text", None
    return "ok", raw


def read_model_config(source: str | bytes, file: str, timeout: float | None = None) -> str | bytes | None:
    """The raw ``model_config`` attribute of an HDF5 file (a path or its bytes), None if it has none; the whole
    file read once in a child process. Raises :class:`FrontendError` for a damaged file."""
    import h5py  # noqa: F401 - imported here, once, not by every child (Keras imports it anyway)

    timeout = READ_TIMEOUT if timeout is None else timeout
    try:
        kind, value = run_isolated(lambda: _read(source), timeout)
    except Isolated as e:
        what = "reading the HDF5 file" if e.timed_out else "the HDF5 library reading the file"
        raise FrontendError(f"{what} {e.how}: it is damaged", file=file) from None
    if kind == "error":
        raise FrontendError(f"not a Keras model file bnncc can read (HDF5: {value})", file=file)
    if kind == "not-text":
        raise FrontendError("not a Keras model file: its model_config is not text", file=file)
    return value
