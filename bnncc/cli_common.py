"""What the command modules share: progress/summary lines on stderr, Keras models from a path or zoo name, the
remote-device options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import BnnccError
from .zoo import ZOO_NAMES


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_model_arg(spec: str, trust_model: bool) -> None:
    """A model argument is a Keras file bnncc can read (kind by content, no code-carrying layers unless
    trusted) or a zoo name: checked before TensorFlow is imported."""
    if Path(spec).exists():
        if non_keras_file(spec):  # ONNX/TFLite/Caffe carry no code; their frontends check their files
            return
        from .frontend.model_config import check_model_file

        check_model_file(spec, trust_model=trust_model)
    elif spec not in ZOO_NAMES:
        raise BnnccError(f"{spec}: no such file, and not a zoo model ({', '.join(ZOO_NAMES)})")


def keras_model(spec: str, input_size: int | None, trust_model: bool = False):
    """A Keras model path or a zoo name → (keras model, path or None)."""
    check_model_arg(spec, trust_model)
    if Path(spec).exists():
        from .frontend.keras import load_keras

        return load_keras(spec, trust_model=trust_model), spec
    from . import models

    shape = (input_size, input_size, 3) if input_size else (224, 224, 3)
    try:
        return models.build(spec, input_shape=shape), None
    except ValueError as e:  # Keras: the input is too small for the architecture
        raise BnnccError(f"{spec} cannot take {shape[0]}x{shape[1]} inputs: {str(e).splitlines()[0][:200]}") from None


def non_keras_file(spec: str) -> bool:
    """True for an existing model file another frontend than Keras reads (its type picks the frontend; a type
    bnncc cannot read yet is a clear error here)."""
    if not Path(spec).exists():
        return False
    from .frontend.formats import model_format

    return model_format(spec) != "keras"


def remote_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--rpc", metavar="HOST:PORT", help=f"a TVM RPC tracker: {what}")
    parser.add_argument("--key", default="aarch64-qemu", help="device key at the tracker")


def import_model_arg(args):
    """The model argument → (Relax module, Keras model or None, file path or None)."""
    from .frontend.formats import import_model
    from .frontend.keras import from_keras as import_keras
    from .targets import get_target

    bits = args.bits or get_target(args.target).word_bits
    if non_keras_file(args.model):
        say(f"bnncc: importing {args.model}")
        return import_model(args.model, batch_size=args.batch, bits=bits), None, args.model
    model, path = keras_model(args.model, args.input_size, args.trust_model)
    say(f"bnncc: importing {args.model}")
    return import_keras(model, batch_size=args.batch, bits=bits, source=path), model, path


def positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


TRUST_HELP = ("load a model whose layers carry Python code (Lambda): Keras runs that code to load it, so only "
              "for files you trust (SECURITY.md)")
