"""Where two evaluations of a binary network first part ways: the first sign input whose signs differ.

A binary layer amplifies round-off: a pre-sign value within float rounding of 0 may land on the other side (or
on exactly 0, which ``torch.sign`` maps to 0) in one evaluation than in another, flip one ±1, and change the
layer's output by α per tap that reads it. Before a whole-net difference is called noise,
:func:`first_sign_difference` names the first sign input where two evaluations disagree and how close to 0 the
values there are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SignDifference:
    tensor: str  # the sign input (ONNX tensor name)
    index: int  # which activation sign, in graph order
    count: int  # how many values have different signs
    max_abs: float  # the largest |value| of either evaluation among them
    scale: float  # max |value| of that tensor

    @property
    def within_rounding(self) -> bool:
        """Every differing value is within a few float32 ulps of the tensor's scale of 0."""
        return self.max_abs <= 64 * float(np.finfo(np.float32).eps) * self.scale


def activation_sign_inputs(model) -> list[str]:
    """The inputs of the model's ``Sign`` nodes that are activations (not weights), in graph order."""
    weights = {t.name for t in model.graph.initializer}
    return [n.input[0] for n in model.graph.node if n.op_type == "Sign" and n.input[0] not in weights]


def ort_sign_inputs(path: str, x: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    """onnxruntime's value of every activation sign input of the .onnx ``path`` on ``x``."""
    import onnx
    import onnxruntime as ort

    model = onnx.shape_inference.infer_shapes(onnx.load(path))  # the extractor needs every tensor's type
    names = activation_sign_inputs(model)
    sub = onnx.utils.Extractor(model).extract_model([model.graph.input[0].name], names)
    sess = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
    return names, sess.run(None, {sess.get_inputs()[0].name: x})


def first_sign_difference(names, ours, theirs) -> SignDifference | None:
    """The first of the paired sign inputs where ``np.sign`` differs (0 counts as its own sign), or None."""
    for i, (name, a, b) in enumerate(zip(names, ours, theirs, strict=True)):
        differ = np.sign(a) != np.sign(b)
        if differ.any():
            near = np.maximum(np.abs(a[differ]), np.abs(b[differ]))
            return SignDifference(name, i, int(differ.sum()), float(near.max()), float(np.abs(b).max()))
    return None
