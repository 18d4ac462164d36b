"""What the command modules share: progress/summary lines on stderr, Keras models from a path or zoo name, the
remote-device options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import BnnccError


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def keras_model(spec: str, input_size: int | None):
    """A Keras model path or a zoo name → (keras model, path or None)."""
    if Path(spec).exists():
        from .frontend.keras import load_keras

        return load_keras(spec), spec
    from . import models

    if spec not in models.MODELS:
        raise BnnccError(f"{spec}: no such file, and not a zoo model ({', '.join(models.MODELS)})")
    if input_size is not None and input_size < 1:
        raise BnnccError(f"--input-size must be positive, got {input_size}")
    shape = (input_size, input_size, 3) if input_size else (224, 224, 3)
    try:
        return models.build(spec, input_shape=shape), None
    except ValueError as e:  # Keras: the input is too small for the architecture
        raise BnnccError(f"{spec} cannot take {shape[0]}x{shape[1]} inputs: {str(e).splitlines()[0][:200]}") from None


def remote_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--rpc", metavar="HOST:PORT", help=f"a TVM RPC tracker: {what}")
    parser.add_argument("--key", default="aarch64-qemu", help="device key at the tracker")
