"""Helpers to compile one bnncc op graph on the fly (tests, benchmarks, examples)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from tvm import relax

from .pipeline import Executable, build


def compile_graph(body: Callable[..., relax.Expr], *input_types: tuple[tuple[int, ...], str],
                  target: str = "host", **build_options) -> Executable:
    """Build ``main(*inputs) = body(bb, *inputs)`` where ``body`` emits bnncc ops with ``bb.emit``;
    ``build_options`` go to :func:`bnncc.pipeline.build` (e.g. ``tuning_log="auto"``)."""
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(shape, dtype)) for i, (shape, dtype) in enumerate(input_types)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *params))
        bb.emit_func_output(out)
    return build(bb.get(), target, **build_options)


def random_input(rng: np.random.Generator, shape, zeros: float = 0.05) -> np.ndarray:
    """Normal float32 data with some exact zeros and negative zeros (sign(±0) = +1 is part of the contract)."""
    x = rng.standard_normal(shape).astype(np.float32)
    u = rng.random(shape)
    x[u < zeros] = 0.0
    x[u < zeros / 2] = -0.0
    return x
