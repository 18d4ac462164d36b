"""bnncc vs LCE (indirect BGEMM, default) vs TFLite XNNPACK fp32 on x86: the binary conv layers L1–L5.

    python -m benchmarks.bench_x86 --layers L1,L2,L3,L4,L5 --threads 1,2 --repeats 20

For every layer (BENCHMARKS.md: 3×3, stride 1, 'same', pad_values=1, float output through a BN-like
multiplier/bias) the Keras model is ``contenders.bconv_layer_model`` (QuantConv2D → BatchNormalization). bnncc
compiles the same computation from the model's weights — float NHWC input → ``bitpack`` → ``bconv2d(...,
out="float32")`` with multiplier = γ/√(var+ε), bias = β − mean·multiplier — so its time includes bitpacking and
the output transform, like LCE's ``LceQuantize → LceBconv2d``. bnncc's output must match LCE's within 1e-4
(relative to the largest output) before anything is timed.

All contenders run in one process, round-robin (``contenders.time_interleaved``; ``--burst-ms`` for warm bursts,
``contenders.time_interleaved_bursts``), medians of ``--repeats`` runs after warm-up. Threads: bnncc through TVM's
thread pool (:func:`benchmarks.roofline.set_tvm_threads`), LCE and TFLite through their ``num_threads``. Unless
``--tvm-bind-threads``, TVM's workers are not pinned to cores (``TVM_BIND_THREADS=0``), like LCE's and TFLite's.
The popcount roofline (:mod:`benchmarks.roofline`) is measured in the same run, before and after (best kept);
"fraction of roofline" is bnncc's binary MAC/s over (1-thread roofline × threads).

Timing scope: bnncc = one call of the Relax VM's ``main`` on an input already in a TVM tensor (it allocates and
returns the output); LCE = its Python ``predict`` (Invoke + input/output copies); TFLite = ``invoke()``.

Whole networks: :func:`bench_networks` takes ``(name, keras_model, bnncc_model)`` entries (``bnncc_model``: a
:class:`bnncc.pipeline.Executable` or any callable on one numpy input) and times bnncc against
``contenders.network_runners``; ``--networks`` resolves names through :func:`network_entries` (the zoo models once
``bnncc.compile`` exists; ``standin`` = a one-layer Larq model with a bnncc graph built by hand).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import roofline as R

# TVM sizes its thread pool from TVM_NUM_THREADS when it first needs it (else 1 on this 2-core machine, with the
# main thread pinned to core 0): set it before anything runs a parallel kernel.
R.ensure_thread_pool()

from benchmarks import contenders as C  # noqa: E402  (sets TF_USE_LEGACY_KERAS before TensorFlow)

np = C.np
tf = C.tf

RESULTS = Path(__file__).resolve().parent / "results"
REL_TOL = 1e-4
TVM_ENV = ("TVM_NUM_THREADS", "TVM_BIND_THREADS", "TVM_THREAD_POOL_SPIN_COUNT")  # recorded in the results

LAYER_COLUMNS = [
    "layer", "threads", "bnncc ms", "bnncc alone ms", "LCE-indirect ms", "LCE-default ms", "XNNPACK ms",
    "speedup vs LCE best", "speedup vs XNNPACK", "bnncc G binary MAC/s", "fraction of roofline", "rel err vs LCE",
]
NETWORK_COLUMNS = [
    "network", "threads", "bnncc ms", "bnncc alone ms", "LCE-indirect ms", "LCE-default ms", "LCE-indirect+XNNPACK ms",
    "XNNPACK ms", "speedup vs LCE best", "speedup vs XNNPACK", "rel err vs LCE",
]
ALONE_NOTE = ("bnncc alone ms: bnncc timed the same way with no other runtime run in between (its own thread "
              "scaling); the interleaved 'bnncc ms' at 2 threads also pays for the other runtimes' worker threads "
              "and, on this VM, for the second vCPU's contention on the host.")
# runner name in contenders.network_runners → column
_NET_RUNNER_COLUMNS = {
    "lce_indirect": "LCE-indirect ms",
    "lce_default": "LCE-default ms",
    "lce_indirect_xnnpack": "LCE-indirect+XNNPACK ms",
    "tflite_xnnpack_fp32": "XNNPACK ms",
}


# ----------------------------------------------------------------------------------------------------
# bnncc as a contender (the interface contenders.time_interleaved uses: _prepare, _timed_once)
# ----------------------------------------------------------------------------------------------------
class BnnccRunner:
    """A bnncc :class:`~bnncc.pipeline.Executable` (timed as one VM call on a TVM tensor) or, for stand-ins, any
    callable on one numpy array (timed as one call)."""

    name = "bnncc"

    def __init__(self, model: Any):
        from bnncc.pipeline import Executable

        self.model = model
        self._main = model.vm["main"] if isinstance(model, Executable) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self.model(np.ascontiguousarray(x, dtype=np.float32))
        return out[0] if isinstance(out, tuple | list) else out

    def _prepare(self, x: np.ndarray):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._main is None:
            return x
        import tvm

        return tvm.runtime.tensor(x)

    def _timed_once(self, x) -> float:
        if self._main is None:
            t0 = time.perf_counter()
            self.model(x)
            return time.perf_counter() - t0
        t0 = time.perf_counter()
        self._main(x)
        return time.perf_counter() - t0

    def time(self, x: np.ndarray, repeats: int = 20, warmup: int = 3) -> list[float]:
        x = self._prepare(x)
        for _ in range(warmup):
            self._timed_once(x)
        return [self._timed_once(x) for _ in range(repeats)]


# ----------------------------------------------------------------------------------------------------
# The Keras layer model → bnncc graph
# ----------------------------------------------------------------------------------------------------
def bn_fold(bn: tf.keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """(multiplier, bias) of an inference-mode BatchNormalization: γ/√(var+ε), β − mean·multiplier."""
    mean = bn.moving_mean.numpy().astype(np.float64)
    var = bn.moving_variance.numpy().astype(np.float64)
    gamma = bn.gamma.numpy().astype(np.float64) if bn.gamma is not None else np.ones_like(mean)
    beta = bn.beta.numpy().astype(np.float64) if bn.beta is not None else np.zeros_like(mean)
    mult = gamma / np.sqrt(var + float(bn.epsilon))
    return mult.astype(np.float32), (beta - mean * mult).astype(np.float32)


def layer_params(model: tf.keras.Model) -> dict[str, Any]:
    """Kernel (HWIO, latent: bnncc takes the sign), multiplier, bias, padding of a ``bconv_layer_model``."""
    conv, bn = model.get_layer("bconv"), model.get_layer("bn")
    cfg = conv.get_config()
    if tuple(cfg["strides"]) != (1, 1) or tuple(cfg["dilation_rate"]) != (1, 1) or cfg.get("groups", 1) != 1:
        raise NotImplementedError("bench_x86 layers are stride 1, dilation 1, groups 1")
    mult, bias = bn_fold(bn)
    return {"kernel": conv.get_weights()[0], "multiplier": mult, "bias": bias, "padding": cfg["padding"],
            "pad_value": int(round(float(cfg.get("pad_values", 0.0))))}


def compile_layer(model: tf.keras.Model, bits: int = 64, target: str = "host", tuning_log: str | None = None):
    """bnncc's executable for a ``bconv_layer_model``: float NHWC → bitpack → bconv2d (float output)."""
    from bnncc.relay_ops import bconv2d, bitpack
    from bnncc.testing import compile_graph

    p = layer_params(model)
    shape = tuple(int(d) for d in model.inputs[0].shape)

    def body(bb, x):
        packed = bb.emit(bitpack(x, bits=bits))
        return bconv2d(packed, p["kernel"], p["multiplier"], p["bias"], padding=p["padding"],
                       pad_value=p["pad_value"], out="float32")

    return compile_graph(body, (shape, "float32"), target=target, tuning_log=tuning_log)


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got − want| / max |want|."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"output shape {got.shape} vs {want.shape}")
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))


# ----------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------
def _time(runners: dict, x: np.ndarray, repeats: int, warmup: int, burst_ms: float,
          settle_ms: float = 0.0) -> dict[str, float]:
    """Median ms per runner, round-robin: single calls (``burst_ms`` = 0) or warm bursts of about ``burst_ms``
    (each after ``settle_ms`` idle, so that the previous contender's spinning workers have gone to sleep)."""
    if burst_ms > 0:
        samples = C.time_interleaved_bursts(runners, x, repeats, warmup, min_burst_s=burst_ms * 1e-3,
                                            settle_s=settle_ms * 1e-3)
    else:
        samples = C.time_interleaved(runners, x, repeats, warmup)
    return {k: C.median_ms(v) for k, v in samples.items()}


def _alone(bnncc, x: np.ndarray, threads: Sequence[int], repeats: int, warmup: int,
           burst_ms: float) -> dict[int, float]:
    """bnncc's median ms per thread count with no other runtime in between (its own thread scaling, apart from
    the co-runners' interference that the interleaved columns include)."""
    out = {}
    for t in threads:
        R.set_tvm_threads(t)
        out[t] = _time({"bnncc": bnncc}, x, repeats, warmup, max(burst_ms, 2.0))["bnncc"]
    return out


def _speedups(row: dict, lce_cols: Sequence[str], xnn_col: str) -> None:
    lce = [row[c] for c in lce_cols if row.get(c) is not None]
    row["speedup vs LCE best"] = min(lce) / row["bnncc ms"] if lce else None
    row["speedup vs XNNPACK"] = row[xnn_col] / row["bnncc ms"] if row.get(xnn_col) is not None else None


def bench_layer(layer: C.BconvLayer, threads: Sequence[int] = (1, 2), repeats: int = 20, warmup: int = 3,
                roofline: dict[int, R.Roofline] | None = None, *, bits: int = 64, seed: int = 0,
                tol: float = REL_TOL, burst_ms: float = 0.0, tuning_log: str | None = None,
                settle_ms: float = 0.0) -> list[dict]:
    """Check bnncc against LCE on ``layer``, then time all contenders for each thread count; one row each.
    ``tuning_log="auto"`` applies the committed tuning log of this CPU, as ``bnncc compile`` does."""
    model = C.bconv_layer_model(layer.input_shape, layer.filters, seed=seed)
    lce_fb = C.lce_convert(model)
    float_fb = C.tflite_convert_float(C.float_twin(model))
    x = np.random.default_rng(seed + 1).normal(size=layer.input_shape).astype(np.float32)
    bnncc = BnnccRunner(compile_layer(model, bits, tuning_log=tuning_log))

    want = C.LceRunner(None, 1, True, flatbuffer=lce_fb)(x)
    err = rel_err(bnncc(x), want)
    if not err <= tol:
        raise AssertionError(f"{layer.name}: bnncc differs from LCE: max rel err {err:.2e} > {tol:.0e}")
    print(f"{layer.name}: bnncc matches LCE (max rel err {err:.1e}); timing threads {list(threads)}",
          file=sys.stderr, flush=True)

    alone = _alone(bnncc, x, threads, repeats, warmup, burst_ms)
    rows = []
    for t in threads:
        R.set_tvm_threads(t)
        runners = {
            "bnncc": bnncc,
            "lce_indirect": C.LceRunner(None, t, True, flatbuffer=lce_fb),
            "lce_default": C.LceRunner(None, t, False, flatbuffer=lce_fb),
            "xnnpack": C.TfliteXnnpackRunner(None, t, flatbuffer=float_fb),
        }
        ms = _time(runners, x, repeats, warmup, burst_ms, settle_ms if t > 1 else 0.0)
        row = {"layer": layer.name, "threads": t, "bnncc ms": ms["bnncc"], "bnncc alone ms": alone[t],
               "LCE-indirect ms": ms["lce_indirect"],
               "LCE-default ms": ms["lce_default"], "XNNPACK ms": ms["xnnpack"]}
        _speedups(row, ["LCE-indirect ms", "LCE-default ms"], "XNNPACK ms")
        gmacs = layer.binary_macs / (ms["bnncc"] * 1e-3) / 1e9
        row["bnncc G binary MAC/s"] = gmacs
        row["fraction of roofline"] = None
        row["rel err vs LCE"] = err
        if roofline:
            set_roofline_fractions([row], roofline)
        rows.append(row)
    return rows


def bench_layers(layers: Sequence[str | C.BconvLayer], threads: Sequence[int] = (1, 2), repeats: int = 20,
                 warmup: int = 3, roofline: dict[int, R.Roofline] | None = None, **kw) -> list[dict]:
    rows = []
    for layer in layers:
        layer = C.LAYERS[layer] if isinstance(layer, str) else layer
        rows += bench_layer(layer, threads, repeats, warmup, roofline, **kw)
    return rows


# ----------------------------------------------------------------------------------------------------
# Whole networks
# ----------------------------------------------------------------------------------------------------
NetworkEntry = tuple[str, tf.keras.Model, Any]  # (name, keras_model, bnncc Executable or callable)


def bench_networks(entries: Sequence[NetworkEntry], threads: Sequence[int] = (1, 2), repeats: int = 20,
                   warmup: int = 3, *, lce_xnnpack: bool = True, seed: int = 0, burst_ms: float = 0.0,
                   settle_ms: float = 0.0) -> list[dict]:
    """bnncc vs ``contenders.network_runners(keras_model, t)`` for each entry and thread count.

    ``rel err vs LCE`` (bnncc against LCE's default path, on one random N(0, 1) input) is reported, not asserted:
    in a whole network a pre-activation within round-off of 0 may binarize differently in two correct
    implementations.
    """
    rows = []
    for name, keras_model, bnncc_model in entries:
        shape = tuple(int(d) if d is not None else 1 for d in keras_model.inputs[0].shape)
        x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
        bnncc = BnnccRunner(bnncc_model)
        err = None
        alone = _alone(bnncc, x, threads, repeats, warmup, burst_ms)
        for t in threads:
            R.set_tvm_threads(t)
            runners = {"bnncc": bnncc, **C.network_runners(keras_model, t, lce_xnnpack=lce_xnnpack)}
            if err is None:
                err = rel_err(bnncc(x), runners["lce_default"](x))
            ms = _time(runners, x, repeats, warmup, burst_ms, settle_ms if t > 1 else 0.0)
            row = {"network": name, "threads": t, "bnncc ms": ms["bnncc"], "bnncc alone ms": alone[t]}
            row.update({col: ms.get(key) for key, col in _NET_RUNNER_COLUMNS.items()})
            _speedups(row, ["LCE-indirect ms", "LCE-default ms", "LCE-indirect+XNNPACK ms"], "XNNPACK ms")
            row["rel err vs LCE"] = err
            rows.append(row)
    return rows


def standin_entry(input_shape: Sequence[int] = (1, 14, 14, 64), filters: int = 64, seed: int = 0) -> NetworkEntry:
    """A stand-in network until the Keras frontend exists: ``bconv_layer_model`` with its bnncc graph built by
    hand (:func:`compile_layer`)."""
    model = C.bconv_layer_model(input_shape, filters, seed=seed)
    return ("standin-bconv-" + "x".join(str(d) for d in input_shape[1:]) + f"-{filters}", model,
            compile_layer(model))


def network_entries(names: Sequence[str], seed: int = 0, tuning_log: str | None = None) -> list[NetworkEntry]:
    """Entries for ``--networks``: ``standin`` or a ``bnncc.models`` zoo name (built with seeded random weights,
    224×224×3, compiled with ``bnncc.compile``)."""
    entries = []
    for name in names:
        if name == "standin":
            entries.append(standin_entry(seed=seed))
            continue
        import bnncc
        from bnncc import models

        compile_keras: Callable | None = getattr(bnncc, "compile", None)
        if compile_keras is None:
            raise SystemExit(f"--networks {name}: bnncc.compile (the Keras frontend) does not exist yet")
        if name not in models.MODELS:
            raise SystemExit(f"--networks {name}: unknown; known: standin, {', '.join(models.MODELS)}")
        keras_model = models.build(name, (224, 224, 3), seed=seed)
        entries.append((name, keras_model, compile_keras(keras_model, tuning_log=tuning_log)))
    return entries


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------
def _csv(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


def display_rows(rows: Sequence[dict]) -> list[dict]:
    """Rows for the printed/Markdown tables: relative errors in scientific notation (JSON keeps the floats)."""
    return [{k: (f"{v:.1e}" if k == "rel err vs LCE" and isinstance(v, float) else v) for k, v in row.items()}
            for row in rows]


def set_roofline_fractions(rows: Sequence[dict], roofline: dict[int, R.Roofline]) -> None:
    """fraction of roofline = bnncc G binary MAC/s / (1-thread roofline × threads)."""
    for row in rows:
        row["fraction of roofline"] = row["bnncc G binary MAC/s"] / (roofline[1].gmacs * row["threads"])


def _write(base: Path, rows, meta, columns, title, notes) -> None:
    md, js = base.with_name(base.name + ".md"), base.with_name(base.name + ".json")
    C.write_results(md, None, display_rows(rows), meta, columns=columns, title=title, notes=notes)
    C.write_results(None, js, rows, meta, columns=columns, title=title, notes=notes)
    print(f"wrote {md} and {js}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", default=",".join(C.LAYERS), help="comma-separated subset of L1..L5 ('' for none)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--bits", type=int, default=64, choices=(32, 64), help="bnncc's word size")
    p.add_argument("--networks", default="", help="comma-separated: standin and/or bnncc.models zoo names")
    p.add_argument("--burst-ms", type=float, default=0.0,
                   help="0: one call per contender per round (cold caches); >0: warm bursts of about this many ms "
                        "per contender per round (contenders.time_interleaved_bursts)")
    p.add_argument("--settle-ms", type=float, default=200.0,
                   help="with --burst-ms and more than 1 thread: idle time before each contender's burst, so that "
                        "the previous runtime's spinning workers (TVM's spin ≈ 0.1 s) do not take its cores")
    p.add_argument("--tvm-bind-threads", action="store_true",
                   help="let TVM pin its workers to cores (its default; LCE/TFLite threads are never pinned). Without "
                        "it the benchmark sets TVM_BIND_THREADS=0, unless that variable is set")
    p.add_argument("--tvm-spin-count", type=int, default=None,
                   help="TVM_THREAD_POOL_SPIN_COUNT: sched_yield calls before an idle TVM worker sleeps "
                        "(TVM's default 300000 ≈ 0.1 s)")
    p.add_argument("--tuning-log", default="auto",
                   help="'auto': bnncc with the committed tuning log of this CPU (as bnncc compile); 'none': "
                        "bnncc's default schedules")
    p.add_argument("--breakdown", default="", help="zoo model whose per-kernel time breakdown to write (quicknet)")
    p.add_argument("--roofline-seconds", type=float, default=0.05, help="length of one roofline probe call")
    p.add_argument("--out", default=str(RESULTS / "x86"), help="results path without suffix ('' for none)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be ≥ 1")

    threads = [int(t) for t in _csv(args.threads)]
    bind = True if args.tvm_bind_threads else (None if "TVM_BIND_THREADS" in os.environ else False)
    R.ensure_thread_pool(max(threads), bind=bind, spin_count=args.tvm_spin_count)
    layers = _csv(args.layers)
    unknown = [name for name in layers if name not in C.LAYERS]
    if unknown:
        p.error(f"unknown layers {unknown}; known: {', '.join(C.LAYERS)}")

    probe_threads = sorted(set(threads) | {1})
    roof = R.measure_all(probe_threads, seconds=args.roofline_seconds)
    asm = R.asm_summary(R.Probe(1).asm())
    for t in probe_threads:
        print(f"roofline {t} thread(s): {roof[t].gmacs:.0f} G binary MAC/s (best; median {roof[t].gmacs_median:.0f})")
    print("roofline probe hot loop:", ", ".join(f"{k} {v}" for k, v in asm.items()), flush=True)

    tuning = None if args.tuning_log == "none" else args.tuning_log
    rows = bench_layers(layers, threads, args.repeats, args.warmup, bits=args.bits, burst_ms=args.burst_ms,
                        tuning_log=tuning, settle_ms=args.settle_ms)
    net_rows = []
    if args.networks:
        net_rows = bench_networks(network_entries(_csv(args.networks), tuning_log=tuning), threads, args.repeats,
                                  args.warmup, burst_ms=args.burst_ms, settle_ms=args.settle_ms)

    # The roofline is a peak: measure it again after the benchmark and keep the better of the two.
    again = R.measure_all(probe_threads, seconds=args.roofline_seconds)
    for t in probe_threads:
        print(f"roofline {t} thread(s) after the run: {again[t].gmacs:.0f} G binary MAC/s")
        if again[t].gmacs > roof[t].gmacs:
            roof[t] = again[t]
    set_roofline_fractions(rows, roof)
    if rows:
        C.print_table(display_rows(rows), LAYER_COLUMNS)
    if net_rows:
        C.print_table(display_rows(net_rows), NETWORK_COLUMNS)

    if args.out:
        import tvm

        meta = C.collect_meta(
            threads, repeats=args.repeats, warmup=args.warmup, burst_ms=args.burst_ms, settle_ms=args.settle_ms,
            bits=args.bits,
            tuning_log=args.tuning_log,
            tvm=tvm.__version__, target=str(R._tvm_target()),
            tvm_env={k: os.environ.get(k) for k in TVM_ENV},
            roofline_gmacs={t: round(r.gmacs, 1) for t, r in roof.items()},
            roofline_gmacs_median={t: round(r.gmacs_median, 1) for t, r in roof.items()},
            roofline_probe={"accumulators": roof[1].accumulators, "lanes": roof[1].lanes, **asm},
        )
        settle = (f", with {args.settle_ms:g} ms idle before each burst at more than 1 thread (other runtimes' "
                  "spinning workers asleep)" if args.settle_ms > 0 else "")
        mode = (f"each sample the median of a warm burst of about {args.burst_ms} ms{settle}" if args.burst_ms > 0 else
                "one call per contender per round, so every call starts with caches the other contenders used")
        timing = (f"Medians of {args.repeats} runs after {args.warmup} warm-up runs; contenders interleaved "
                  f"round-robin in one process ({mode}). bnncc: one Relax VM call (input already a TVM tensor). "
                  "LCE: its Python predict (Invoke + input/output copies). XNNPACK: TFLite invoke() of the float twin.")
        env = ", ".join(f"{k}={os.environ.get(k)}" for k in TVM_ENV)
        threads_note = (f"bnncc threads: runtime.config_threadpool(1, n), with {env} set before TVM's pool exists "
                        "(TVM_BIND_THREADS=0: TVM does not pin its workers, as LCE/TFLite do not). LCE's indirect "
                        "BGEMM is single-threaded in LCE 0.16 (num_threads only helps its default path).")
        base = Path(args.out)
        if rows:
            notes = [
                timing + " bnncc includes bitpack and the output transform, as LCE's LceQuantize → LceBconv2d does.",
                "speedup vs LCE best = min(LCE-indirect, LCE-default) / bnncc; speedup vs XNNPACK = XNNPACK / bnncc.",
                ALONE_NOTE,
                "fraction of roofline = bnncc G binary MAC/s / (1-thread roofline × threads); roofline = best call of "
                "the register-resident xor+popcount+add probe (benchmarks/roofline.py), measured in this run.",
                threads_note,
            ]
            _write(base, rows, meta, LAYER_COLUMNS, "bnncc on x86: binary conv layers L1–L5", notes)
        if net_rows:
            notes = [timing, "speedup vs LCE best: over the three LCE configurations.", ALONE_NOTE, threads_note]
            _write(base.with_name(base.name + "-networks"), net_rows, meta, NETWORK_COLUMNS,
                   "bnncc on x86: whole networks", notes)
    if args.breakdown:
        write_breakdown(args.breakdown, Path(args.out or RESULTS / "x86").with_name(f"x86-{args.breakdown}-breakdown"))
    return 0


def write_breakdown(name: str, base: Path, threads: int = 1) -> None:
    """Per-kernel time of a zoo model at 224×224 (bnncc.profile: each compiled kernel timed alone), so the next
    bottleneck is visible: binary kernels vs float ones."""
    import bnncc
    from bnncc import models
    from bnncc.profile import kernel_times

    R.set_tvm_threads(threads)
    rows = kernel_times(bnncc.from_keras(models.build(name, (224, 224, 3))), repeats=40)
    total = sum(r["ms_total"] for r in rows)
    binary = sum(r["ms_total"] for r in rows if r["binary"])
    table = [{"kernel": r["kernel"], "kind": "binary" if r["binary"] else "float", "calls": r["calls"],
              "ms per call": round(r["ms_per_call"], 4), "ms total": round(r["ms_total"], 4),
              "share": f"{r['ms_total'] / total:.1%}"} for r in rows]
    C.print_table(table)
    notes = [f"{name} 224×224, {threads} thread: sum of kernels {total:.3f} ms, binary kernels (bitpack, bconv with "
             f"their fused epilogues) {binary:.3f} ms = {binary / total:.0%}, float kernels {total - binary:.3f} ms.",
             "Each scheduled kernel of the compiled model is built alone and timed with TVM's time_evaluator on "
             "random inputs (warm caches); a fused kernel's name lists what was fused into it."]
    C.write_results(base.with_name(base.name + ".md"), base.with_name(base.name + ".json"), table,
                    C.collect_meta([threads]), title=f"bnncc on x86: per-kernel breakdown of {name}", notes=notes)
    print(f"wrote {base}.md")


if __name__ == "__main__":
    sys.exit(main())
