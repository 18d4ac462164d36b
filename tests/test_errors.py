"""Bad input gives a bnncc error naming the op and the reason, never a raw TVM (or Python) traceback."""

import os

import numpy as np
import pytest
from tvm import relax, tirx

from bnncc import errors, targets
from bnncc.relay_ops import bconv2d, bdense, bitpack, bmaxpool2d
from bnncc.relay_ops.bconv2d import bconv2d_type
from bnncc.testing import compile_graph

CONV, DENSE, POOL, PACK = "bnncc.bconv2d", "bnncc.bdense", "bnncc.bmaxpool2d", "bnncc.bitpack"


def var(shape, dtype="uint32"):
    return relax.Var("x", relax.TensorType(shape, dtype))


def kernel(*shape):
    return np.ones(shape, np.float32)


K3 = kernel(3, 3, 8, 4)  # HWIO: 8 input channels (one 32-bit word), 4 outputs

# (id, call, op, key phrase of the reason)
CASES = [
    # wrong rank
    ("bconv2d-rank3-input", lambda: bconv2d(var((1, 4, 4)), K3), CONV, "must be NHWC (rank 4), got rank 3"),
    ("bconv2d-rank5-input", lambda: bconv2d(var((1, 1, 4, 4, 1)), K3), CONV, "must be NHWC (rank 4), got rank 5"),
    ("bconv2d-rank3-kernel", lambda: bconv2d(var((1, 4, 4, 1)), kernel(3, 8, 4)), CONV, "kernel must be rank 4"),
    ("bmaxpool2d-rank3-input", lambda: bmaxpool2d(var((4, 4, 1))), POOL, "must be NHWC (rank 4), got rank 3"),
    ("bdense-rank3-input", lambda: bdense(var((1, 1, 2)), kernel(40, 3)), DENSE, "must be rank 2"),
    ("bdense-rank1-kernel", lambda: bdense(var((1, 2)), kernel(40)), DENSE, "kernel must be rank 2"),
    ("bitpack-scalar", lambda: bitpack(var((), "float32")), PACK, "at least one axis"),
    # not bitpacked / not float / not static
    ("bconv2d-float-input", lambda: bconv2d(var((1, 4, 4, 8), "float32"), K3), CONV, "must be bitpacked"),
    ("bdense-float-input", lambda: bdense(var((1, 40), "float32"), kernel(40, 3)), DENSE, "must be bitpacked"),
    ("bmaxpool2d-float-input", lambda: bmaxpool2d(var((1, 4, 4, 8), "float32")), POOL, "must be bitpacked"),
    ("bconv2d-int8-input", lambda: bconv2d(var((1, 4, 4, 8), "int8"), K3), CONV, "must be bitpacked"),
    ("bitpack-int-input", lambda: bitpack(var((1, 4, 4, 8), "int32")), PACK, "must be floating point"),
    ("bitpack-bits-8", lambda: bitpack(var((1, 8), "float32"), bits=8), PACK, "bits must be one of (16, 32, 64)"),
    ("bconv2d-symbolic-shape", lambda: bconv2d(var((tirx.Var("n", "int64"), 4, 4, 1)), K3), CONV,
     "must have a static shape"),
    ("bitpack-not-a-tensor", lambda: bitpack(relax.Var("t", relax.TupleType([]))), PACK, "must be a tensor"),
    # kernel channels vs packed words
    ("bconv2d-kernel-needs-more-words", lambda: bconv2d(var((1, 4, 4, 1)), kernel(3, 3, 40, 4)), CONV,
     "input has 1 words per pixel, but 40 channels"),
    ("bconv2d-kernel-needs-fewer-words", lambda: bconv2d(var((1, 4, 4, 3)), K3), CONV,
     "input has 3 words per pixel, but 8 channels"),
    ("bconv2d-64bit-words", lambda: bconv2d(var((1, 4, 4, 2), "uint64"), kernel(3, 3, 64, 4)), CONV,
     "input has 2 words per pixel, but 64 channels in 1 group(s) of 64-bit words need 1"),
    ("bdense-kernel-needs-more-words", lambda: bdense(var((1, 1)), kernel(40, 3)), DENSE,
     "40 input channels need 2 words, got input 1"),
    # groups
    ("bitpack-channels-not-divisible", lambda: bitpack(var((1, 4, 4, 10), "float32"), groups=4), PACK,
     "10 channels cannot be split into 4 groups"),
    ("bitpack-groups-0", lambda: bitpack(var((1, 4, 4, 10), "float32"), groups=0), PACK,
     "cannot be split into 0 groups"),
    ("bconv2d-out-channels-not-divisible", lambda: bconv2d(var((1, 4, 4, 2)), kernel(3, 3, 4, 5), groups=2), CONV,
     "5 output channels cannot be split into 2 groups"),
    ("bconv2d-groups-0", lambda: bconv2d(var((1, 4, 4, 1)), K3, groups=0), CONV, "cannot be split into 0 groups"),
    ("bconv2d-input-packed-without-groups", lambda: bconv2d(var((1, 4, 4, 1)), kernel(3, 3, 3, 4), groups=4), CONV,
     "12 channels in 4 group(s) of 32-bit words need 4"),
    # strides, dilation, pool size
    ("bconv2d-stride-0", lambda: bconv2d(var((1, 4, 4, 1)), K3, strides=(0, 1)), CONV,
     "strides and dilation must be positive"),
    ("bconv2d-dilation-0", lambda: bconv2d(var((1, 4, 4, 1)), K3, dilation=(1, 0)), CONV,
     "strides and dilation must be positive"),
    ("bconv2d-dilation-0-same", lambda: bconv2d(var((1, 4, 4, 1)), K3, dilation=(0, 1), padding="same"), CONV,
     "strides and dilation must be positive"),
    ("bconv2d-negative-stride", lambda: bconv2d(var((1, 4, 4, 1)), K3, strides=(-1, 1)), CONV,
     "strides and dilation must be positive"),
    ("bconv2d-3-strides", lambda: bconv2d(var((1, 4, 4, 1)), K3, strides=(1, 1, 1)), CONV, "need 2 values"),
    ("bmaxpool2d-stride-0", lambda: bmaxpool2d(var((1, 4, 4, 1)), (2, 2), (0, 2)), POOL,
     "pool size and strides must be positive"),
    ("bmaxpool2d-pool-0", lambda: bmaxpool2d(var((1, 4, 4, 1)), (0, 2), (1, 1), "same"), POOL,
     "pool size and strides must be positive"),
    # kernel / window larger than the input
    ("bconv2d-kernel-too-big", lambda: bconv2d(var((1, 2, 2, 1)), K3), CONV, "does not fit the padded 2x2 input"),
    ("bconv2d-dilated-kernel-too-big", lambda: bconv2d(var((1, 4, 4, 1)), K3, dilation=(2, 2)), CONV,
     "does not fit"),
    ("bmaxpool2d-window-too-big", lambda: bmaxpool2d(var((1, 2, 2, 1)), (3, 3)), POOL, "does not fit the 2x2 input"),
    # padding, pad_value, out, layout
    ("bconv2d-bad-padding", lambda: bconv2d(var((1, 4, 4, 1)), K3, padding="full"), CONV,
     "padding must be 'same', 'valid' or 4"),
    ("bconv2d-negative-padding", lambda: bconv2d(var((1, 4, 4, 1)), K3, padding=(1, 1, -1, 1)), CONV,
     "padding must be"),
    ("bmaxpool2d-bad-padding", lambda: bmaxpool2d(var((1, 4, 4, 1)), padding="foo"), POOL,
     "padding must be 'same', 'valid' or 4"),
    ("bconv2d-pad-value-2", lambda: bconv2d(var((1, 4, 4, 1)), K3, pad_value=2), CONV, "pad_value must be 0 or 1"),
    ("bconv2d-bad-out", lambda: bconv2d(var((1, 4, 4, 1)), K3, out="int8"), CONV, "out must be one of"),
    ("bdense-bad-out", lambda: bdense(var((1, 2)), kernel(40, 3), out="x"), DENSE, "out must be one of"),
    ("bconv2d-bad-layout", lambda: bconv2d(var((1, 4, 4, 1)), K3, kernel_layout="NCHW"), CONV,
     "kernel_layout must be 'HWIO' or 'OHWI'"),
    ("bconv2d-nan-multiplier", lambda: bconv2d(var((1, 4, 4, 1)), K3, np.nan, out="bitpacked"), CONV,
     "must be finite"),
]

XFAIL: dict[str, str] = {}  # cases of bnncc bugs found by these tests live here until fixed
CASES += [
    ("bconv2d-stride-0-same", lambda: bconv2d(var((1, 4, 4, 1)), K3, strides=(0, 1), padding="same"), CONV,
     "strides and dilation must be positive"),
    ("bmaxpool2d-stride-0-same", lambda: bmaxpool2d(var((1, 4, 4, 1)), (2, 2), (0, 2), "same"), POOL,
     "must be positive"),
    ("bdense-nan-multiplier", lambda: bdense(var((1, 2)), kernel(40, 3), np.nan, out="bitpacked"), DENSE,
     "must be finite"),
    ("bconv2d-padding-none", lambda: bconv2d(var((1, 4, 4, 1)), K3, padding=None), CONV, "padding must be"),
]


def _check(exc: BaseException, op: str, phrase: str) -> None:
    msg = str(exc)
    assert isinstance(exc, errors.BnnccError), f"{type(exc).__name__}: {msg}"
    assert isinstance(exc, errors.OpError)
    assert exc.op == op
    assert msg.startswith(f"{op}: "), msg
    assert phrase in msg, msg
    assert "Traceback" not in msg and "tvm" not in msg.lower(), msg  # no TVM internals leak through


@pytest.mark.parametrize(
    "call, op, phrase",
    [pytest.param(c, o, p, id=i, marks=[pytest.mark.xfail(strict=True, reason=XFAIL[i])] if i in XFAIL else [])
     for i, c, o, p in CASES],
)
def test_bad_op_arguments(call, op, phrase):
    with pytest.raises(Exception) as info:  # noqa: B017 - any exception type is checked below
        call()
    _check(info.value, op, phrase)


def test_type_inference_rejects_uneven_group_split():
    """The check behind FInferType (for calls not made by the builders) names the op and the split."""
    attrs = dict(weight_layout="OHWI", groups=4, channels_in=10, strides=(1, 1), dilation=(1, 1),
                 padding=(0, 0, 0, 0), pad_value=1, out="float32")
    with pytest.raises(errors.OpError) as info:
        bconv2d_type((1, 4, 4, 4), "uint32", (4, 3, 3, 1), "uint32", attrs)
    _check(info.value, CONV, "10 input channels cannot be split into 4 groups")


def test_unknown_target_lists_known_ones():
    with pytest.raises(errors.TargetError) as info:
        targets.get_target("nope")
    msg = str(info.value)
    assert isinstance(info.value, errors.BnnccError)
    assert "unknown target 'nope'" in msg
    for name in targets.target_names():
        assert name in msg
    assert {"host", "x86", "aarch64"} <= set(targets.target_names())


def test_unknown_target_when_compiling():
    with pytest.raises(errors.TargetError, match="unknown target 'nope'"):
        compile_graph(lambda bb, x: bitpack(x), ((1, 8), "float32"), target="nope")


def test_set_num_threads_goes_down_and_up_again():
    """Lowering the thread count must not cap later calls (TVM caps its pool at TVM_NUM_THREADS)."""
    from bnncc.pipeline import set_num_threads

    cores = len(os.sched_getaffinity(0))
    assert set_num_threads(1) == 1
    assert set_num_threads(min(2, cores)) == min(2, cores)
    assert set_num_threads(cores) == cores
    with pytest.raises(errors.BnnccError):
        set_num_threads(0)
