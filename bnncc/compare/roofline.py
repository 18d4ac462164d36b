"""The popcount roofline of this machine, measured with a kernel that bnncc's own toolchain compiles.

    python -m bnncc.compare.roofline --threads 1,2 [--asm probe.s]

The probe is a TIR PrimFunc (TVMScript) built by TVM/LLVM for bnncc's ``host`` target: the register-blocked
shape of bnncc's BGEMM, without its memory traffic. ``xb`` broadcast 64-bit words × ``nv`` vectors of weight
words give ``xb·nv`` independent vector accumulators that stay in registers; the reduction loop runs over ``k``
words of a small array (a few KB, L1-resident) and repeats ``reps`` times. Each lane step is XOR + popcount + add
on 64-bit lanes: one 64-bit XOR+popcount counts 64 binary MACs.

How LLVM computes a vector popcount depends on the CPU — the *ISA path* (:func:`isa_path`, from
:func:`bnncc.targets.isa`), which the results record — and so does the register tile that fits
(:func:`default_shape`); :func:`asm_summary` reads the hot loop:

* ``avx512-vpopcntdq``: per accumulator ``vpxorq`` + ``vpopcntq`` + ``vpaddq`` on zmm after ``vpbroadcastq`` /
  ``vmovdqa64`` loads: three vector ALU instructions per 512 binary MACs (4 × 6 = 24 zmm accumulators).
* ``avx2-lut`` (and ``avx512bw-lut`` without VPOPCNTDQ): no vector popcount instruction; LLVM looks nibbles up in
  a 16-entry table: ``vpand`` / ``vpsrlw`` + ``vpand`` split the bytes into nibbles, two ``vpshufb`` count them,
  ``vpaddb`` adds the halves, ``vpsadbw`` sums the bytes of each 64-bit lane, ``vpaddq`` accumulates: nine vector
  instructions per 256 binary MACs on ymm. The table, the nibble mask, the zero for ``vpsadbw``, the broadcast
  and two temporaries leave 10 of the 16 ymm registers for accumulators (1 × 10; weights as memory operands).
* ``neon-cnt``: ``eor`` + ``cnt`` + pairwise widening adds (4 × 5 = 20 accumulators); ``scalar``: ``popcnt``.

Thread control (TVM 0.27 runtime, ``src/runtime/thread_pool.cc``):

* The pool is created once per process (on the first parallel launch, ``runtime.NumThreads`` or
  ``runtime.config_threadpool``) with ``MaxConcurrency()`` workers: ``TVM_NUM_THREADS`` (else
  ``OMP_NUM_THREADS``), else ``std::thread::hardware_concurrency() / 2`` on x86 — **1 on this 2-core machine**:
  without the variable every bnncc kernel runs on one thread, and creating the pool pins the calling (main)
  thread to core 0, so threads that TFLite/XNNPACK start later inherit a one-core affinity.
  :func:`ensure_thread_pool` sets ``TVM_NUM_THREADS`` before the pool exists.
* Then :func:`bnncc.pipeline.set_num_threads` (``runtime.config_threadpool(1, n)``: affinity mode kBig, n threads)
  selects ``n`` ≤ pool size workers for later launches; :func:`set_tvm_threads` checks that it got them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

_POOL_ENV = "TVM_NUM_THREADS"


# ----------------------------------------------------------------------------------------------------
# TVM's thread pool
# ----------------------------------------------------------------------------------------------------
def cores_available() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ensure_thread_pool(max_threads: int | None = None, *, bind: bool | None = None,
                       spin_count: int | None = None) -> None:
    """Make TVM's thread pool (not created yet) big enough for ``max_threads`` (default: every core).

    Sets ``TVM_NUM_THREADS`` unless it already allows ``max_threads``; TVM reads it when it creates the pool,
    so this must run before the first parallel kernel of the process (importing tvm before is fine).
    ``bind=False`` sets ``TVM_BIND_THREADS=0``: TVM then leaves thread affinities alone (by default it pins worker
    i to core i, which stalls every parallel kernel while another process occupies that core); ``bind=True``
    restores TVM's default. ``spin_count`` sets ``TVM_THREAD_POOL_SPIN_COUNT`` (sched_yield calls a worker makes
    before it sleeps; TVM's default 300000 is ≈ 0.1 s here). None leaves a setting as it is.
    """
    want = max(int(max_threads or 0), cores_available())
    cur = os.environ.get(_POOL_ENV, "")
    if not cur.isdigit() or int(cur) < want:
        os.environ[_POOL_ENV] = str(want)
    if bind is not None:
        os.environ["TVM_BIND_THREADS"] = "1" if bind else "0"
    if spin_count is not None:
        os.environ["TVM_THREAD_POOL_SPIN_COUNT"] = str(int(spin_count))


def num_tvm_threads() -> int:
    """Threads TVM's pool uses for the next parallel kernel (``runtime.NumThreads``)."""
    import tvm

    return int(tvm.get_global_func("runtime.NumThreads")())


def set_tvm_threads(n: int) -> int:
    """Use ``n`` threads for bnncc/TVM kernels from now on; raises if the pool cannot give that many.

    :func:`ensure_thread_pool`, then :func:`bnncc.pipeline.set_num_threads`.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"thread count must be ≥ 1, got {n}")
    ensure_thread_pool(n)
    from ..pipeline import set_num_threads

    got = set_num_threads(n)
    if got != n:
        raise RuntimeError(
            f"TVM's thread pool gives {got} thread(s), not {n}: it was created before {_POOL_ENV} allowed {n} "
            f"({_POOL_ENV}={os.environ.get(_POOL_ENV)!r}); set {_POOL_ENV}={n} before running anything parallel"
        )
    return got


# ----------------------------------------------------------------------------------------------------
# ISA paths
# ----------------------------------------------------------------------------------------------------
def tvm_target(target=None):
    """A ``tvm.target.Target``: as given, or bnncc's named target (default ``host``)."""
    import tvm

    if isinstance(target, tvm.target.Target):
        return target
    from ..targets import get_target

    return get_target(target or "host").tvm_target()


def isa_path(target=None) -> str:
    """How ``target``'s binary kernels (and the probe) count bits (default ``host``): the
    :attr:`bnncc.targets.Isa.popcount_path` of its CPU, e.g. ``avx512-vpopcntdq`` or ``avx2-lut``."""
    from ..targets import isa

    return isa(tvm_target(target)).popcount_path


# ----------------------------------------------------------------------------------------------------
# The probe kernel
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeShape:
    xb: int = 4  # broadcast words (pixels) per register tile
    nv: int = 6  # weight vectors (output-channel vectors) per register tile
    k: int = 64  # words in the reduction loop (x: k·xb words, w: k·nv·lanes words per task: L1-resident)
    lanes: int = 8  # 64-bit lanes per vector register

    @property
    def accumulators(self) -> int:
        return self.xb * self.nv

    @property
    def macs_per_rep(self) -> int:
        """Binary MACs of one pass over ``k`` for one task."""
        return self.k * self.xb * self.nv * self.lanes * 64


# (xb, nv) per ISA path: the largest tile whose accumulators LLVM keeps in registers (checked on the hot loop's
# assembly: no stack references). The LUT paths need registers for the table, the nibble mask, the zero of
# vpsadbw and two temporaries; AVX2 has 16 ymm registers, AVX-512 32 zmm, NEON 32 (cnt needs widening temporaries).
_TILES = {"avx512-vpopcntdq": (4, 6), "avx512bw-lut": (2, 8), "avx2-lut": (1, 10), "neon-cnt": (4, 5)}


def default_shape(target=None) -> ProbeShape:
    """The probe's register tile for ``target``'s ISA path (default ``host``), 64-bit lanes filling its widest
    vectors: 24 zmm accumulators on AVX-512 VPOPCNTDQ, 10 ymm on AVX2, 20 on NEON."""
    from ..targets import isa

    facts = isa(tvm_target(target))
    xb, nv = _TILES.get(facts.popcount_path, (3, 4))
    return ProbeShape(xb, nv, 64, max(1, facts.vector_bits // 64))


def probe_func(tasks: int, shape: ProbeShape, dtype: str = "uint64"):
    """The PrimFunc ``probe(x, w, out, reps)``: ``tasks`` parallel copies of the register-tile loop.

    x: [tasks, k, xb], w: [tasks, k, nv·lanes], out: [tasks, xb, nv·lanes] of ``dtype``: uint64 (the popcount
    sums of x XOR w over ``reps`` passes) or float32 (the FMA probe of :mod:`.roofline_float`: the sums of x·w),
    so nothing is dead code; ``reps`` is a runtime argument.
    """
    from tvm.script import tirx as T

    xb, nv, k, lanes = shape.xb, shape.nv, shape.k, shape.lanes
    width = nv * lanes

    @T.macro
    def popcount_step(acc, x, w, t, j, p, c):
        acc[p, c] = acc[p, c] + T.popcount(x[t, j, p] ^ w[t, j, c])

    @T.macro
    def fma_step(acc, x, w, t, j, p, c):  # T.fma: LLVM emits vfmadd*ps without fast-math contraction
        acc[p, c] = T.fma(x[t, j, p], w[t, j, c], acc[p, c])

    step = fma_step if dtype == "float32" else popcount_step
    zero = T.float32(0) if dtype == "float32" else T.uint64(0)

    @T.prim_func
    def probe(x: T.Buffer((tasks, k, xb), dtype), w: T.Buffer((tasks, k, width), dtype),
              out: T.Buffer((tasks, xb, width), dtype), reps: T.int32):
        T.func_attr({"global_symbol": "probe", "tirx.noalias": True})
        for t in T.parallel(tasks):
            acc = T.decl_buffer((xb, width), dtype, scope="local")
            for p in T.unroll(xb):
                for v in T.unroll(nv):
                    for ln in T.vectorized(lanes):
                        acc[p, v * lanes + ln] = zero
            for _r in range(reps):
                for j in range(k):
                    for p in T.unroll(xb):
                        for v in T.unroll(nv):
                            for ln in T.vectorized(lanes):
                                step(acc, x, w, t, j, p, v * lanes + ln)
            for p in T.unroll(xb):
                for v in T.unroll(nv):
                    for ln in T.vectorized(lanes):
                        out[t, p, v * lanes + ln] = acc[p, v * lanes + ln]

    return probe


def probe_asm(target=None, shape: ProbeShape | None = None, tasks: int = 1) -> str:
    """Assembly of the probe compiled for ``target`` (any named bnncc target: nothing is run)."""
    import tvm

    target = tvm_target(target)
    return tvm.compile(probe_func(tasks, shape or default_shape(target)), target=target).mod.inspect_source("asm")


def _popcount_u64(a: np.ndarray) -> np.ndarray:
    return np.unpackbits(np.ascontiguousarray(a).view(np.uint8)).reshape(*a.shape, 64).sum(-1, dtype=np.uint64)


class Probe:
    """A compiled probe for ``tasks`` parallel tasks (one per thread), with its data on the device."""

    def __init__(self, tasks: int = 1, target=None, shape: ProbeShape | None = None, seed: int = 0):
        import tvm

        self.tasks = int(tasks)
        self.target = tvm_target(target)
        self.isa_path = isa_path(self.target)
        self.shape = shape or default_shape(self.target)
        self.executable = tvm.compile(probe_func(self.tasks, self.shape), target=self.target)
        self.module = self.executable.mod
        self.func = self.module["probe"]
        s = self.shape
        rng = np.random.default_rng(seed)
        self.x_np = rng.integers(0, 2**63, (self.tasks, s.k, s.xb), dtype=np.uint64)
        self.w_np = rng.integers(0, 2**63, (self.tasks, s.k, s.nv * s.lanes), dtype=np.uint64)
        self.x = tvm.runtime.tensor(self.x_np)
        self.w = tvm.runtime.tensor(self.w_np)
        self.out = tvm.runtime.tensor(np.zeros((self.tasks, s.xb, s.nv * s.lanes), np.uint64))

    def macs(self, reps: int) -> int:
        return self.tasks * int(reps) * self.shape.macs_per_rep

    def __call__(self, reps: int) -> np.ndarray:
        self.func(self.x, self.w, self.out, int(reps))
        return self.out.numpy()

    def check(self, reps: int = 3) -> None:
        """The probe computes what it claims (so its loop was not optimized away)."""
        want = _popcount_u64(self.x_np[:, :, :, None] ^ self.w_np[:, :, None, :]).sum(axis=1, dtype=np.uint64)
        got = self(reps)
        if not np.array_equal(got, want * np.uint64(reps)):
            raise AssertionError("roofline probe computed wrong popcount sums")

    def asm(self) -> str:
        return self.module.inspect_source("asm")

    def time(self, reps: int, repeats: int) -> list[float]:
        """Seconds per call of ``repeats`` calls (TVM's ``time_evaluator``, one call per sample)."""
        import tvm

        ev = self.module.time_evaluator("probe", tvm.cpu(), number=1, repeat=int(repeats))
        return list(ev(self.x, self.w, self.out, int(reps)).results)

    def calibrate(self, seconds: float) -> int:
        """``reps`` for which one call takes about ``seconds``."""
        reps = 64
        while True:
            t0 = time.perf_counter()
            self(reps)
            dt = time.perf_counter() - t0
            if dt >= seconds / 4 or reps >= 2**30:
                return max(1, int(reps * seconds / max(dt, 1e-9)))
            reps *= 4


@dataclass
class Roofline:
    threads: int
    gmacs: float  # best sample, G binary MAC/s (the roofline: noise only ever slows the probe down)
    gmacs_median: float
    samples_s: list[float] = field(repr=False)
    macs_per_call: int
    accumulators: int
    lanes: int
    isa_path: str = ""  # how the popcounts were computed (isa_path)

    def as_dict(self) -> dict:
        return asdict(self)


def measure(threads: int = 1, *, seconds: float = 0.05, repeats: int = 10, target=None,
            shape: ProbeShape | None = None, probe: Probe | None = None) -> Roofline:
    """Binary MACs/s of the probe on ``threads`` TVM threads (``threads`` parallel tasks): best and median of
    ``repeats`` calls of about ``seconds`` each. Sets TVM's thread count to ``threads`` (it stays so)."""
    set_tvm_threads(threads)
    probe = probe or Probe(threads, target, shape)
    probe.check()
    reps = probe.calibrate(seconds)
    samples = probe.time(reps, repeats)
    macs = probe.macs(reps)
    return Roofline(threads, macs / min(samples) / 1e9, macs / float(np.median(samples)) / 1e9, samples, macs,
                    probe.shape.accumulators, probe.shape.lanes, probe.isa_path)


def measure_all(threads=(1, 2), **kw) -> dict[int, Roofline]:
    """:func:`measure` for each thread count (largest first so the pool is sized once)."""
    ensure_thread_pool(max(threads))
    return {t: measure(t, **kw) for t in sorted(set(threads), reverse=True)}


# ----------------------------------------------------------------------------------------------------
# Assembly check
# ----------------------------------------------------------------------------------------------------
_INSN = re.compile(r"^\s+([a-z][a-z0-9.]*)\s+(.*)$")
_POPCOUNT = re.compile(r"^(v?popcnt[a-z]*|v?pshufb|cnt)\s")  # an instruction of some popcount lowering
_LUT = ("vpshufb", "vpand", "vpsrlw", "vpaddb", "vpsadbw")  # the nibble-table popcount
# XOR and accumulating add of NEON ("v") and scalar ("r") code; x86 vector code: vpxor / vpadd[dq] on its register
_XOR_ADD = {"v": (r"^eor\s+v", r"^(uadalp|add)\s+v\d+\.2d"), "r": (r"^xor[lq]?\s", r"^add[lq]?\s")}


def hot_loop(asm: str) -> list[str]:
    """The instructions of the basic block with the most popcount instructions (the probe's inner loop)."""
    blocks: list[list[str]] = [[]]
    for line in asm.splitlines():
        if re.match(r"^(\.LBB\d+_\d+|[A-Za-z_$][\w$.]*):", line):  # basic blocks, functions (not .Ltmp)
            blocks.append([])
        elif _INSN.match(line):
            blocks[-1].append(line.strip())
            if re.match(r"\s+(j[a-z]+|b|b\.[a-z]+|cbn?z|tbn?z|ret)\s", line):  # a branch ends the block
                blocks.append([])
    return max(blocks, key=lambda b: sum(bool(_POPCOUNT.match(i)) for i in b))


def asm_isa_path(loop: list[str]) -> str:
    """The ISA path (as :func:`isa_path` names them; ``sse-lut``: the nibble table on xmm) of the popcounts in
    ``loop``, or ``"none"``."""

    def has(pattern: str) -> bool:
        return any(re.search(pattern, i) for i in loop)

    if has(r"^vpopcnt[dq]\s"):
        return "avx512-vpopcntdq"
    for reg, path in (("zmm", "avx512bw-lut"), ("ymm", "avx2-lut"), ("xmm", "sse-lut")):
        if has(rf"^v?pshufb\s.*%{reg}"):
            return path
    if has(r"^cnt\s"):
        return "neon-cnt"
    return "scalar" if has(r"^popcnt") else "none"


def asm_summary(asm: str) -> dict:
    """Instruction mix of the hot loop: its ISA path, popcounts (``vpopcntq`` by register width, the nibble-table
    instructions, others), XORs and accumulating adds on the popcounts' vector registers, memory operands and
    stack references (spills)."""
    loop = hot_loop(asm)
    path = asm_isa_path(loop)

    def count(pattern: str) -> int:
        return sum(bool(re.search(pattern, i)) for i in loop)

    reg = {"avx2-lut": "ymm", "sse-lut": "xmm", "neon-cnt": "v", "scalar": "r"}.get(path, "zmm")
    if path == "avx512-vpopcntdq" and not count(r"^vpopcnt[dq]\s.*%zmm"):
        reg = "ymm"
    lut = {f"lut_{op}": count(rf"^v?{op[1:]}[dq]?\s.*%{reg}") for op in _LUT}
    popcounts = {"avx512-vpopcntdq": count(r"^vpopcnt[dq]\s"), "neon-cnt": count(r"^cnt\s"),
                 "scalar": count(r"^popcnt")}.get(path, lut["lut_vpsadbw"])
    xor, add = _XOR_ADD.get(reg, (rf"^v?pxor[dq]?\s.*%{reg}", rf"^v?padd[dq]\s.*%{reg}"))
    return {
        "isa_path": path,
        "instructions": len(loop),
        "popcounts": popcounts,
        "vpopcntq_zmm": count(r"^vpopcntq\s.*%zmm"),
        "vpopcntq_ymm": count(r"^vpopcntq\s.*%ymm"),
        **lut,
        "popcount_other": count(r"popcnt|^cnt\s") - count(r"^vpopcntq\s.*%[zy]mm"),
        "register": reg,
        "xor": count(xor),
        "add": count(add),
        "loads": count(r"-?\d*\(%r(?!sp\))\w+[,)]|^ld"),
        "stack_refs": count(r"\(%rsp\)|\[sp[,\]]"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seconds", type=float, default=0.05, help="length of one timed call")
    p.add_argument("--asm", default=None, help="write the probe's assembly to this file")
    args = p.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    ensure_thread_pool(max(threads))
    probe1 = Probe(1)
    summary = asm_summary(probe1.asm())
    if args.asm:
        with open(args.asm, "w") as f:
            f.write(probe1.asm())
    print(f"probe: {probe1.shape}, ISA path {probe1.isa_path}, target {probe1.target}")
    print("hot loop:", ", ".join(f"{k} {v}" for k, v in summary.items()))
    res = measure_all(threads, seconds=args.seconds, repeats=args.repeats)
    for t in sorted(res):
        r = res[t]
        print(f"{t} thread(s): best {r.gmacs:.0f} G binary MAC/s (median {r.gmacs_median:.0f}), "
              f"{r.gmacs / t:.0f} per thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
