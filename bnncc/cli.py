"""Command line: ``bnncc compile | run | bench | profile | analyze | models | demo`` (also ``python -m bnncc``).

Exit codes: 0 success, 1 an internal failure (a bug: please report it), 2 bad input (a clear one-line error).
Progress and summaries go to stderr; only requested data goes to files/stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .cli_common import TRUST_HELP as _TRUST_HELP
from .cli_common import check_model_arg as _check_model_arg
from .cli_common import import_model_arg as _import_model_arg
from .cli_common import keras_model as _keras_model
from .cli_common import non_keras_file as _non_keras_file
from .cli_common import positive as _positive
from .cli_common import remote_options as _remote_options
from .cli_common import say as _say
from .cli_quantize import add_quantize_parser, check_quantize_args, quantize, quantize_options
from .errors import BnnccError
from .limits import check_threads
from .outputs import check_not_input, check_writable, save_outputs
from .targets import get_target
from .tune.util import check_log_dir


def _size(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _set_threads(n: int | None) -> None:
    if n:
        from .runtime import set_num_threads

        set_num_threads(n)


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise BnnccError(f"--input-shape must be integers separated by commas, e.g. 1,224,224,3; got {text!r}") \
            from None
    if min(shape) < 1:
        raise BnnccError(f"--input-shape must be positive, got {text!r}")
    return shape


def _float_size(model) -> int:
    """Bytes of the model's weights as float32 (what its .h5 file mostly holds)."""
    import numpy as np

    return int(sum(np.prod(w.shape) for w in model.weights) * 4)


# ------------------------------------------------------------------------------------------- commands
def cmd_compile(args) -> int:
    c_library = args.emit == "c-library"
    # named targets only: detecting the host imports TVM, and the host runs TVM's runtime anyway
    if not c_library and args.target != "host" and not get_target(args.target).tvm_runtime:
        raise BnnccError(f"--target {args.target}: no TVM runtime exists for it to load a shared library; "
                         "use --emit c-library (a runtime-free static library)")
    if c_library:
        from .standalone import check_output_dir

        check_output_dir(args.output)
    else:
        check_writable(args.output)
    if Path(args.model).exists():
        from .frontend.formats import model_files

        check_not_input(args.output, model_files(args.model))  # a Caffe net: both of its files
    if args.tuning_log:
        check_log_dir(args.tuning_log)
    _check_model_arg(args.model, args.trust_model)
    calibration = check_quantize_args(args)
    t0 = time.perf_counter()
    from .pipeline import build, build_c_library

    mod, model, path = _import_model_arg(args)
    if args.int8:
        mod = quantize(args, mod, calibration)
    _say(f"bnncc: compiling for {args.target}")
    options = dict(tuning_log=None if args.no_tuning else (args.tuning_log or "auto"),  # tuning
                   name=Path(path).stem if path else args.model, dump_ir=args.dump_ir, on_phase=_phase_progress(t0))
    if c_library:
        fp, stats = build_c_library(mod, args.output, args.target, max_threads=args.max_threads, **options)
        out, size = Path(args.output), fp.archive_bytes
        _say(f"bnncc: wrote {out}/ (static C library, no runtime needed) for {args.target} in "
             f"{time.perf_counter() - t0:.1f} s")
        _say(f"  footprint: code {_size(fp.code_bytes)} (driver + runtime {_size(fp.glue_bytes)}), weights "
             f"{_size(fp.weight_bytes)}, zeroed memory {_size(fp.arena_bytes)} (arena {_size(fp.activation_bytes)}: "
             f"activations + workspace; up to {fp.max_threads - 1} pool threads' workspace "
             f"{_size(fp.workspace_bytes)})")
    else:
        exe = build(mod, args.target, **options)
        out = exe.export_library(args.output)
        stats, size = exe.stats, out.stat().st_size
        _say(f"bnncc: wrote {out} for {exe.target.name} ({exe.target.description}) in "
             f"{time.perf_counter() - t0:.1f} s")
    files = _model_files(path)
    ref_size = sum(f.stat().st_size for f in files) if files else _float_size(model)
    what = f"the {' + '.join(f.suffix for f in files)} file{'s' * (len(files) > 1)}" if files else "float32 weights"
    _say(f"  binary ops: {stats['binary_ops']}  int8 ops: {stats.get('int8_ops', 0)}  float ops: {stats['float_ops']}  "
         f"packed between binary layers: {stats['packed_outputs']}")
    _say(f"  size: {_size(size)} (vs {_size(ref_size)} of {what}: {ref_size / size:.1f}x smaller)")
    mem = stats.get("memory")
    if mem:
        _say(f"  memory: peak activations {_size(mem['peak_activation_bytes'])} (memory plan), "
             f"weights {_size(mem['weight_bytes'])}")
    from .tune.log import describe_tuning  # tuning

    _say(f"  {describe_tuning(stats)}")
    return 0


def _model_files(path: str | None) -> list[Path]:
    """The model's files (a Caffe net's two), or none for a zoo model or a SavedModel directory."""
    if not path or not Path(path).is_file():
        return []
    from .frontend.formats import model_files

    return [Path(f) for f in model_files(path)]


def _check_library(path: str, rpc: bool) -> None:
    """The library is a complete ELF file, of this machine's architecture unless it runs on a device."""
    from .elfcheck import verify_library

    if not os.path.exists(path):
        raise BnnccError(f"{path}: no such compiled model")
    info = verify_library(path)
    from .elfcheck import host_machine

    if not rpc and info.machine != host_machine():
        raise BnnccError(f"{path}: built for {info.machine}, this machine is {host_machine()}; run it on such a "
                         "device (bnncc run --rpc HOST:PORT --key KEY, or deploy/)")


def _phase_progress(t0: float):
    """A progress line per compile phase, in the style of ``bnncc tune``: ``[i/n] phase (seconds so far)``."""
    from .pipeline import PHASE_NAMES

    steps = [*PHASE_NAMES, "codegen"]

    def show(name: str, _mod) -> None:
        i = steps.index(name) + 1
        what = "code generation (LLVM)" if name == "codegen" else f"{name} done"
        _say(f"bnncc: compile [{i}/{len(steps)}] {what} ({time.perf_counter() - t0:.1f} s)")

    return show


def cmd_run(args) -> int:
    # Everything checkable is checked before TVM is imported (a bad argument is rejected in a fraction of a s).
    _check_library(args.model, bool(args.rpc))
    if args.output:
        check_writable(args.output)
        check_not_input(args.output, [args.model, *args.input])
    from .inputs import load_input

    inputs = [load_input(p) for p in args.input]
    if args.rpc:
        from .rpc import run_remote

        outputs = run_remote(args.model, inputs, args.rpc, args.key)
    else:
        from .runtime import load

        _set_threads(args.threads)
        outputs = load(args.model)(*inputs)
    outs = outputs if isinstance(outputs, tuple) else (outputs,)
    if args.output:
        for path in save_outputs(args.output, outs):
            _say(f"bnncc: wrote {path}")
    for i, o in enumerate(outs):
        _say(f"bnncc: output {i}: shape {o.shape} {o.dtype}")
    return 0


def _comparison_benchmark():
    """:mod:`bnncc.compare.x86`; it runs LCE and TFLite, so it needs the ``keras`` extra. Results go to ``--out``,
    else ``benchmarks/results/x86*`` of a source checkout, else ``./bnncc-results/x86*``."""
    import importlib.util

    missing = [m for m in ("tensorflow", "larq", "larq_compute_engine") if importlib.util.find_spec(m) is None]
    if missing:
        raise BnnccError(f"bench --compare runs LCE and TFLite, which need {', '.join(missing)}: "
                         "pip install 'bnncc[keras]'")
    from .compare import x86

    return x86


def cmd_bench_compare(args) -> int:
    """bnncc vs LCE (both paths) vs TFLite XNNPACK fp32, side by side: the layers L1–L5 or a zoo network."""
    if args.rpc or args.model.endswith(".so"):
        raise BnnccError("bench --compare compiles its own layers/networks for this CPU: give a zoo name or nothing")
    argv = ["--threads", str(args.threads) if args.threads else "1,2", "--repeats", str(args.repeats),
            "--burst-ms", "2"]
    if args.model == "layers":
        argv += ["--layers", args.layers]
    else:
        argv += ["--layers", "", "--networks", args.model]
    if args.out is not None:
        argv += ["--out", args.out]
    return _comparison_benchmark().main(argv)


def cmd_bench(args) -> int:
    if args.compare:
        return cmd_bench_compare(args)
    shape_arg = _shape(args.input_shape) if args.input_shape else None
    if args.model.endswith(".so") or args.rpc:
        _check_library(args.model, bool(args.rpc))
    else:
        _check_model_arg(args.model, args.trust_model)
    import numpy as np

    from . import compile as bnncc_compile
    from .runtime import load

    _set_threads(args.threads)
    if args.rpc:  # time on the remote device: a compiled library only
        from .rpc import time_remote

        if not args.model.endswith(".so") or not args.input_shape:
            raise BnnccError("--rpc benchmarks a compiled library: give MODEL.so and --input-shape")
        x = np.random.default_rng(0).standard_normal(shape_arg).astype(np.float32)
        samples = time_remote(args.model, [x], args.rpc, args.key, repeats=args.repeats)
        exe = None
    elif args.model.endswith(".so"):
        exe = load(args.model)
        if shape_arg:
            shape = shape_arg
        elif exe.input_shapes is not None and len(exe.input_shapes) == 1:  # the library's recorded signature
            shape = exe.input_shapes[0]
        else:
            raise BnnccError(f"{args.model} records no single input shape (built by an older bnncc?): give "
                             "--input-shape, e.g. 1,224,224,3")
    elif _non_keras_file(args.model):
        exe = bnncc_compile(args.model, args.target)
        shape = exe.input_shapes[0]
    else:
        model, _ = _keras_model(args.model, args.input_size, args.trust_model)
        exe = bnncc_compile(model, args.target)
        shape = (1, *model.inputs[0].shape[1:])
    if exe is not None:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        samples = exe.time(x, repeats=args.repeats)
    ms = float(np.median(samples)) * 1e3
    print(json.dumps({"model": args.model, "threads": args.threads, "median_ms": round(ms, 4),
                      "repeats": args.repeats}))
    _say(f"bnncc: {args.model}: median {ms:.3f} ms over {args.repeats} runs ({args.threads or 'all'} threads)")
    return 0


def cmd_models(args) -> int:
    from . import models

    rows = []
    for name in models.MODELS:
        d = models.describe(models.build(name, input_shape=(224, 224, 3), seed=0) if args.full else
                            models.MODELS[name]())
        rows.append((name, d["params"], d["binary_macs"], d["float_macs"]))
    print(f"{'model':20s} {'params':>12s} {'binary MACs':>14s} {'float MACs':>12s}")
    for name, p, b, f in rows:
        print(f"{name:20s} {p:12,d} {b:14,d} {f:12,d}")
    return 0


def cmd_demo(args) -> int:
    """The main job: QuickNet compiled for this CPU, checked against Keras, timed against its float twin."""
    import numpy as np

    from . import compile as bnncc_compile
    from . import models

    _set_threads(args.threads or 1)
    size = args.input_size or 224
    _say(f"bnncc demo: building {args.model} ({size}x{size}, random weights, calibrated BatchNorm)")
    model = models.build(args.model, input_shape=(size, size, 3))
    t0 = time.perf_counter()
    exe = bnncc_compile(model, "host")
    _say(f"bnncc demo: compiled for host ({exe.target.description}) in {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, size, size, 3)).astype(np.float32)
    want = model(x, training=False).numpy()
    got = exe(x)
    err = float(np.abs(got - want).max() / np.abs(want).max())
    same = bool(got.argmax() == want.argmax())
    _say(f"bnncc demo: max |bnncc - keras| / max |keras| = {err:.2e}, same top-1 class: {same}")
    twin = models.twin.strip_quantizers(model)
    float_exe = bnncc_compile(twin, "host")
    tflite = models.twin.tflite_float_runner(twin, args.threads or 1)
    results = {"bnncc_binary": exe.time(x, repeats=args.repeats),
               "bnncc_float_twin": float_exe.time(x, repeats=args.repeats),
               "tflite_xnnpack_float_twin": tflite(x, args.repeats)}
    base = float(np.median(results["bnncc_binary"])) * 1e3
    for name, s in results.items():
        ms = float(np.median(s)) * 1e3
        _say(f"  {name:28s} {ms:8.3f} ms  ({ms / base:5.2f}x bnncc)")
    print(json.dumps({"model": args.model, "rel_error": err, "same_top1": same,
                      **{k: round(float(np.median(v)) * 1e3, 4) for k, v in results.items()}}))
    return 0 if (err < 1e-4 and same) else 1


# ------------------------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with bnncc's error format: one line ``bnncc: error: ...`` and exit code 2 (not usage + error)."""

    def error(self, message: str):
        _say(f"bnncc: error: {message} (see {self.prog} --help)")
        sys.exit(2)


def _threads(text: str) -> int:
    try:
        return check_threads(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    except BnnccError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--threads ")) from None


def _pool_size(text: str) -> int:
    """Threads of a C library's pool: its device's cores, not this machine's (bnncc_runtime.c caps it at 64)."""
    if not text.isdigit() or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 64, got {text!r}")
    return int(text)


_THREADS_HELP = "kernel threads, 1 to the cores of this machine (default: every core)"


def parser() -> argparse.ArgumentParser:
    from .cli_profile import add_profile_parsers
    from .targets import target_names

    p = _Parser(prog="bnncc", description="Compile Binarized Neural Networks with TVM.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile a Keras/Larq, ONNX, TFLite or Caffe model, or a zoo model, into one "
                                       "shared library (or a runtime-free C library)")
    c.add_argument("model", help="a .h5/.keras file, a SavedModel directory, a .onnx file (e.g. exported from "
                                 "PyTorch), a .tflite file, a Caffe .prototxt (its .caffemodel beside it, same stem) "
                                 "or .caffemodel, or a zoo name (bnncc models); the file type picks the frontend")
    c.add_argument("-o", "--output", required=True,
                   help="the shared library to write (.so), or with --emit c-library the directory to write")
    c.add_argument("--emit", choices=("shared-library", "c-library"), default="shared-library",
                   help="shared-library: one .so for the TVM runtime (default); c-library: a static library + "
                        "header that needs no runtime (bnncc_<model>_run), see deploy/standalone")
    c.add_argument("--max-threads", type=_pool_size, default=None,
                   help="c-library: the most threads the library will run its kernels on (default 8): its "
                        "static workspace is sized for them")
    c.add_argument("--target", default="host", choices=target_names())
    c.add_argument("--batch", type=_positive, default=1,
                   help="batch size (of an ONNX model: if its batch is dynamic; of a Caffe net: replaces its batch)")
    c.add_argument("--trust-model", action="store_true", help=_TRUST_HELP)
    c.add_argument("--bits", type=int, choices=(16, 32, 64),
                   help="packed word size (default: the target's, 16 on aarch64, 32 on x86)")
    c.add_argument("--input-size", type=_positive, help="input height/width for zoo models (default 224)")
    # tuning (bnncc.tune): the log of tuning_logs/ for the target is applied unless told otherwise
    tl = c.add_mutually_exclusive_group()
    tl.add_argument("--tuning-log", metavar="DIR", help="apply this tuning log (bnncc tune writes one)")
    tl.add_argument("--no-tuning", action="store_true", help="bnncc's default schedules, no tuning log")
    c.add_argument("--dump-ir", metavar="DIR", help="write the module after each pipeline phase to DIR/NN-<phase>.py")
    quantize_options(c, flag=True)
    c.set_defaults(func=cmd_compile)

    add_quantize_parser(sub, target_names())  # bnncc.cli_quantize

    r = sub.add_parser("run", help="run a compiled library on .npy inputs")
    r.add_argument("model", help="the compiled .so")
    r.add_argument("--input", "-i", action="append", required=True, help=".npy input (repeat for several)")
    r.add_argument("--output", "-o", help=".npy file for the output, written as given (several outputs: "
                                          "NAME.0.npy, NAME.1.npy, ...)")
    r.add_argument("--threads", type=_threads, help=_THREADS_HELP)
    _remote_options(r, "run on a remote device")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bench", help="median latency of a model or compiled library; --compare: against LCE and "
                                     "TFLite side by side")
    b.add_argument("model", nargs="?", default="layers",
                   help="zoo name, Keras model file, or compiled .so; with --compare a zoo name or 'layers' "
                        "(the default: the conv layers of --layers)")
    b.add_argument("--threads", type=_threads, help=_THREADS_HELP)
    b.add_argument("--repeats", type=_positive, default=20)
    b.add_argument("--target", default="host", choices=target_names())
    b.add_argument("--input-size", type=_positive)
    b.add_argument("--trust-model", action="store_true", help=_TRUST_HELP)
    b.add_argument("--input-shape", help="input shape, e.g. 1,224,224,3 (default for a .so: the one it records)")
    _remote_options(b, "time the .so on a remote device")
    b.add_argument("--compare", action="store_true",
                   help="bnncc.compare: bnncc vs LCE 0.16 (indirect BGEMM and default) vs TFLite XNNPACK "
                        "fp32 in one run, at 1 and 2 threads unless --threads; prints a table and writes "
                        "benchmarks/results/x86*.md (+ .json) unless --out")
    b.add_argument("--layers", default="L1,L2,L3,L4,L5", help="with --compare: the layers of docs/benchmarks.md")
    b.add_argument("--out", help="with --compare: results path without suffix ('' for none)")
    b.set_defaults(func=cmd_bench)

    add_profile_parsers(sub)  # profile, analyze (bnncc.cli_profile)

    m = sub.add_parser("models", help="the model zoo with parameter and MAC counts")
    m.add_argument("--full", action="store_true", help="build with weights (slower; same counts)")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("demo", help="QuickNet for this CPU: checked against Keras, timed against float")
    d.add_argument("--model", default="quicknet")
    d.add_argument("--input-size", type=_positive)
    d.add_argument("--threads", type=_threads, default=1, help="kernel threads (default 1)")
    d.add_argument("--repeats", type=_positive, default=20)
    d.set_defaults(func=cmd_demo)

    # tuning (bnncc.tune, bnncc.rpc.cli)
    from .rpc.cli import add_rpc_parser

    t = sub.add_parser("tune", help="auto-tune a model's binary (and heaviest float) ops into tuning_logs/")
    t.add_argument("model", help="a .h5/.keras file, a SavedModel directory, or a zoo name (bnncc models)")
    t.add_argument("--target", default="host", choices=target_names())
    t.add_argument("--rpc", metavar="HOST:PORT", help="RPC tracker: measure on the servers registered under --key")
    t.add_argument("--key", help="device key at the tracker (with --rpc)")
    t.add_argument("--trials", type=_positive, default=48, help="trials per task (default 48; fewer if its space is)")
    t.add_argument("--log", metavar="DIR", help="log directory (default tuning_logs/<target>, e.g. host-<cpu>)")
    t.add_argument("--float-tasks", type=int, default=2, help="heaviest float conv/dense tasks to tune too")
    t.add_argument("--threads", type=_threads, help="threads of the measured kernels (local runner)")
    t.add_argument("--trust-model", action="store_true", help=_TRUST_HELP)
    t.add_argument("--session-timeout", type=float, default=60.0, help="seconds per RPC measurement session")
    t.add_argument("--batch", type=_positive, default=1)
    t.add_argument("--bits", type=int, choices=(16, 32, 64),
                   help="packed word size (default: the target's, as compile; tune what you compile)")
    t.add_argument("--input-size", type=_positive, help="input height/width for zoo models (default 224)")
    t.add_argument("--seed", type=int)
    t.set_defaults(func=cmd_tune)
    add_rpc_parser(sub)
    return p


def cmd_tune(args) -> int:
    _check_model_arg(args.model, args.trust_model)
    from .frontend.formats import import_model
    from .tune.driver import tune

    if args.threads:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)  # the local runner's worker inherits it
    if _non_keras_file(args.model):
        model, path = None, args.model
    else:
        model, path = _keras_model(args.model, args.input_size, args.trust_model)
    _say(f"bnncc: importing {args.model}")
    mod = import_model(path or model, batch_size=args.batch, bits=args.bits or get_target(args.target).word_bits,
                       trust_model=args.trust_model)
    try:
        report = tune(mod, args.target, log_dir=args.log, trials=args.trials, rpc=args.rpc, key=args.key,
                      float_tasks=args.float_tasks, session_timeout=args.session_timeout, seed=args.seed,
                      model_name=args.model, threads=args.threads)
    except KeyboardInterrupt:
        _say("bnncc tune: interrupted; every trial measured so far is kept in the log: rerun to continue")
        return 130
    print(json.dumps({"log": str(report.log_dir), "tasks": len(report.tasks), "tuned": report.tuned,
                      "trials": report.trials, "seconds": round(report.seconds, 1)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # larq 0.14 needs tf-keras; before TF is imported
    args = parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return args.func(args)
    except BnnccError as e:
        _say(f"bnncc: error: {e}")
        return 2
    except KeyboardInterrupt:
        _say("bnncc: interrupted")
        return 130
