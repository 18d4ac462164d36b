"""``bnncc quantize`` and ``bnncc compile --int8``: post-training int8 quantization from the command line
(:mod:`bnncc.ptq`). Arguments and files are checked before anything heavy is imported."""

from __future__ import annotations

import argparse
import json

from .cli_common import TRUST_HELP, check_model_arg, import_model_arg, positive, say
from .errors import BnnccError
from .outputs import check_not_input, check_writable


def check_quantize_args(args):
    """The calibration inputs of --int8 / bnncc quantize, read before anything heavy is imported (or None)."""
    if not getattr(args, "int8", False):
        return None
    if not args.calibration:
        raise BnnccError("--int8 needs --calibration DATA.npy: inputs like the model's (a batch of them, "
                         "up to a few hundred), to set the int8 activation ranges")
    if args.report:
        check_writable(args.report)
        check_not_input(args.report, [args.model, args.calibration], flag="--report")
    from .inputs import load_input

    return load_input(args.calibration)


def quantize(args, mod, calibration):
    """Post-training quantization of ``mod``'s float layers; prints the per-layer report (and writes it)."""
    from .compare.results import format_table
    from .ptq import quantize_model

    keep = [n for n in (args.keep_float or "").split(",") if n]
    say(f"bnncc: quantizing float layers to int8 ({args.calibration_method}, {len(calibration)} calibration "
         "inputs)")
    qmod, report = quantize_model(mod, calibration, method=args.calibration_method, keep_float=keep,
                                  keep_first_last=args.keep_first_last, target=args.target)
    say(format_table(report.table()))
    say(f"  median SQNR {report.median_sqnr():.1f} dB over {sum(r['precision'] == 'int8' for r in report.layers)}"
         f" int8 layers")
    if args.report:
        from .outputs import atomic_write

        atomic_write(args.report, json.dumps({"method": report.method, "samples": report.samples,
                                              "layers": report.layers}, indent=2) + "\n")
    return qmod


def cmd_quantize(args) -> int:
    args.int8 = True
    check_model_arg(args.model, args.trust_model)
    calibration = check_quantize_args(args)
    mod, _, _ = import_model_arg(args)
    quantize(args, mod, calibration)
    return 0


def quantize_options(p: argparse.ArgumentParser, flag: bool) -> None:
    from .ptq.ranges import METHODS

    if flag:
        p.add_argument("--int8", action="store_true",
                       help="post-training quantize the float conv/dense layers to int8 (binary layers stay binary)")
    p.add_argument("--calibration", metavar="DATA.npy", help="calibration inputs [samples, *input shape]"
                   + ("" if flag else " (required)"), required=not flag)
    p.add_argument("--calibration-method", choices=METHODS, default="minmax")
    p.add_argument("--keep-float", metavar="L1,L2", help="layers (names in the report) to leave in float")
    p.add_argument("--keep-first-last", action="store_true", help="leave the first and last such layer in float")
    p.add_argument("--report", metavar="FILE.json", help="write the per-layer quantization report here")


def add_quantize_parser(sub, targets) -> None:
    q = sub.add_parser("quantize", help="post-training int8 quantization of a model's float layers: the per-layer "
                                        "report (bnncc compile --int8 builds the library)")
    q.add_argument("model", help="a model file or zoo name, as for compile")
    q.add_argument("--target", default="host", choices=targets)
    q.add_argument("--batch", type=positive, default=1)
    q.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    q.add_argument("--bits", type=int, choices=(16, 32, 64), help=argparse.SUPPRESS)
    q.add_argument("--input-size", type=positive, help="input height/width for zoo models (default 224)")
    quantize_options(q, flag=False)
    q.set_defaults(func=cmd_quantize)
