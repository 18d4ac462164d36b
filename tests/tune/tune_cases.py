"""What the tuning tests share: a one-bconv model with its oracle, and tuning databases made without measuring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tvm_ffi
from tvm import relax

from bnncc import reference as ref
from bnncc import tune as T
from bnncc.relay_ops import bconv2d, bitpack
from bnncc.targets import get_target


def layer(h: int = 8, c: int = 64, o: int = 64, bits: int = 32, seed: int = 0):
    """1×h×h×c float input → bitpack → bconv2d 3×3 same (pad 1), identity output transform (exact accumulators)."""
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((3, 3, c, o)).astype(np.float32)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, h, h, c), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            p = bb.emit(bitpack(x, bits=bits))
            out = bb.emit_output(bconv2d(p, kernel, np.ones(o, np.float32), np.zeros(o, np.float32),
                                         padding="same", pad_value=1, out="float32"))
        bb.emit_func_output(out)
    return bb.get(), kernel


def oracle(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    acc = ref.bconv2d_acc(ref.binarize(x), ref.binarize(kernel.transpose(3, 0, 1, 2)), padding="same", pad_value=1)
    return acc.astype(np.float32)


def records(directory: Path) -> list[str]:
    path = directory / T.RECORD_FILE
    return [ln for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def body_equal(a, b) -> bool:
    return bool(tvm_ffi.structural_equal(a.body, b.body, map_free_vars=True))


def database_with(directory: Path, mods) -> None:
    """A MetaSchedule JSON database with one record (bnncc's default schedule) per module."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.database import JSONDatabase, TuningRecord

    target = get_target("host").tvm_target()
    directory.mkdir(parents=True, exist_ok=True)
    db = JSONDatabase(work_dir=str(directory))
    for m in mods:
        wl = db.commit_workload(m)
        sch = T.default_schedule(m, target)
        db.commit_tuning_record(TuningRecord(sch.trace, wl, [1e-5], target, ArgInfo.from_prim_func(m["main"])))
