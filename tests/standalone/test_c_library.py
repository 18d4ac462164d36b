"""The runtime-free C library (``bnncc compile --emit c-library``): bit-identical to the TVM-runtime library of the
same model, on x86 natively and on aarch64 under qemu, at 1 and 2 threads; its ABI declarations checked against
TVM's own headers; two models in one program; clear errors for what cannot become C.

The oracle is the TVM-runtime path (the shared library bnncc already checks against Keras): the C library runs
the same kernels on the same memory plan, so every output bit must agree.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from test_cli import bnncc, error_line

from bnncc import device, pipeline, standalone, testing
from bnncc.elfcheck import host_machine
from bnncc.standalone.classifier import build_classifier, run_classifier

arm64_env, _ = device.pytest_fixtures(scope="module")


def _model(seed: int, width: int = 32, name: str = "small_bnn"):
    from bnncc._tf import keras
    from bnncc.frontend.keras import from_keras

    keras.utils.set_random_seed(seed)
    return from_keras(testing.small_bnn(width, name=name))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    mod = _model(0)
    x = testing.random_input(np.random.default_rng(1), (1, 16, 16, 3))
    lib = tmp_path_factory.mktemp("c") / "small-c"
    fp, _ = pipeline.build_c_library(mod, lib, "host", name="small_bnn")
    return mod, x, lib, fp


def test_host_library_is_bit_identical_to_the_tvm_runtime(small, tmp_path):
    mod, x, lib, _ = small
    want = pipeline.build(mod, "host")(x).ravel()
    exe = build_classifier(lib, tmp_path / "classify")
    for threads in (1, 2):
        got = run_classifier(exe, host_machine(), x, threads=threads)
        assert got.tobytes() == want.tobytes(), f"{threads} threads"


def test_library_layout_header_and_footprint(small):
    _, _, lib, fp = small
    info = json.loads((lib / "footprint.json").read_text())
    assert info["prefix"] == "bnncc_small_bnn" and info["code_bytes"] == fp.code_bytes
    header = (lib / "bnncc_small_bnn.h").read_text()
    assert "int bnncc_small_bnn_run(const float *input, float *output);" in header
    assert "#define BNNCC_SMALL_BNN_INPUT0_SHAPE {1, 16, 16, 3}" in header
    assert (lib / "libbnncc_small_bnn.a").is_file() and (lib / "src" / "weights.bin").stat().st_size == fp.weight_bytes
    # the weights are what the model's constants hold (1-bit kernels packed): smaller than float32 copies
    assert 0 < fp.weight_bytes and 0 < fp.glue_bytes < fp.code_bytes
    assert fp.arena_bytes == fp.activation_bytes + fp.workspace_bytes
    # nothing of TVM's runtime is needed: the archive's undefined symbols are libc/libm/pthread ones only
    nm = subprocess.run(["nm", "-u", str(lib / "libbnncc_small_bnn.a")], capture_output=True, text=True, check=True)
    undefined = {line.split()[-1] for line in nm.stdout.splitlines() if line.strip() and ":" not in line}
    defined = subprocess.run(["nm", "--defined-only", str(lib / "libbnncc_small_bnn.a")], capture_output=True,
                             text=True, check=True).stdout
    external = {s for s in undefined if f" {s}\n" not in defined}
    assert not {s for s in external if "TVM" in s or "tvm" in s}, external
    assert external <= {"memcpy", "memset", "memmove", "expf", "logf", "tanhf", "sqrtf", "powf", "exp", "log",
                        "pthread_create", "pthread_detach", "pthread_mutex_lock", "pthread_mutex_unlock",
                        "pthread_cond_wait", "pthread_cond_broadcast", "sysconf", "sched_yield", "strlen",
                        "__tls_get_addr", "_GLOBAL_OFFSET_TABLE_", "__stack_chk_fail", "syscall", "fmaxf", "fminf",
                        "floorf", "ceilf", "roundf", "nearbyintf"}, external


def test_single_threaded_build_from_its_sources_is_bit_identical(small, tmp_path):
    """DIR/src rebuilds the archive; -DBNNCC_SINGLE_THREAD drops pthreads (bare-metal-style deployments)."""
    mod, x, lib, _ = small
    want = pipeline.build(mod, "host")(x).ravel()
    copy = tmp_path / "st"
    subprocess.run(["cp", "-r", str(lib), str(copy)], check=True)
    src = copy / "src"
    subprocess.run(["cc", "-O2", "-std=gnu11", "-DBNNCC_SINGLE_THREAD", "-I", ".", "-c", "bnncc_runtime.c", "-o",
                    "bnncc_runtime.o"], cwd=src, check=True)
    subprocess.run(["ar", "rcs", "../libbnncc_small_bnn.a", "kernels.o", "model.o", "bnncc_runtime.o", "weights.o"],
                   cwd=src, check=True)
    got = run_classifier(build_classifier(copy, tmp_path / "classify"), host_machine(), x, threads=1)
    assert got.tobytes() == want.tobytes()


ABI_CHECK = r"""
#include <stddef.h>
#include <tvm/ffi/c_api.h>
#include <tvm/runtime/c_backend_api.h>
#include "bnncc_abi.h"
#define SAME(a, b, f) _Static_assert(offsetof(a, f) == offsetof(b, f), #a "." #f)
_Static_assert(sizeof(bnncc_dl_tensor) == sizeof(DLTensor), "DLTensor");
SAME(bnncc_dl_tensor, DLTensor, data); SAME(bnncc_dl_tensor, DLTensor, device); SAME(bnncc_dl_tensor, DLTensor, ndim);
SAME(bnncc_dl_tensor, DLTensor, dtype); SAME(bnncc_dl_tensor, DLTensor, shape);
SAME(bnncc_dl_tensor, DLTensor, strides); SAME(bnncc_dl_tensor, DLTensor, byte_offset);
_Static_assert(sizeof(bnncc_dl_dtype) == sizeof(DLDataType), "DLDataType");
SAME(bnncc_dl_dtype, DLDataType, bits); SAME(bnncc_dl_dtype, DLDataType, lanes);
_Static_assert(sizeof(bnncc_any) == sizeof(TVMFFIAny), "TVMFFIAny");
SAME(bnncc_any, TVMFFIAny, type_index); SAME(bnncc_any, TVMFFIAny, v_ptr); SAME(bnncc_any, TVMFFIAny, v_int64);
_Static_assert(BNNCC_ANY_DLTENSOR_PTR == kTVMFFIDLTensorPtr && BNNCC_ANY_INT == kTVMFFIInt, "type index");
_Static_assert(BNNCC_DL_CPU == kDLCPU, "kDLCPU");
_Static_assert(sizeof(bnncc_parallel_env) == sizeof(TVMParallelGroupEnv), "TVMParallelGroupEnv");
SAME(bnncc_parallel_env, TVMParallelGroupEnv, num_task);
"""


@pytest.mark.parametrize("cc", ["cc", "aarch64-linux-gnu-gcc"])
def test_abi_declarations_match_tvm_headers(tmp_path, cc):
    import tvm
    import tvm_ffi

    if subprocess.run(["which", cc], capture_output=True).returncode != 0:
        pytest.skip(f"{cc} is not installed")
    ffi = Path(tvm_ffi.__file__).parent
    (tmp_path / "abi.c").write_text(ABI_CHECK)
    includes = [ffi / "include", ffi / "3rdparty" / "dlpack" / "include", Path(tvm.__file__).parent / "include",
                Path(standalone.__file__).parent]
    r = subprocess.run([cc, "-std=gnu11", "-fsyntax-only", *[f"-I{p}" for p in includes], str(tmp_path / "abi.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


TWO_MODELS = r"""
#include <stdio.h>
#include <string.h>
#define BNNCC_NO_MODEL_ALIASES
#include "bnncc_model_a.h"
#include "bnncc_model_b.h"
int main(int argc, char **argv) {
  static float x[BNNCC_MODEL_A_INPUT0_ELEMS] __attribute__((aligned(64))), shifted[BNNCC_MODEL_A_INPUT0_ELEMS + 1];
  static float ya[BNNCC_MODEL_A_OUTPUT0_ELEMS], yb[BNNCC_MODEL_B_OUTPUT0_ELEMS], yc[BNNCC_MODEL_A_OUTPUT0_ELEMS];
  FILE *f = fopen(argv[1], "rb");
  if (fread(x, sizeof x, 1, f) != 1) return 3;
  fclose(f);
  float *unaligned = (size_t)shifted % 64 ? shifted : shifted + 1; /* off a 64-byte boundary: copied first */
  memcpy(unaligned, x, sizeof x);
  if (bnncc_model_a_run(x, ya) || bnncc_model_b_run(x, yb) || bnncc_model_a_run(unaligned, yc))
    return fprintf(stderr, "%s\n", bnncc_last_error()), 1;
  f = fopen(argv[2], "wb");
  fwrite(ya, sizeof ya, 1, f);
  fwrite(yb, sizeof yb, 1, f);
  fwrite(yc, sizeof yc, 1, f);
  return fclose(f);
}
"""


def test_two_models_link_into_one_program(small, tmp_path):
    """Every symbol of a model carries its name, and the runtime is shared: two libraries link side by side; an
    input off a 64-byte boundary gives the same output."""
    mod_a, x, _, _ = small
    mod_b = _model(7, width=16, name="model_b")
    for name, mod in (("model_a", mod_a), ("model_b", mod_b)):
        pipeline.build_c_library(mod, tmp_path / name, "host", name=name)
    (tmp_path / "two.c").write_text(TWO_MODELS)
    subprocess.run(["cc", "-O2", "-static", f"-I{tmp_path / 'model_a'}", f"-I{tmp_path / 'model_b'}", "-o", "two",
                    "two.c", "model_a/libbnncc_model_a.a", "model_b/libbnncc_model_b.a", "-lpthread", "-lm"],
                   cwd=tmp_path, check=True)
    x.astype(np.float32).tofile(tmp_path / "x.f32")
    subprocess.run([str(tmp_path / "two"), "x.f32", "y.f32"], cwd=tmp_path, check=True)
    got = np.fromfile(tmp_path / "y.f32", dtype=np.float32)
    want = [pipeline.build(m, "host")(x).ravel() for m in (mod_a, mod_b)]
    want = np.concatenate([*want, want[0]])
    assert got.tobytes() == want.tobytes()


def test_aarch64_library_under_qemu_is_bit_identical_to_the_tvm_runtime(arm64_env, tmp_path):
    from bnncc.device.deploy_app import run_deploy_app

    mod = _model(3)
    x = testing.random_input(np.random.default_rng(4), (1, 16, 16, 3))
    so = pipeline.build(mod, "aarch64").export_library(tmp_path / "m.so")
    want = run_deploy_app(so, x).output.ravel()
    pipeline.build_c_library(mod, tmp_path / "c", "aarch64", name="small_bnn")
    exe = build_classifier(tmp_path / "c", tmp_path / "classify")
    assert subprocess.run(["file", str(exe)], capture_output=True, text=True).stdout.count("statically linked")
    for threads in (1, 2):
        assert run_classifier(exe, "aarch64", x, threads=threads).tobytes() == want.tobytes(), f"{threads} threads"


def test_what_cannot_become_c_is_a_clear_error():
    import tvm
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4), "float32"))
    with bb.function("main", [x]):
        y = bb.emit(relax.Call(relax.ExternFunc("vm.builtin.copy"), [x], ty_args=[x.ty]))
        bb.emit_func_output(y)
    with pytest.raises(standalone.EmitError, match="main calls vm.builtin.copy, which bnncc cannot emit as C"):
        standalone.plan.read_program(bb.get())
    n = tvm.tirx.Var("n", "int64")
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n, 4), "float32"))
    with bb.function("main", [x]):
        bb.emit_func_output(x)
    with pytest.raises(standalone.EmitError, match="input x has a dynamic shape"):
        standalone.plan.read_program(bb.get())


def test_cli_writes_replaces_and_refuses(model_dir, tmp_path):
    r = bnncc("compile", model_dir / "tiny.h5", "--emit", "c-library", "-o", "tiny-c", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "static C library, no runtime needed" in r.stderr and "footprint: code" in r.stderr
    first = (tmp_path / "tiny-c" / "footprint.json").read_text()
    r = bnncc("compile", model_dir / "tiny.h5", "--emit", "c-library", "-o", "tiny-c", "--max-threads", "2",
              cwd=tmp_path)  # a directory it wrote is replaced
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "tiny-c" / "footprint.json").read_text())["max_threads"] == 2 != \
        json.loads(first)["max_threads"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    line = error_line(bnncc("compile", model_dir / "tiny.h5", "--emit", "c-library", "-o", "mine", cwd=tmp_path))
    assert "mine: is a directory bnncc did not write" in line
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    line = error_line(bnncc("compile", model_dir / "tiny.h5", "--emit", "c-library", "-o", "tiny.so",
                            "--max-threads", "65", cwd=tmp_path))
    assert "--max-threads" in line and "1 to 64" in line


# ------------------------------------------------------------------------------------------------- armv7
def _needs(tool: str) -> None:
    if subprocess.run(["which", tool], capture_output=True).returncode != 0:
        pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")


def _bconv_module(shape, filters, rng, strides=(1, 1), padding="same"):
    from bnncc import relay_ops
    from bnncc.relay_ops import bconv2d, bitpack

    w = rng.choice([-1.0, 1.0], size=(3, 3, shape[-1], filters)).astype(np.float32)

    def body(bb, x):
        packed = bb.emit(bitpack(x, bits=16))
        return bconv2d(packed, w, strides=strides, padding=padding)

    assert relay_ops
    return testing.graph_module(body, (shape, "float32")), w


def _armv7_bconv_is_exact(tmp_path, shape, filters, strides, padding, seed):
    from bnncc import reference

    _needs("arm-linux-gnueabihf-gcc")
    _needs("qemu-arm")
    rng = np.random.default_rng(seed)
    mod, w = _bconv_module(shape, filters, rng, strides, padding)
    x = testing.random_input(rng, shape)
    lib = tmp_path / f"bconv-{seed}"
    pipeline.build_c_library(mod, lib, "armv7", name="bconv")
    got = run_classifier(build_classifier(lib, lib / "classify"), "armv7", x, threads=2)
    want = reference.bconv2d_acc(reference.binarize(x), reference.binarize(w.transpose(3, 0, 1, 2)), strides,
                                 padding=padding)
    assert np.array_equal(got, want.ravel().astype(np.float32))


@pytest.mark.parametrize("shape,filters,strides,padding", [((1, 9, 7, 37), 19, (1, 1), "same"),
                                                            ((1, 8, 8, 64), 32, (2, 2), "valid")])
def test_armv7_binary_conv_is_bit_exact_under_qemu_arm(tmp_path, shape, filters, strides, padding):
    _armv7_bconv_is_exact(tmp_path, shape, filters, strides, padding, seed=sum(shape) + filters)


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["L1", "L2", "L3", "L4", "L5"])
def test_armv7_benchmark_layers_are_bit_exact_under_qemu_arm(tmp_path, layer):
    from bnncc.compare.layers import LAYERS

    spec = LAYERS[layer]
    _armv7_bconv_is_exact(tmp_path, spec.input_shape, spec.filters, (1, 1), "same", seed=int(layer[1]))


def test_armv7_small_bnn_matches_the_x86_library_within_float_roundoff(small, tmp_path):
    """No TVM runtime exists for 32-bit ARM, so the oracle is the same model on x86: binary layers agree exactly,
    float ones to round-off (another vector unit: NEON on armv7 flushes denormals)."""
    _needs("arm-linux-gnueabihf-gcc")
    _needs("qemu-arm")
    mod, x, _, _ = small
    want = pipeline.build(mod, "host")(x).ravel()
    pipeline.build_c_library(mod, tmp_path / "v7", "armv7", name="small_bnn")
    exe = build_classifier(tmp_path / "v7", tmp_path / "classify")
    for threads in (1, 2):
        got = run_classifier(exe, "armv7", x, threads=threads)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert got.argmax() == want.argmax()


# ------------------------------------------------------------------------------------ zoo networks (slow)
@pytest.mark.slow
@pytest.mark.parametrize("name", ["quicknet", "birealnet18"])
def test_zoo_network_c_library_is_bit_identical(arm64_env, tmp_path, name):
    from bnncc import models
    from bnncc.device.deploy_app import run_deploy_app
    from bnncc.frontend.keras import from_keras

    mod = from_keras(models.build(name))
    x = testing.random_input(np.random.default_rng(5), (1, 224, 224, 3))
    want = pipeline.build(mod, "host")(x).ravel()
    pipeline.build_c_library(mod, tmp_path / "x86", "host", name=name)
    exe = build_classifier(tmp_path / "x86", tmp_path / "classify-x86")
    for threads in (1, 2):
        assert run_classifier(exe, host_machine(), x, threads=threads).tobytes() == want.tobytes()
    so = pipeline.build(mod, "aarch64").export_library(tmp_path / "m.so")
    want = run_deploy_app(so, x).output.ravel()
    pipeline.build_c_library(mod, tmp_path / "a64", "aarch64", name=name)
    exe = build_classifier(tmp_path / "a64", tmp_path / "classify-a64")
    assert run_classifier(exe, "aarch64", x, threads=2).tobytes() == want.tobytes()


@pytest.mark.slow
def test_quicknet_on_armv7_under_qemu_arm(tmp_path):
    """QuickNet as an armv7 C library: its binary layers are exact (L1–L5 above), so the whole net matches the
    x86 library to float round-off (NEON on armv7 flushes denormals; no TVM runtime exists there to compare)."""
    from bnncc import models
    from bnncc.frontend.keras import from_keras

    _needs("arm-linux-gnueabihf-gcc")
    _needs("qemu-arm")
    mod = from_keras(models.build("quicknet"))
    x = testing.random_input(np.random.default_rng(5), (1, 224, 224, 3))
    want = pipeline.build(mod, "host")(x).ravel()
    fp, _ = pipeline.build_c_library(mod, tmp_path / "v7", "armv7", name="quicknet")
    assert fp.code_bytes < 200 * 1024
    got = run_classifier(build_classifier(tmp_path / "v7", tmp_path / "classify"), "armv7", x, threads=2)
    assert got.argmax() == want.argmax()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
