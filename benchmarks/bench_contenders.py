"""LCE (indirect BGEMM and default) vs TFLite XNNPACK fp32 on the binary conv layers L1–L5 (docs/benchmarks.md).

    python -m benchmarks.bench_contenders --layers L1,L3 --threads 1 --repeats 20

Contenders run round-robin in one process (``bnncc.compare.timing.time_interleaved``); the table gives
medians in ms.  LCE times include the input/output copies of its Python ``predict`` (≈ ``io_ms``);
TFLite times are ``invoke()`` only.  Before timing, every layer is checked: the LCE graph must be
``LceQuantize → LceBconv2d`` with float output, both LCE kernels must agree with the Keras model, and
the float twin must convert to a single ``CONV_2D``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bnncc.compare import contenders as C
from bnncc.compare.layers import LAYERS
from bnncc.compare.results import collect_meta, print_table, write_results
from bnncc.compare.timing import median_ms, time_interleaved

# docs/benchmarks.md, "LCE and XNNPACK anchors" (1 thread, ms, noisy).
ANCHORS_1T = {
    "L1": {"lce": 1.91, "xnnpack": 3.17},
    "L3": {"lce": 4.87, "xnnpack": 14.9},
    "L4": {"lce": 4.12, "xnnpack": 16.2},
}

DEFAULT_MD = Path(__file__).resolve().parent / "results" / "contenders-dev.md"


def check_layer(model, lce_fb: bytes, float_fb: bytes, x) -> dict:
    """Graph and numerics checks for one layer; returns what was found (raises on a failed check)."""
    import numpy as np

    lce_ops = C.tflite_ops(lce_fb)
    names = [op["name"] for op in lce_ops]
    if names != ["LceQuantize", "LceBconv2d"]:
        raise AssertionError(f"unexpected LCE graph {names}")
    bconv = lce_ops[1]
    if bconv["outputs"][0][1] != "FLOAT32":
        raise AssertionError(f"LceBconv2d output is {bconv['outputs'][0]}, expected float")
    float_names = C.tflite_op_names(float_fb)
    if float_names != ["CONV_2D"]:
        raise AssertionError(f"unexpected float graph {float_names}")
    ref = model(x).numpy()
    scale = float(np.abs(ref).max())
    errs = {}
    for indirect in (True, False):
        got = C.LceRunner(None, 1, indirect, flatbuffer=lce_fb)(x)
        err = float(np.abs(got - ref).max()) / scale
        if err > 1e-4:
            raise AssertionError(f"LCE (indirect={indirect}) differs from Keras: max rel err {err:.2e}")
        errs["indirect" if indirect else "default"] = err
    return {"lce_ops": names, "bconv_inputs": bconv["inputs"], "float_ops": float_names, "rel_err": errs}


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", default=",".join(LAYERS), help="comma-separated subset of L1..L5")
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--builtin", action="store_true", help="also time TFLite fp32 without XNNPACK")
    p.add_argument("--no-check", action="store_true", help="skip the graph/numerics checks")
    p.add_argument("--md", default=str(DEFAULT_MD), help="Markdown output ('' for none)")
    p.add_argument("--json", default=None, help="JSON output (default: the --md path with .json)")
    args = p.parse_args(argv)

    layers = [LAYERS[name.strip()] for name in args.layers.split(",") if name.strip()]
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    rows, notes = [], []
    for layer in layers:
        model = C.bconv_layer_model(layer.input_shape, layer.filters, seed=0)
        twin = C.float_twin(model)
        lce_fb, float_fb = C.lce_convert(model), C.tflite_convert_float(twin)
        x = np.random.default_rng(1).normal(size=layer.input_shape).astype(np.float32)
        if not args.no_check:
            found = check_layer(model, lce_fb, float_fb, x)
            msg = (
                f"{layer.name}: LCE graph {' → '.join(found['lce_ops'])} "
                f"(bconv inputs {found['bconv_inputs']}), "
                f"float graph {found['float_ops']}, max rel err vs Keras "
                + ", ".join(f"{k} {v:.1e}" for k, v in found["rel_err"].items())
            )
            print(msg, file=sys.stderr, flush=True)
            notes.append(msg)
        for nt in threads:
            runners = {
                "lce_indirect": C.LceRunner(None, nt, True, flatbuffer=lce_fb),
                "lce_default": C.LceRunner(None, nt, False, flatbuffer=lce_fb),
                "xnnpack_fp32": C.TfliteXnnpackRunner(None, nt, flatbuffer=float_fb),
            }
            if args.builtin:
                runners["builtin_fp32"] = C.TfliteXnnpackRunner(
                    None, nt, use_xnnpack=False, flatbuffer=float_fb
                )
            samples = time_interleaved(runners, x, repeats=args.repeats, warmup=args.warmup)
            ms = {k: median_ms(v) for k, v in samples.items()}
            io_ms = median_ms(runners["xnnpack_fp32"].io_time(x, repeats=args.repeats))
            row = {"layer": layer.name, "threads": nt, "bGMAC": layer.binary_macs / 1e9}
            row.update({f"{k}_ms": v for k, v in ms.items()})
            row["io_ms"] = io_ms
            row["xnn/lce_ind"] = ms["xnnpack_fp32"] / ms["lce_indirect"]
            row["lce_ind_GMAC/s"] = layer.binary_macs / (ms["lce_indirect"] * 1e-3) / 1e9
            anchor = ANCHORS_1T.get(layer.name) if nt == 1 else None
            row["anchor_lce_ms"] = anchor["lce"] if anchor else None
            row["anchor_xnn_ms"] = anchor["xnnpack"] if anchor else None
            rows.append(row)
            print_table(rows[-1:])
            print(file=sys.stdout, flush=True)

    print("\n== all ==")
    print_table(rows)
    notes += [
        "Medians over --repeats runs, contenders interleaved round-robin in one process.",
        "lce_* times are LCE's Python predict(): Invoke() + input memcpy + output copy; "
        "io_ms estimates those copies (TFLite set_tensor + get_tensor). "
        "xnnpack/builtin times are invoke() only.",
        "anchor_* = docs/benchmarks.md, LCE and XNNPACK anchors (1 thread).",
    ]
    if args.md:
        json_path = args.json or str(Path(args.md).with_suffix(".json"))
        meta = collect_meta(
            threads, repeats=args.repeats, warmup=args.warmup, layers=[layer.name for layer in layers]
        )
        write_results(args.md, json_path, rows, meta, title="Contenders on L1–L5 (dev run)", notes=notes)
        print(f"wrote {args.md} and {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
