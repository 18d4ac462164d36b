"""How much workspace the kernels allocate, per thread, read off their LLVM IR.

TVM turns a kernel's intermediate buffers larger than a small stack allocation into calls of
``TVMBackendAllocWorkspace(device, id, nbytes, ...)``, freed in reverse order, either in the kernel's body (on
the caller's thread) or inside a parallel task (``__tvm_parallel_lambda*``, on every pool thread). The sizes are
constants in the IR for static shapes. A standalone library reserves, for each kernel call on the caller's
thread, what that kernel (its body and the tasks it launches) holds at once — in the activation arena, alive
during that call only — and for each worker the most one task holds; both counted as if every allocation of a
function were live together (an upper bound). A non-constant size is an
error: the library would have to guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .plan import EmitError, aligned

_DEFINE = re.compile(r"^define [^@]*@(\"[^\"]+\"|[\w.$]+)\(", re.M)
_ALLOC_PTR = re.compile(r"(%[\w.]+) = load ptr, ptr @__TVMBackendAllocWorkspace\b")
_CALL_PTR = re.compile(r"call ptr (%[\w.]+)\(i32 [^,]+, i32 [^,]+, i64 (%?[\w.]+),")
_LAMBDA = re.compile(r"@(__tvm_parallel_lambda[\w.]*)\b")
_CALLEE = re.compile(r"call [^@\n]*@([\w.$]+)\(")


@dataclass(frozen=True)
class Workspace:
    kernel_bytes: dict[str, int]  # entry symbol → what one call holds on the caller's thread
    worker_bytes: int  # each pool thread, any kernel

    @property
    def main_bytes(self) -> int:
        return max(self.kernel_bytes.values(), default=0)


def _functions(ll: str) -> dict[str, str]:
    starts = [(m.group(1).strip('"'), m.start()) for m in _DEFINE.finditer(ll)]
    bodies = {}
    for i, (name, start) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else len(ll)
        bodies[name] = ll[start:end]
    return bodies


def _own_bytes(name: str, body: str) -> int:
    total = 0
    allocators = set(_ALLOC_PTR.findall(body))
    for reg, size in _CALL_PTR.findall(body):
        if reg not in allocators:
            continue
        if size.startswith("%"):
            raise EmitError(f"kernel function {name} allocates a workspace of run-time size; a standalone library "
                            "needs every size at compile time")
        total += aligned(int(size))
    return total


def workspace_of(ll: str) -> Workspace:
    """The per-thread workspace the kernels of one LLVM module (``inspect_source("ll")``) need."""
    bodies = _functions(ll)
    own = {name: _own_bytes(name, body) for name, body in bodies.items()}
    lambdas = {name for name in bodies if name.startswith("__tvm_parallel_lambda")}
    memo: dict[str, int] = {}

    def held(name: str, depth: int = 0) -> int:
        """Bytes a call of ``name`` holds at most on the calling thread: its own, its callees', and one task of
        each parallel loop it launches (the caller runs task 0)."""
        if name in memo:
            return memo[name]
        body = bodies.get(name, "")
        callees = {c for c in _CALLEE.findall(body) if c in bodies and c != name and c not in lambdas}
        tasks = {t for t in _LAMBDA.findall(body) if t in lambdas}
        memo[name] = own.get(name, 0) + sum(held(c, depth + 1) for c in callees if depth < 8) + \
            max((own[t] for t in tasks), default=0)
        return memo[name]

    entry = {n: held(n) for n in bodies if n.startswith("__tvm_ffi_")}
    return Workspace(entry, max((own[t] for t in lambdas), default=0))
