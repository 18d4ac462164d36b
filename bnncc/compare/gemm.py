"""The int8 GEMM comparison (docs/benchmarks.md, seed 001's GEMMi8 shapes): bnncc's ``qdense`` on every x86 path
this CPU runs against numpy fp32 (OpenBLAS), onnxruntime ``MatMulInteger`` (B as an input and as a constant it
prepacks) and PyTorch's ``torch._int_mm`` (oneDNN), one thread, round-robin in one process; every contender's
int32 result checked against the exact int64 product of its own operands. bnncc's 1-bit GEMM (``bdense``, the
popcount kernels) on the same shapes beside them, and the AMX / VNNI peak measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .timing import Runner, median_times

# (M, N, K): Row × Col × Depth. Cases 2–10 come from GoogLeNet and ResNet-18.
SHAPES = ((500, 500, 500), (2000, 2000, 2000), (64, 3136, 64), (128, 784, 64), (256, 196, 2304),
          (512, 49, 2304), (512, 49, 4608), (32, 12544, 27), (1024, 49, 1024), (128, 3136, 128))


class _Call(Runner):
    """A contender that is a zero-argument call on operands prepared at construction (A is the timed input)."""

    def __init__(self, name: str, make, check):
        self.name, self._make, self._check = name, make, check
        self.exact: bool | None = None

    def prepare(self, a: np.ndarray):
        run, result = self._make(a)
        self.exact = bool(self._check(result()))
        return run

    def timed_once(self, run) -> float:
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0


def _exact(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) @ b.astype(np.int64)


def _numpy(b: np.ndarray):
    bf = b.astype(np.float32)

    def make(a):
        af = a.astype(np.float32)
        return (lambda: af @ bf), (lambda: af @ bf)
    return make


def _ort(b: np.ndarray, constant: bool):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k, n = b.shape
    inputs = [helper.make_tensor_value_info("A", TensorProto.UINT8, [None, k])]
    inits = [numpy_helper.from_array(b, "B")] if constant else []
    if not constant:
        inputs.append(helper.make_tensor_value_info("B", TensorProto.INT8, [k, n]))
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B"], ["C"])], "gemm", inputs,
                              [helper.make_tensor_value_info("C", TensorProto.INT32, [None, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def make(a):
        feed = {"A": a} if constant else {"A": a, "B": b}
        return (lambda: sess.run(None, feed)), (lambda: sess.run(None, feed)[0])
    return make


def _torch(b: np.ndarray):
    import torch

    torch.set_num_threads(1)
    bt = torch.from_numpy(b)

    def make(a):  # _int_mm is s8 × s8: A shifted by −128 (its own operands are what its result is checked on)
        at = torch.from_numpy((a.astype(np.int16) - 128).astype(np.int8))
        return (lambda: torch._int_mm(at, bt)), (lambda: torch._int_mm(at, bt).numpy())
    return make


def _bnncc(b: np.ndarray, m: int, target: str):
    from ..relay_ops.qdense import qdense
    from ..testing import compile_graph

    k, _ = b.shape
    exe = compile_graph(lambda bb, v: bb.emit(qdense(v, b)), ((m, k), "uint8"), target=target)
    main = exe.vm["main"]

    def make(a):
        import tvm

        ta = tvm.runtime.tensor(a)
        return (lambda: main(ta)), (lambda: main(ta).numpy())
    return make


def _bnncc_1bit(k: int, n: int, m: int, rng):
    """The same shape as a 1-bit GEMM: ±1 A [M, K] (packed, 64-bit words) × ±1 B [K, N], accumulators out."""
    from .. import reference
    from ..relay_ops import bdense
    from ..testing import compile_graph

    w = rng.choice([-1.0, 1.0], (k, n)).astype(np.float32)
    words = reference.words_per_group(k, 1, 64)
    exe = compile_graph(lambda bb, v: bb.emit(bdense(v, w)), ((m, words), "uint64"), target="host")
    main = exe.vm["main"]

    def make(_a):
        import tvm

        xpm = rng.choice([-1.0, 1.0], (m, k)).astype(np.float32)
        tx = tvm.runtime.tensor(reference.bitpack(xpm, bits=64))
        want = reference.bdense_acc(reference.binarize(xpm), reference.binarize(w.T))
        return (lambda: main(tx)), (lambda: (main(tx).numpy(), want))
    return make


def blas_info() -> str:
    """The BLAS numpy calls, as threadpoolctl reports it (library, version, kernel)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})" for i in blas) or "?"


def _checks(want: np.ndarray, want_torch: np.ndarray) -> dict[str, Any]:
    """Exactness check per contender (``int32``: the default, an int32 result equal to ``want``)."""
    return {"int32": lambda r: np.array_equal(r, want),
            "numpy fp32": lambda r: np.array_equal(np.asarray(r).astype(np.int64), want),
            "torch _int_mm": lambda r: np.array_equal(r, want_torch),
            "bnncc 1-bit": lambda r: np.array_equal(r[0], r[1])}


def bench_gemm(shapes: Sequence[tuple[int, int, int]] = SHAPES, repeats: int = 7, burst_ms: float = 20.0,
               paths: Sequence[str] = ("host", "x86-avx512", "x86"), seed: int = 0) -> list[dict[str, Any]]:
    """One row per shape: ms per contender (1 thread), speed-up over numpy fp32, exactness."""
    from threadpoolctl import threadpool_limits

    from ..runtime import set_num_threads
    from ..targets import isa

    set_num_threads(1)
    host = isa("host")
    runnable = {"host": True, "x86-amx": host.amx_int8, "x86-avx512": host.vnni and host.avx512, "x86": host.avx2}
    rows = []
    rng = np.random.default_rng(seed)
    with threadpool_limits(1):
        for case, (m, n, k) in enumerate(shapes, 1):
            a = rng.integers(0, 256, (m, k), dtype=np.uint8)
            b = rng.integers(-128, 128, (k, n), dtype=np.int8)
            want = _exact(a, b)
            want_torch = _exact(a.astype(np.int16) - 128, b)
            checks = _checks(want, want_torch)
            makers = {"numpy fp32": _numpy(b), "onnxruntime B input": _ort(b, False),
                      "onnxruntime B const": _ort(b, True), "torch _int_mm": _torch(b)}
            makers.update({f"bnncc {p}": _bnncc(b, m, p) for p in paths if runnable.get(p)})
            makers["bnncc 1-bit"] = _bnncc_1bit(k, n, m, rng)
            runners = {name: _Call(name, mk, checks.get(name, checks["int32"])) for name, mk in makers.items()}
            ms = median_times(runners, a, repeats, 2, burst_ms)
            row: dict[str, Any] = {"case": case, "M": m, "N": n, "K": k}
            for name, t in ms.items():
                row[f"{name} ms"] = t
                row[f"{name} ×np"] = ms["numpy fp32"] / t
                row[f"{name} exact"] = runners[name].exact
            rows.append(row)
            print(f"case {case} {m}×{n}×{k}: " + ", ".join(f"{nm} {t:.3f}" for nm, t in ms.items()), flush=True)
    return rows


def geomean(rows: Sequence[dict[str, Any]], column: str) -> float:
    vals = [r[column] for r in rows if column in r]
    return float(np.exp(np.mean(np.log(vals)))) if vals else float("nan")


def _peak_func(kind: str, iters: int):
    """A register-resident loop of the int8 dot-product instruction: AMX (4 accumulator tiles, 2×2 products
    per step) or VNNI (12 independent zmm accumulators). Returns (PrimFunc, MACs per call)."""
    from tvm.script import tirx as T

    from ..schedules.x86_amx import _tile, request_tile_permission

    u8 = T.uint8
    if kind == "amx":
        @T.prim_func
        def amx(a: T.Buffer((16, 64), "uint8"), b: T.Buffer((16, 64), "int8"), c: T.Buffer((16, 16), "int32")):
            T.func_attr({"tir.noalias": True})
            request_tile_permission()
            cfg = T.alloc_buffer((64,), "uint8", align=64)
            for i in range(64):
                cfg[i] = u8(0)
            cfg[0] = u8(1)
            for t in range(8):
                cfg[16 + 2 * t] = u8(64)
                cfg[48 + t] = u8(16)
            _tile("ldtilecfg", T.address_of(cfg[0]))
            for t in T.unroll(4):
                _tile("tilezero", u8(t))
            _tile("tileloadd64", u8(4), T.address_of(a[0, 0]), T.int64(64))
            _tile("tileloadd64", u8(5), T.address_of(a[0, 0]), T.int64(64))
            _tile("tileloadd64", u8(6), T.address_of(b[0, 0]), T.int64(64))
            _tile("tileloadd64", u8(7), T.address_of(b[0, 0]), T.int64(64))
            for _ in range(iters):
                _tile("tdpbusd", u8(0), u8(4), u8(6))
                _tile("tdpbusd", u8(1), u8(4), u8(7))
                _tile("tdpbusd", u8(2), u8(5), u8(6))
                _tile("tdpbusd", u8(3), u8(5), u8(7))
            _tile("tilestored64", u8(0), T.address_of(c[0, 0]), T.int64(64))
            _tile("tilerelease")
        return amx, iters * 4 * 16 * 16 * 64

    regs = 12

    @T.prim_func
    def vnni(a: T.Buffer((64,), "uint8"), b: T.Buffer((64,), "int8"), c: T.Buffer((regs, 16), "int32")):
        T.func_attr({"tir.noalias": True})
        acc = T.decl_buffer((regs, 16), "int32", scope="local")
        for r in T.unroll(regs):
            acc[r, T.ramp(0, 1, 16)] = T.broadcast(T.int32(0), 16)
        av = a[T.ramp(0, 1, 64)]  # operands in registers: only the accumulators change in the loop
        bv = b[T.ramp(0, 1, 64)]
        for _ in range(iters):
            for r in T.unroll(regs):
                acc[r, T.ramp(0, 1, 16)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"), acc[r, T.ramp(0, 1, 16)],
                    av, bv, dtype="int32x16")
        for r in T.unroll(regs):
            c[r, T.ramp(0, 1, 16)] = acc[r, T.ramp(0, 1, 16)]
    return vnni, iters * regs * 64


def int8_peak(kind: str, iters: int = 20000) -> float:
    """G int8-MAC/s of one core running only the dot-product instruction (``amx`` or ``vnni``)."""
    import tvm

    from ..targets import get_target

    func, macs = _peak_func(kind, iters)
    target = get_target("x86-amx" if kind == "amx" else "x86-avx512").tvm_target(1)
    lib = tvm.tirx.build(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)
    args = ([np.ones((16, 64), np.uint8), np.ones((16, 64), np.int8), np.zeros((16, 16), np.int32)]
            if kind == "amx" else [np.ones(64, np.uint8), np.ones(64, np.int8), np.zeros((12, 16), np.int32)])
    t = lib.time_evaluator("main", tvm.cpu(), number=20, repeat=5)(*map(tvm.runtime.tensor, args)).median
    return macs / t / 1e9


def main(argv: Sequence[str] | None = None, default_out=None) -> int:
    """``python -m benchmarks.bench_gemm``: the table, and results files ``OUT.md`` / ``OUT.json``."""
    import argparse
    import os

    from ..targets import get_target, isa
    from .results import print_table, write_results

    p = argparse.ArgumentParser(description="int8 GEMM: bnncc vs numpy fp32, onnxruntime, PyTorch (1 thread)")
    p.add_argument("--cases", default="", help="comma-separated case numbers (default: all ten)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--burst-ms", type=float, default=20.0)
    p.add_argument("--out", default=str(default_out) if default_out else None)
    a = p.parse_args(argv)
    # numpy's OpenBLAS picks its own kernel for this CPU (the environment may pin another for TensorFlow).
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(var, None)
    shapes = [SHAPES[int(c) - 1] for c in a.cases.split(",")] if a.cases else list(SHAPES)
    host = isa("host")
    peaks = {"amx": int8_peak("amx")} if host.amx_int8 else {}
    if host.vnni and host.avx512:
        peaks["vnni"] = int8_peak("vnni")
    rows = bench_gemm(shapes, repeats=a.repeats, burst_ms=a.burst_ms)
    names = [c[:-3] for c in rows[0] if c.endswith(" ms")]
    summary = {"case": "geomean", **{f"{nm} ×np": geomean(rows, f"{nm} ×np") for nm in names}}
    cols = ["case", "M", "N", "K", *[f"{nm} {s}" for nm in names for s in ("ms", "×np", "exact")]]
    print_table([*rows, summary], cols)
    if a.out:
        meta = {"threads": 1, "host_target": get_target("host").description, "blas": blas_info(),
                "int8_peak_gmacs_per_core": {k: round(v) for k, v in peaks.items()},
                "isa": {k: getattr(host, k) for k in ("avx2", "avx512", "vnni", "amx_int8")}}
        notes = ["geometric mean over the shapes vs numpy fp32: " + ", ".join(
                     f"{nm} {summary[f'{nm} ×np']:.2f}×" for nm in names if nm != "numpy fp32"),
                 "bnncc host = the path bnncc picks for this CPU; bnncc x86-avx512 = the VNNI path, bnncc x86 = "
                 "the AVX2 path, both compiled for those targets and run on this CPU.",
                 "bnncc 1-bit: the same shape as a ±1 GEMM on bnncc's popcount kernels (bdense; K binary MACs per "
                 "output), for scale.",
                 "exact: the contender's int32 result equals the int64 product of its own operands "
                 "(torch _int_mm is s8×s8: A shifted by −128). numpy fp32 rounds once sums pass 2^24."]
        write_results(f"{a.out}.md", f"{a.out}.json", [*rows, summary], meta, columns=cols,
                      title="int8 GEMM (seed 001's GEMMi8 shapes), 1 thread", notes=notes)
    return 0
