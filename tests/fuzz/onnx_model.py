"""Fuzz the ONNX loader's checks (:mod:`bnncc.frontend.onnx`: protobuf parse, graph presence, the operator
listing, onnx's checker, static input shapes) on mutated model bytes:
``python -m tests.fuzz.onnx_model -runs=100000``.

TVM's importer that follows is not fuzzed here (seconds per input); its bad-model paths are tested in
tests/frontend/test_onnx.py."""

from __future__ import annotations

from tests.fuzz.harness import as_file, fuzz_main, instrumented

with instrumented("onnx.checker"):
    from bnncc.frontend import onnx as onnx_frontend


def one_input(data: bytes) -> None:
    path = as_file(data, ".onnx")
    model = onnx_frontend.load_onnx(path)
    onnx_frontend.check_operators(model, file=path)
    onnx_frontend.check_model(model, file=path)
    onnx_frontend.static_input_shapes(model, file=path)


def seeds() -> dict[str, bytes]:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    def model(nodes, inits, shape=(1, 3, 8, 8)):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

    w = np.ones((4, 3, 3, 3), np.float32)
    return {
        "conv": model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], {"w": w}),
        "sign-conv": model([helper.make_node("Sign", ["x"], ["s"]), helper.make_node("Sign", ["w"], ["ws"]),
                            helper.make_node("Conv", ["s", "ws"], ["y"])], {"w": w}),
        "dynamic": model([helper.make_node("Relu", ["x"], ["y"])], {}, shape=("N", 3, 8, 8)),
        "unsupported": model([helper.make_node("NoSuchOp", ["x"], ["y"])], {}),
    }


if __name__ == "__main__":
    fuzz_main("onnx_model", one_input, seeds)
