"""The ``bnncc profile`` and ``bnncc analyze`` commands (parsers and implementations); :mod:`bnncc.cli` adds
them. Nothing heavy is imported until a command runs."""

from __future__ import annotations

import json
from pathlib import Path

from .cli_common import keras_model as _keras_model
from .cli_common import remote_options as _remote_options
from .cli_common import say as _say
from .errors import BnnccError

REMOTE_MAX_THREADS = 256


def _compiled(spec: str, target: str, input_size: int | None):
    """A compiled .so, or a model/zoo name compiled now: (Executable, display name)."""
    from .runtime import load

    if spec.endswith(".so"):
        return load(spec), Path(spec).stem
    model, path = _keras_model(spec, input_size)
    _say(f"bnncc: compiling {spec} for {target}")
    from . import compile as bnncc_compile

    return bnncc_compile(model, target, name=Path(path).stem if path else spec, tuning_log="auto"), Path(spec).stem


def cmd_profile(args) -> int:
    from .targets import get_target

    spec = get_target(args.target)
    emulated = not spec.is_native and not args.rpc
    if emulated and spec.arch != "aarch64":
        raise BnnccError(f"profile runs on this machine or on the emulated aarch64 device; {spec.name} is "
                         f"{spec.arch}")
    if emulated and args.model.endswith(".so"):
        raise BnnccError("--target aarch64 profiles a model compiled now: give the model, not a .so")
    if args.repeats < 1:
        raise BnnccError(f"--repeats must be at least 1, got {args.repeats}")
    if args.rpc:
        from .rpc import split_addr

        split_addr(args.rpc)
        if args.threads is not None and not 1 <= args.threads <= REMOTE_MAX_THREADS:
            # the device's cores are not known here: a bound against a typo (100000 threads hang a runtime)
            raise BnnccError(f"--threads must be between 1 and {REMOTE_MAX_THREADS}, got {args.threads}")
    out = Path(args.out) if args.out else None
    if out is not None:
        from .runtime import check_writable

        check_writable(out.with_name(out.name + ".json"))
    if not args.no_plots and out is not None:
        from .profile.plots import pyplot

        pyplot()  # fail now, not after the measurement, when matplotlib is missing
    if args.rpc:
        from .profile import format_profile

        p = _profile_remote(args)
        print(format_profile(p, top=args.top))
        _write(p, out, args.no_plots)
        return 0
    exe, name = _compiled(args.model, args.target, args.input_size)
    from .profile import format_insn_profile, format_profile, profile, profile_emulated

    if emulated:
        from .device.arm64 import QemuUnavailable

        _say(f"bnncc: counting {name}'s instructions per kernel call on the emulated aarch64 device")
        try:
            p = profile_emulated(exe)
        except QemuUnavailable as e:
            raise BnnccError(f"no emulated aarch64 device here: {str(e).splitlines()[0]}") from None
        print(format_insn_profile(p, top=args.top))
    else:
        _say(f"bnncc: profiling {name}: roofline probes, then {args.repeats} instrumented + {args.repeats} plain "
             "runs")
        p = profile(exe, threads=args.threads, repeats=args.repeats)
        print(format_profile(p, top=args.top))
    _write(p, out, args.no_plots)
    return 0


def _profile_remote(args) -> dict:
    """``profile --rpc``: a .so as given, or the model compiled now for --target, timed on the device."""
    import tempfile

    from .profile import profile_remote

    timing = dict(threads=args.threads, repeats=args.repeats, session_timeout=args.session_timeout)
    if args.model.endswith(".so"):
        _say(f"bnncc: profiling {args.model} on {args.key!r} ({args.rpc}): each kernel timed alone there")
        return profile_remote(args.model, args.rpc, args.key, **timing)
    exe, name = _compiled(args.model, args.target, args.input_size)
    with tempfile.TemporaryDirectory(prefix="bnncc-profile-") as td:
        lib = exe.export_library(Path(td) / f"{name}.so")
        _say(f"bnncc: profiling {name} on {args.key!r} ({args.rpc}): each kernel timed alone there")
        return profile_remote(lib, args.rpc, args.key, signature=exe.signature, **timing)


def _write(p: dict, out: Path | None, no_plots: bool) -> None:
    if out is not None:
        from .tune.util import atomic_write

        atomic_write(out.with_name(out.name + ".json"), json.dumps(p, indent=1, default=float) + "\n")
        written = [out.with_name(out.name + ".json")]
        if not no_plots:
            from .profile.plots import write_charts

            written += write_charts(p, out)
        _say(f"bnncc: wrote {', '.join(str(w) for w in written)}")


def cmd_analyze(args) -> int:
    from . import analyze

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else list(analyze.ZOO)
    if args.repeats < 1:
        raise BnnccError(f"--repeats must be at least 1, got {args.repeats}")
    if args.input_size < 32:
        raise BnnccError(f"--input-size must be at least 32, got {args.input_size}")
    for m in models:
        if not Path(m).exists() and m not in analyze.ZOO:
            raise BnnccError(f"{m}: no such file, and not a zoo model ({', '.join(analyze.ZOO)})")
    analyze.run(models, args.out, threads=args.threads, repeats=args.repeats, input_size=args.input_size,
                rq2=not args.no_rq2, aarch64=args.aarch64)
    return 0


def add_profile_parsers(sub) -> None:
    """``profile`` and ``analyze`` on the ``bnncc`` subcommand parser ``sub``."""
    from .targets import target_names

    pr = sub.add_parser("profile", help="time per source layer of a model: MACs by precision, G-MAC/s, fraction of "
                                        "the roofline, share; table, JSON and charts")
    pr.add_argument("model", help="a compiled .so, a .h5/.keras file, a SavedModel directory, or a zoo name")
    pr.add_argument("--target", default="host", choices=target_names())
    _remote_options(pr, "time each kernel on a remote device, alone on tensors of its argument shapes (without "
                        "--rpc, --target aarch64 counts instructions per kernel on the emulated device)")
    pr.add_argument("--session-timeout", type=float, default=120.0, help="with --rpc: seconds the device may take "
                                                                         "for the whole profile (default 120)")
    pr.add_argument("--threads", type=int, help="TVM threads (default: every core this process may use)")
    pr.add_argument("--repeats", type=int, default=30, help="instrumented and plain runs each (default 30)")
    pr.add_argument("--input-size", type=int, help="input height/width for zoo models (default 224)")
    pr.add_argument("--out", metavar="PREFIX", help="write PREFIX.json, PREFIX-layers.png, PREFIX-cumulative.png")
    pr.add_argument("--no-plots", action="store_true", help="with --out: the JSON only (no matplotlib needed)")
    pr.add_argument("--top", type=int, help="list only the N slowest kernel calls")
    pr.set_defaults(func=cmd_profile)

    a = sub.add_parser("analyze", help="the LCE paper's RQ1-RQ3 on this machine: latency by precision, the cost "
                                       "of float shortcuts, MACs vs latency; DIR/report.md with figures")
    a.add_argument("--models", help="comma-separated zoo names and/or Keras model files (default: the zoo)")
    a.add_argument("--out", default="bnncc-analysis", metavar="DIR", help="output directory (default "
                                                                         "bnncc-analysis)")
    a.add_argument("--threads", type=int, help="TVM threads (default: every core this process may use)")
    a.add_argument("--repeats", type=int, default=30, help="runs per measurement (default 30)")
    a.add_argument("--input-size", type=int, default=224, help="input height/width of zoo models (default 224)")
    a.add_argument("--no-rq2", action="store_true", help="skip RQ2 (QuickNet stages with/without shortcuts)")
    a.add_argument("--aarch64", action="store_true", help="also count instructions per kernel on the emulated "
                                                          "aarch64 device (RQ3 there; sets the device up if needed)")
    a.set_defaults(func=cmd_analyze)
