"""C text of a standalone model: its header (the API) and its driver (the kernel calls of :class:`Program`).

The driver is static data plus one function: every DLTensor the program passes is a static descriptor whose
data pointer is a constant address (a slice of the arena or of the weights) — only the inputs' pointers are
set per call — and every kernel call is a static argument array and one call. Nothing is allocated.
"""

from __future__ import annotations

import re

import numpy as np
import tvm

from .plan import Program, Tensor
from .workspace import Workspace

ABI_HEADER = "bnncc_abi.h"


def c_name(model: str) -> str:
    """A C identifier for the model's symbols: ``bnncc_<name>``."""
    ident = re.sub(r"\W", "_", model.lower()).strip("_") or "model"
    return "bnncc_" + ("m" + ident if ident[0].isdigit() else ident)


_C_TYPES = {"float32": "float", "float64": "double", "int8": "int8_t", "uint8": "uint8_t", "int32": "int32_t",
            "uint32": "uint32_t", "int64": "int64_t", "int16": "int16_t", "uint16": "uint16_t"}


def header(prefix: str, p: Program, max_threads: int) -> str:
    up = prefix.upper()
    lines = [f"/* {prefix}: a model compiled by bnncc into plain code: no TVM runtime, no Python, no allocation.",
             " * One inference at a time (the activations live in a static arena). Link with -lpthread -lm. */",
             f"#ifndef {up}_H_", f"#define {up}_H_", "#include <stdint.h>", "#ifdef __cplusplus",
             'extern "C" {', "#endif", ""]
    for kind, tensors in (("INPUT", p.inputs), ("OUTPUT", p.outputs)):
        lines.append(f"#define {up}_NUM_{kind}S {len(tensors)}")
        for i, t in enumerate(tensors):
            lines += [f"#define {up}_{kind}{i}_SHAPE {{{', '.join(map(str, t.shape))}}}",
                      f"#define {up}_{kind}{i}_NDIM {len(t.shape)}",
                      f"#define {up}_{kind}{i}_ELEMS {int(np.prod(t.shape))}",
                      f'#define {up}_{kind}{i}_DTYPE "{t.dtype}"']
    lines += [f"#define {up}_MAX_THREADS {max_threads}", "",
              "/* Run the model: inputs[i] and outputs[i] point at C-contiguous (row-major) arrays of the shapes",
              " * above (inputs on a 64-byte boundary are read in place, others copied first). Returns 0, or -1",
              " * with the reason in bnncc_last_error(). */",
              f"int {prefix}_run_n(const void *const *inputs, void *const *outputs);"]
    if len(p.inputs) == 1 and len(p.outputs) == 1:
        ti, to = _C_TYPES.get(p.inputs[0].dtype, "void"), _C_TYPES.get(p.outputs[0].dtype, "void")
        lines += [f"int {prefix}_run(const {ti} *input, {to} *output);"]
    lines += ["", "/* The runtime, shared by every bnncc model linked into a program. */",
              "/* Threads for the kernels (1..64; 0 = one per online CPU; at most the model's MAX_THREADS are used);",
              " * returns the count, or -1 if n is out of range. */",
              "int bnncc_set_num_threads(int n);", "int bnncc_num_threads(void);",
              "const char *bnncc_last_error(void);", "",
              "/* For programs built around one model (deploy/standalone): the same API under generic names. */",
              "#ifndef BNNCC_NO_MODEL_ALIASES", f"#define bnncc_model_run_n {prefix}_run_n",
              f"#define BNNCC_MODEL_NAME \"{prefix[len('bnncc_'):]}\""]
    if len(p.inputs) == 1 and len(p.outputs) == 1:
        lines += [f"#define bnncc_model_run {prefix}_run", f"#define BNNCC_MODEL_INPUT_ELEMS {up}_INPUT0_ELEMS",
                  f"#define BNNCC_MODEL_INPUT_SHAPE {up}_INPUT0_SHAPE",
                  f"#define BNNCC_MODEL_INPUT_NDIM {up}_INPUT0_NDIM",
                  f"#define BNNCC_MODEL_OUTPUT_ELEMS {up}_OUTPUT0_ELEMS"]
    lines += ["#endif", "#ifdef __cplusplus", "}", "#endif", f"#endif  /* {up}_H_ */", ""]
    return "\n".join(lines)


def _dtype(dtype: str) -> str:
    d = tvm.runtime.DataType(dtype)
    return f"{{{int(d.type_code)}, {int(d.bits)}, {int(d.lanes)}}}"


def _data(prefix: str, t: Tensor) -> str:
    if t.where == "input":
        return "NULL"
    base = f"{prefix}_arena" if t.where == "arena" else f"(uint8_t *){prefix}_weights"
    return f"(void *)({base} + {t.offset})"


def driver(prefix: str, p: Program, symbols: dict[str, str], ws: Workspace, max_threads: int) -> str:
    """The model's C driver; ``symbols``: PrimFunc name → its entry point's C symbol."""
    out = [f"/* {prefix}: the model's kernel calls in order, written by bnncc. */", "#include <stddef.h>",
           "#include <stdint.h>",
           "#include <string.h>", "", f'#include "{ABI_HEADER}"', f'#include "{prefix}.h"', ""]
    for sym in sorted(set(symbols.values())):
        out.append(f"int32_t {sym}(void *, const bnncc_any *, int32_t, bnncc_any *);")
    out += ["", f"extern const uint8_t {prefix}_weights[];  /* {len(p.weights)} bytes (weights.S) */",
            f"static uint8_t {prefix}_arena[{max(p.arena_bytes, 64)}] __attribute__((aligned(64)));",
            f"static uint8_t {prefix}_ws_workers[{max(max_threads - 1, 1)}][{max(ws.worker_bytes, 64)}] "
            "__attribute__((aligned(64)));", ""]
    for t in p.tensors:
        out.append(f"static int64_t shape{t.index}[] = {{{', '.join(map(str, t.shape)) or '1'}}};")
    out += ["", "static bnncc_dl_tensor tensor[] = {"]
    for t in p.tensors:
        out.append(f"  {{{_data(prefix, t)}, {{BNNCC_DL_CPU, 0}}, {len(t.shape)}, {_dtype(t.dtype)}, "
                   f"shape{t.index}, NULL, 0}},  /* {t.where} {t.dtype}{list(t.shape)} */")
    out += ["};", ""]
    for i, call in enumerate(p.calls):
        cells = [f"{{.type_index = BNNCC_ANY_DLTENSOR_PTR, .v_ptr = &tensor[{a.index}]}}" if isinstance(a, Tensor)
                 else f"{{.type_index = BNNCC_ANY_INT, .v_int64 = {a}}}" for a in call.args]
        out.append(f"static const bnncc_any args{i}[] = {{{', '.join(cells)}}};")
    out += ["", f"int {prefix}_run_n(const void *const *inputs, void *const *outputs) {{",
            "  bnncc_any ret;", "  void *data;", "  bnncc_rt_clear_error();"]
    for i, t in enumerate(p.inputs):  # kernels assume 64-byte aligned data (TVM's allocation alignment): an input
        # off a 64-byte boundary is copied to an aligned slice of the arena first (NEON's aligned loads fault)
        out += [f"  data = (uintptr_t)inputs[{i}] % 64 == 0 ? (void *)inputs[{i}] : "
                f"memcpy({prefix}_arena + {p.input_stage[i]}, inputs[{i}], {t.nbytes});"]
        out += [f"  tensor[{v.index}].data = data;" for v in p.tensors if v.where == "input" and v.offset == i]
    workers = f"&{prefix}_ws_workers[0][0], sizeof {prefix}_ws_workers[0], {max_threads}"
    for i, call in enumerate(p.calls):  # each call's workspace: a slice of the arena alive during the call
        offset, size = p.call_workspace[i]
        out += [f"  bnncc_rt_use_workspace({prefix}_arena + {offset}, {size}, {workers});",
                f"  if ({symbols[call.kernel]}(NULL, args{i}, {len(call.args)}, &ret) != 0) "
                f'return bnncc_rt_fail("{prefix}", "{call.kernel}");']
    for i, t in enumerate(p.outputs):
        out.append(f"  memcpy(outputs[{i}], tensor[{t.index}].data, {t.nbytes});")
    out += ["  return 0;", "}", ""]
    if len(p.inputs) == 1 and len(p.outputs) == 1:
        ti, to = _C_TYPES.get(p.inputs[0].dtype, "void"), _C_TYPES.get(p.outputs[0].dtype, "void")
        out += [f"int {prefix}_run(const {ti} *input, {to} *output) {{",
                "  const void *inputs[1] = {input};", "  void *outputs[1] = {output};",
                f"  return {prefix}_run_n(inputs, outputs);", "}", ""]
    return "\n".join(out)


def weights_asm(prefix: str, blob_name: str) -> str:
    """Assembly that places the weight blob in read-only data under ``<prefix>_weights`` (GNU as, any arch)."""
    return "\n".join([f"/* {prefix}: the model's weights at their stored precision, written by bnncc. */",
                      '\t.section .rodata', "\t.balign 64", f"\t.global {prefix}_weights",
                      f"\t.type {prefix}_weights, %object", f"{prefix}_weights:", f'\t.incbin "{blob_name}"',
                      f"\t.size {prefix}_weights, . - {prefix}_weights",
                      '\t.section .note.GNU-stack,"",%progbits', ""])
