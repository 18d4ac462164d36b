"""Reading a model input from a ``.npy`` file (``bnncc run -i``): a numeric array of finite values, or one clear
error. NaN/Inf would flow through the sign functions as arbitrary ±1 and give an answer that looks valid, so they
are refused; so are pickled (object) arrays, which could run code when loaded.
"""

from __future__ import annotations

import os
import tokenize
from typing import IO

import numpy as np

from .errors import BnnccError


def read_npy(f: IO[bytes], name: str) -> np.ndarray:
    """The array stored in the open ``.npy`` file ``f``; :class:`BnnccError` naming ``name`` otherwise."""
    try:
        a = np.load(f, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError, SyntaxError, TypeError, OverflowError,
            tokenize.TokenError) as e:  # numpy's header parser raises all of these for a damaged header
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise BnnccError(f"{name}: not a .npy array file ({first[:200]})") from None
    if not isinstance(a, np.ndarray):
        a.close()
        raise BnnccError(f"{name}: a .npz archive, not one .npy array")
    if a.dtype.kind not in "fiub":
        raise BnnccError(f"{name}: holds {a.dtype} values, not numbers")
    if a.dtype.kind == "f":
        finite = np.isfinite(a)
        if not finite.all():
            raise BnnccError(f"{name}: {int(a.size - finite.sum())} of {a.size} values are NaN or infinite; bnncc "
                             "models take finite inputs")
    return a


def load_input(path: str | os.PathLike) -> np.ndarray:
    """:func:`read_npy` of the file at ``path``."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise BnnccError(f"{name}: is a directory, not a .npy input file")
    try:
        with open(name, "rb") as f:
            return read_npy(f, name)
    except FileNotFoundError:
        raise BnnccError(f"{name}: no such input file") from None
    except PermissionError:
        raise BnnccError(f"{name}: not readable (permission denied)") from None
