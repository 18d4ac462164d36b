"""bnncc vs LCE (indirect BGEMM, default) vs TFLite XNNPACK fp32 on x86: the binary conv layers L1–L5 and whole
networks, in one run (``bnncc bench --compare``, ``benchmarks/bench_x86.py``; docs/benchmarks.md).

All contenders run in one process, round-robin (``--burst-ms`` for warm bursts), medians of ``--repeats`` runs
after warm-up. Threads: bnncc through TVM's thread pool, LCE and TFLite through their ``num_threads``. Unless
``--tvm-bind-threads``, TVM's workers are not pinned to cores (``TVM_BIND_THREADS=0``), like LCE's and TFLite's.
The popcount roofline (:mod:`bnncc.compare.roofline`) is measured in the same run, before and after (best kept);
"fraction of roofline" is bnncc's binary MAC/s over (1-thread roofline × threads). The results say which ISA
path the roofline (and bnncc's popcounts) took: ``isa_path``.

Timing scope: bnncc = one call of the Relax VM's ``main`` on an input already in a TVM tensor (it allocates and
returns the output); LCE = its Python ``predict`` (Invoke + input/output copies); TFLite = ``invoke()``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from . import roofline as R
from .layers import ALONE_NOTE, LAYER_COLUMNS, LAYERS, bench_layers, display_rows, set_roofline_fractions
from .networks import NETWORK_COLUMNS, bench_networks, network_entries, write_breakdown
from .results import collect_meta, print_table, write_results

TVM_ENV = ("TVM_NUM_THREADS", "TVM_BIND_THREADS", "TVM_THREAD_POOL_SPIN_COUNT")  # recorded in the results


def results_dir() -> Path:
    """``benchmarks/results`` of the source checkout bnncc runs from; ``./bnncc-results`` for an installed bnncc."""
    checkout = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    return checkout if checkout.is_dir() else Path.cwd() / "bnncc-results"


def _csv(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


def write_rows(base: Path, rows, meta, columns, title, notes) -> None:
    """``base``.md (display rows) and ``base``.json (raw rows)."""
    md, js = base.with_name(base.name + ".md"), base.with_name(base.name + ".json")
    write_results(md, None, display_rows(rows), meta, columns=columns, title=title, notes=notes)
    write_results(None, js, rows, meta, columns=columns, title=title, notes=notes)
    print(f"wrote {md} and {js}")


def _parser(default_out: Path) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", default=",".join(LAYERS), help="comma-separated subset of L1..L5 ('' for none)")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--bits", type=int, default=64, choices=(32, 64), help="bnncc's word size")
    p.add_argument("--networks", default="", help="comma-separated: standin and/or bnncc.models zoo names")
    p.add_argument("--burst-ms", type=float, default=0.0,
                   help="0: one call per contender per round (cold caches); >0: warm bursts of about this many ms "
                        "per contender per round (timing.time_interleaved_bursts)")
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
    p.add_argument("--out", default=str(default_out), help="results path without suffix ('' for none)")
    return p


def _notes(timing: str, threads_note: str) -> tuple[list[str], list[str]]:
    layer_notes = [
        timing + " bnncc includes bitpack and the output transform, as LCE's LceQuantize → LceBconv2d does.",
        "speedup vs LCE best = min(LCE-indirect, LCE-default) / bnncc; speedup vs XNNPACK = XNNPACK / bnncc.",
        ALONE_NOTE,
        "fraction of roofline = bnncc G binary MAC/s / (1-thread roofline × threads); roofline = best call of "
        "the register-resident xor+popcount+add probe (bnncc/compare/roofline.py), measured in this run; "
        "isa_path = how its popcounts (and bnncc's) were computed.",
        threads_note,
    ]
    network_notes = [timing, "speedup vs LCE best: over the three LCE configurations.", ALONE_NOTE, threads_note]
    return layer_notes, network_notes


def main(argv: list[str] | None = None, *, default_out: Path | None = None) -> int:
    """The comparison's command line (``--help``); results go to ``--out`` (default ``default_out``, else
    :func:`results_dir` ``/ "x86"``)."""
    p = _parser(default_out or results_dir() / "x86")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be ≥ 1")

    threads = [int(t) for t in _csv(args.threads)]
    bind = True if args.tvm_bind_threads else (None if "TVM_BIND_THREADS" in os.environ else False)
    R.ensure_thread_pool(max(threads), bind=bind, spin_count=args.tvm_spin_count)
    layers = _csv(args.layers)
    unknown = [name for name in layers if name not in LAYERS]
    if unknown:
        p.error(f"unknown layers {unknown}; known: {', '.join(LAYERS)}")

    probe_threads = sorted(set(threads) | {1})
    roof = R.measure_all(probe_threads, seconds=args.roofline_seconds)
    asm = R.asm_summary(R.Probe(1).asm())
    for t in probe_threads:
        print(f"roofline {t} thread(s): {roof[t].gmacs:.0f} G binary MAC/s (best; median {roof[t].gmacs_median:.0f}), "
              f"ISA path {roof[t].isa_path}")
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
        print_table(display_rows(rows), LAYER_COLUMNS)
    if net_rows:
        print_table(display_rows(net_rows), NETWORK_COLUMNS)

    if args.out:
        import tvm

        meta = collect_meta(
            threads, repeats=args.repeats, warmup=args.warmup, burst_ms=args.burst_ms, settle_ms=args.settle_ms,
            bits=args.bits,
            tuning_log=args.tuning_log,
            tvm=tvm.__version__, target=str(R.tvm_target()), isa_path=roof[1].isa_path,
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
        layer_notes, network_notes = _notes(timing, threads_note)
        base = Path(args.out)
        if rows:
            write_rows(base, rows, meta, LAYER_COLUMNS, "bnncc on x86: binary conv layers L1–L5", layer_notes)
        if net_rows:
            write_rows(base.with_name(base.name + "-networks"), net_rows, meta, NETWORK_COLUMNS,
                       "bnncc on x86: whole networks", network_notes)
    if args.breakdown:
        out = Path(args.out) if args.out else (default_out or results_dir() / "x86")
        write_breakdown(args.breakdown, out.with_name(f"x86-{args.breakdown}-breakdown"))
    return 0
