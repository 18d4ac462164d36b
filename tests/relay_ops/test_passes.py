"""The graph passes alone, Relax in / Relax out, no TensorFlow: each returns a new module (its input unchanged)
that computes the same values, bit for bit, as its input (both compiled by plain ``tvm.compile``, which
legalizes bnncc's ops with their own TE definitions)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import relax

from bnncc import pipeline
from bnncc.relay_ops import BCONV2D, BITPACK, BMAXPOOL2D, bconv2d, bdense, bitpack
from bnncc.relay_ops.passes import FuseBinaryLayers, PackInProducers, UseWeightLayout
from bnncc.schedules import CONV_BLOCKS
from bnncc.targets import get_target
from bnncc.testing import graph_module, random_input

TARGET = get_target("host")


def _run(mod: tvm.IRModule, x: np.ndarray) -> np.ndarray:
    ex = tvm.compile(mod, TARGET.tvm_target())
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def _ops(mod: tvm.IRModule) -> list[str]:
    found = []

    @relax.expr_functor.visitor
    class _Ops(relax.PyExprVisitor):
        def visit_call_(self, call):
            if isinstance(call.op, tvm.ir.Op):
                found.append(call.op.name)
            super().visit_call_(call)

    _Ops().visit_expr(mod["main"])
    return found


def _same_module(a: tvm.IRModule, b: tvm.IRModule) -> bool:
    return a.script(show_meta=True) == b.script(show_meta=True)


@settings(max_examples=12)
@given(c=st.sampled_from([32, 64, 96]), o=st.sampled_from([16, 32, 40]), relu=st.booleans(),
       seed=st.integers(0, 2**16))
def test_fuse_binary_layers_folds_bn_and_chains_packed(c, o, relu, seed):
    rng = np.random.default_rng(seed)

    def body(bb, x):
        h = bb.emit(bconv2d(bb.emit(bitpack(x, bits=32)), rng.standard_normal((3, 3, c, c)), padding="same"))
        h = bb.emit(relax.op.multiply(h, relax.const(rng.uniform(0.1, 2, c).astype(np.float32))))
        if relu:
            h = bb.emit(relax.op.nn.relu(h))
        else:
            h = bb.emit(relax.op.add(h, relax.const(rng.standard_normal(c).astype(np.float32))))
        return bdense(bb.emit(relax.op.reshape(bb.emit(bitpack(h, bits=32)), (1, -1))),
                      rng.standard_normal((4 * 4 * c, o)))

    mod = graph_module(body, ((1, 4, 4, c), "float32"))
    before = mod.script()
    fused = FuseBinaryLayers()(mod)
    assert mod.script() == before, "the pass changed its input"
    ops = _ops(fused)
    assert "relax.multiply" not in ops and "relax.add" not in ops and "relax.nn.relu" not in ops
    assert ops.count(BITPACK.name) == 1  # only the input's: the conv emits packed bits, flatten moved after it
    x = random_input(rng, (1, 4, 4, c))
    np.testing.assert_array_equal(_run(fused, x), _run(mod, x))


def test_fuse_binary_layers_moves_max_pool_after_bitpack():
    rng = np.random.default_rng(3)

    def body(bb, x):
        p = bb.emit(relax.op.nn.max_pool2d(x, (2, 2), (2, 2), layout="NHWC"))
        return bconv2d(bb.emit(bitpack(p, bits=32)), rng.standard_normal((3, 3, 64, 32)))

    mod = graph_module(body, ((1, 8, 8, 64), "float32"))
    fused = FuseBinaryLayers()(mod)
    assert "relax.nn.max_pool2d" not in _ops(fused) and BMAXPOOL2D.name in _ops(fused)
    x = random_input(rng, (1, 8, 8, 64))
    np.testing.assert_array_equal(_run(fused, x), _run(mod, x))


@pytest.mark.parametrize("layout", ["HWIO", "OHWI"])
def test_use_weight_layout(layout):
    rng = np.random.default_rng(5)
    mod = graph_module(lambda bb, x: bconv2d(bb.emit(bitpack(x, bits=32)), rng.standard_normal((3, 3, 64, 48)),
                                             padding="same", pad_value=0), ((1, 6, 6, 64), "float32"))
    out = UseWeightLayout(layout)(mod)
    call = next(b.value for b in out["main"].body.blocks[0].bindings if b.value.op == BCONV2D)
    assert str(call.attrs["weight_layout"]) == layout
    assert tuple(call.args[1].value.shape) == ((3, 3, 2, 48) if layout == "HWIO" else (48, 3, 3, 2))
    assert _same_module(UseWeightLayout("OHWI")(mod), mod) and (layout == "OHWI") == _same_module(out, mod)
    x = random_input(rng, (1, 6, 6, 64))
    np.testing.assert_array_equal(_run(out, x), _run(mod, x))
    with pytest.raises(ValueError, match="layout must be one of"):
        UseWeightLayout("NCHW")


def test_pack_in_producers_gives_the_conv_kernel_a_second_output():
    """A residual block's float output (conv + shortcut add: one fused kernel) used by the next add and by a
    whole-word bitpack: after the pass that kernel returns (y, bits); the bitpack kernel is gone."""
    rng = np.random.default_rng(7)

    def body(bb, x):
        y = bb.emit(bconv2d(bb.emit(bitpack(x, bits=32)), rng.standard_normal((3, 3, 64, 64)), padding="same"))
        y = bb.emit(relax.op.add(y, x))
        z = bb.emit(bconv2d(bb.emit(bitpack(y, bits=32)), rng.standard_normal((3, 3, 64, 64)), padding="same"))
        return relax.op.add(y, z)

    mod = graph_module(body, ((1, 6, 6, 64), "float32"))
    c = pipeline.compilation(TARGET)
    fused = pipeline.run_phases(mod, c, until="fuse")
    packed = PackInProducers(CONV_BLOCKS)(fused)

    def kernels(m):
        return {gv.name_hint: f for gv, f in m.functions_items()
                if isinstance(f, relax.Function) and f.attrs is not None and "Primitive" in f.attrs}

    assert not any(isinstance(f.ret_ty, relax.TupleType) for f in kernels(fused).values())
    assert [n for n, f in kernels(packed).items() if isinstance(f.ret_ty, relax.TupleType)]
    assert len(kernels(packed)) == len(kernels(fused))  # one bitpack kernel gone, one (y, bits) kernel added
    assert PackInProducers(CONV_BLOCKS)(packed).script() == packed.script()  # nothing left to do
    x = random_input(rng, (1, 6, 6, 64))
    with c.target:
        rest = tvm.transform.Sequential([relax.transform.FuseTIR()])
        np.testing.assert_array_equal(_run(rest(packed), x), _run(mod, x))
