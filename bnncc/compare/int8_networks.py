"""ResNet-18 in fp32 and int8 (post-training quantized), seed 001's whole-network comparison: bnncc (ONNX import,
``bnncc.ptq``) vs onnxruntime (fp32; int8 by its own static QDQ quantization) vs OpenVINO (fp32; int8 by NNCF's
post-training quantization), batch 1, 224×224, 1 and 2 threads, round-robin in one process; top-1 agreement with
the fp32 model on random inputs and bnncc's per-layer SQNR beside the times.

The network is built here in PyTorch (torchvision's ResNet-18 architecture, random weights, BatchNorm statistics
drawn in realistic ranges) and exported once to ONNX: every contender runs the same file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .timing import Runner, median_times


def resnet18(seed: int = 0):
    """torchvision's ResNet-18 architecture in plain PyTorch, eval mode, with non-trivial BatchNorm."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else None)

        def forward(self, x):
            y = torch.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                               nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    model = nn.Sequential(*layers).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
    return model


def export_onnx(model, path: Path, size: int = 224) -> Path:
    import torch

    torch.onnx.export(model, torch.randn(1, 3, size, size), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"])
    return path


class _Fn(Runner):
    """A contender as a function of one NCHW float32 input."""

    def __init__(self, name: str, fn, prepare=None):
        self.name, self._fn, self._prep = name, fn, prepare

    def __call__(self, x):
        return self._fn(self.prepare(x))

    def prepare(self, x):
        return self._prep(x) if self._prep else np.ascontiguousarray(x, np.float32)

    def timed_once(self, x) -> float:
        t0 = time.perf_counter()
        self._fn(x)
        return time.perf_counter() - t0


def _ort_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_int8(path: Path, calibration: np.ndarray, out: Path) -> Path:
    """onnxruntime's own static quantization (QDQ, per-channel int8 weights, uint8 activations, min/max)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x[None]}

    quantize_static(str(path), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def _openvino(path: Path, threads: int, calibration: np.ndarray | None):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    if calibration is not None:
        import nncf

        model = nncf.quantize(model, nncf.Dataset(list(calibration[:, None])))
    # On AMX CPUs OpenVINO runs "fp32" models in bf16 unless told: hold it to the precision the row names.
    config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}
    if calibration is None:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(model, "CPU", config)
    req = compiled.create_infer_request()
    return lambda x: req.infer({0: x})[compiled.outputs[0]]


def bench_resnet18(work: Path, threads: Sequence[int] = (1, 2), repeats: int = 10, calibration_samples: int = 32,
                   agreement_samples: int = 20, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows: one per contender × thread count with ms and speed-ups, extra: agreement, SQNR, paths)."""
    import bnncc
    from bnncc.pipeline import build
    from bnncc.ptq import quantize_model
    from bnncc.runtime import set_num_threads

    work.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(resnet18(seed), work / "resnet18.onnx")
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((calibration_samples, 3, 224, 224)).astype(np.float32)
    int8_path = ort_int8(onnx_path, calib, work / "resnet18-ort-int8.onnx")
    mod = bnncc.from_onnx(str(onnx_path))
    # bnncc's module takes NHWC (its frontend transposes the ONNX NCHW input): calibrate in its layout.
    nhwc = [int(s) for s in mod["main"].params[0].ty.shape]
    to_bnncc = (lambda x: np.ascontiguousarray(x.transpose(0, 2, 3, 1))) if nhwc[-1] == 3 else (lambda x: x)
    qmod, report = quantize_model(mod, to_bnncc(calib))
    exes = {"bnncc fp32": build(mod, "host", name="resnet18"), "bnncc int8": build(qmod, "host", name="resnet18")}
    x = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    rows, extra = [], {"bnncc_median_sqnr_db": report.median_sqnr(), "int8_layers": sum(
        r["precision"] == "int8" for r in report.layers), "layers": len(report.layers)}
    fp32 = _ort_session(onnx_path, 1)
    tests = rng.standard_normal((agreement_samples, 1, 3, 224, 224)).astype(np.float32)
    want = np.array([np.argmax(fp32.run(None, {"input": t})[0]) for t in tests])
    for n in threads:
        set_num_threads(n)
        sessions = {"onnxruntime fp32": _ort_session(onnx_path, n), "onnxruntime int8": _ort_session(int8_path, n)}
        runners: dict[str, Runner] = {
            name: _Fn(name, lambda v, s=s: s.run(None, {"input": v})[0]) for name, s in sessions.items()}
        for name, exe in exes.items():
            main = exe.vm["main"]

            def prep(v):
                import tvm

                return tvm.runtime.tensor(to_bnncc(v))
            runners[name] = _Fn(name, lambda v, m=main: m(v).numpy(), prep)
        for name, calibration in (("openvino fp32", None), ("openvino int8", calib)):
            try:
                runners[name] = _Fn(name, _openvino(onnx_path, n, calibration))
            except Exception as e:  # reported, not hidden: the table says why a contender is missing
                extra[f"{name} error"] = str(e).splitlines()[0][:200]
        if n == threads[0]:
            for name, r in runners.items():
                got = np.array([np.argmax(r(t)) for t in tests])
                extra[f"{name} top-1 agreement with fp32"] = float(np.mean(got == want))
        ms = median_times(runners, x, repeats, 2, burst_ms=0)
        best_fp32 = min(ms["bnncc fp32"], ms["onnxruntime fp32"])
        for name, t in ms.items():
            rows.append({"threads": n, "contender": name, "ms": t, "× onnxruntime int8": ms["onnxruntime int8"] / t,
                         "× best fp32 (bnncc/ort)": best_fp32 / t})
        print(f"{n} thread(s): " + ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items()), flush=True)
    return rows, extra


def main(argv: Sequence[str] | None = None, default_out=None) -> int:
    import argparse
    import tempfile

    from ..targets import get_target
    from .results import print_table, write_results

    p = argparse.ArgumentParser(description="ResNet-18 fp32/int8: bnncc vs onnxruntime vs OpenVINO")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", default=str(default_out) if default_out else None)
    a = p.parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows, extra = bench_resnet18(Path(tmp), threads, a.repeats)
    print_table(rows)
    if a.out:
        notes = [f"{k}: {v}" for k, v in extra.items()]
        notes.append("int8 contenders quantize with their own post-training tools on the same 32 random "
                     "calibration inputs (bnncc.ptq min/max; onnxruntime quantize_static QDQ per-channel; NNCF).")
        write_results(f"{a.out}.md", f"{a.out}.json", rows, {"host_target": get_target("host").description,
                                                              **extra}, title="ResNet-18, batch 1, 224×224",
                      notes=notes)
    return 0
