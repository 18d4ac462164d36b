"""Helpers to compile one bnncc op graph on the fly (tests, benchmarks, examples)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from .pipeline import Executable, build


def graph_module(body: Callable[..., relax.Expr], *input_types: tuple[tuple[int, ...], str]) -> tvm.IRModule:
    """``main(*inputs) = body(bb, *inputs)``, where ``body`` emits bnncc ops with ``bb.emit``, as a Relax module."""
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(shape, dtype)) for i, (shape, dtype) in enumerate(input_types)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *params))
        bb.emit_func_output(out)
    return bb.get()


def compile_graph(body: Callable[..., relax.Expr], *input_types: tuple[tuple[int, ...], str],
                  target: str = "host", **build_options) -> Executable:
    """:func:`graph_module` built by :func:`bnncc.pipeline.build` (``build_options`` go there, e.g.
    ``tuning_log="auto"``)."""
    return build(graph_module(body, *input_types), target, **build_options)


def small_bnn(width: int = 32, name: str = "small_bnn"):
    """A small Keras/Larq model with known layers (16×16×3 input): a float stem, two identical binary blocks (conv,
    BatchNorm, residual add: FuseOps shares one function between them), a binary conv of ``2·width`` with
    BatchNorm, max-pooling, an identity (Dropout), a float classifier with softmax."""
    from ._tf import keras, lq

    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                  use_bias=False)
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", name="stem")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    for block in ("1", "1b"):
        y = lq.layers.QuantConv2D(width, 3, padding="same", name=f"bconv{block}", **binary)(x)
        y = keras.layers.BatchNormalization(name=f"bn{block}")(y)
        x = keras.layers.Add(name=f"add{block}")([x, y])
    y = lq.layers.QuantConv2D(2 * width, 3, padding="same", name="bconv2", **binary)(x)
    y = keras.layers.BatchNormalization(name="bn2")(y)
    y = keras.layers.MaxPooling2D(2, name="pool")(y)
    y = keras.layers.Dropout(0.5, name="drop")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = keras.layers.Dense(10, name="fc")(y)
    y = keras.layers.Activation("softmax", name="softmax")(y)
    return keras.Model(inp, y, name=name)


def random_input(rng: np.random.Generator, shape, zeros: float = 0.05) -> np.ndarray:
    """Normal float32 data with some exact zeros and negative zeros (sign(±0) = +1 is part of the contract)."""
    x = rng.standard_normal(shape).astype(np.float32)
    u = rng.random(shape)
    x[u < zeros] = 0.0
    x[u < zeros / 2] = -0.0
    return x


@contextlib.contextmanager
def shared_dir(tmp_path_factory, name: str) -> Iterator[Path]:
    """A directory shared by all pytest-xdist workers of a session, held under an exclusive lock: an expensive
    artifact (a trained or compiled model) is made once per session even when workers split a module's tests."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    path = base / name
    path.mkdir(exist_ok=True)
    with open(path / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield path


@contextlib.contextmanager
def local_fleet(logs: Path, key: str, servers: int = 2) -> Iterator[tuple[str, list, Path]]:
    """A TVM RPC tracker and ``servers`` RPC servers of this machine registered as ``key``, all on 127.0.0.1,
    logging into ``logs``: yields (tracker address, server processes, ``logs``) and stops them all on exit."""
    from .rpc import cli as rpc_cli

    tracker, addr = rpc_cli.start_tracker(log_path=logs / "tracker.log")
    procs: list = []
    try:
        for i in range(servers):
            procs.append(rpc_cli.start_server(addr, key, log_path=logs / f"server{i}.log"))
        yield addr, procs, logs
    finally:
        for p in [*procs, tracker]:
            rpc_cli.stop(p)


def digits_split():
    """scikit-learn's 8×8 digits, split 70/30 deterministically, pixels scaled to [-1, 1], NHWC float32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0 * 2.0 - 1.0)[..., None]
    return train_test_split(x, data.target, test_size=0.3, random_state=0)


def digits_bnn():
    """The BNN tests/test_trained_bnn.py trains on :func:`digits_split` (every kind of layer bnncc fuses)."""
    from bnncc._tf import keras, lq

    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
                  use_bias=False)
    x = inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn0")(x)
    x = lq.layers.QuantConv2D(64, 3, padding="same", pad_values=1.0, name="bconv1", **binary)(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = lq.layers.QuantConv2D(40, 3, padding="same", pad_values=0.0, name="bconv2", **binary)(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = lq.layers.QuantDense(64, name="bdense", **binary)(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn3")(x)
    out = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inp, out, name="digits_bnn")
