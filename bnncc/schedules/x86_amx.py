"""x86 AMX-INT8 (Sapphire Rapids and later): the int8 GEMM micro-kernel of ``bnncc.qdense`` on tile registers.

AMX multiplies 16×64 u8 by 64×16 s8 tiles into a 16×16 int32 tile (``tdpbusd``, 16 384 MACs): 8× a
``vpdpbusd`` zmm per instruction and, on this class of CPU, about 4–8× the VNNI rate. The kernel keeps a 32×32
output block in four accumulator tiles (tmm0–3), loads two A tiles (tmm4–5) and two B tiles (tmm6–7) per
64-deep step: the 2×2 register tile that the eight tile registers allow.

Tiles are named by immediates, so the kernel is written out as one TIR function (not a tensorized block: an
intrinsic cannot keep an accumulator tile live across the reduction loop). Its layout facts:

- B is ``bnncc.qdense``'s packed weight [N/16, K/4, 16, 4] (the VNNI layout): one B tile is 16 consecutive
  k-quads of one 16-column block, 64-byte rows, stride 64. Padding columns and depths hold zeros.
- A rows are read in place with stride K. A tile row reads 64 bytes from ``k0``; past K it reads the next row,
  whose bytes meet B's zero padding (exact). The last 32-row block (a partial block, or the block holding the
  buffer's last row when K is not a multiple of 64) is first copied into a zero-padded scratch so no load
  leaves the buffer.
- Linux grants AMX state per process on request (``arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)``); the
  kernel asks on entry (idempotent, one syscall), so a library runs in any host process without set-up. The
  tile configuration is per thread: each parallel task loads it.
"""

from __future__ import annotations

import tvm
from tvm.script import tirx as T

from ..targets import AMX_PERMISSION_SYSCALL

MB = 32  # output rows per block (two A tiles)
NB = 32  # output columns per block (two B tiles)
KB = 64  # depth per tile step


def _ceil(a: int, b: int) -> int:
    return -(-a // b) * b


def request_tile_permission():
    """The TIR call asking Linux for this process's AMX tile state (idempotent, one syscall)."""
    return T.evaluate(T.call_extern("int64", "syscall", *(T.int64(v) for v in AMX_PERMISSION_SYSCALL)))


def _tile(name: str, *args):
    return T.evaluate(T.call_llvm_intrin("void", f"llvm.x86.{name}", *args))


L2_WEIGHT_BYTES = 1 << 19  # weight columns kept in L2 while every row block passes over them


def qdense_amx(m: int, n: int, k: int, parallel: bool = True, group_bytes: int = L2_WEIGHT_BYTES
               ) -> tvm.tirx.PrimFunc:
    """out[m, n] = Σ_k x[m, k]·w[k, n] + offset[n] (int32) with x u8 [M, K], w packed s8 [Np/16, Kp/4, 16, 4].

    Columns are taken in groups of ``group_bytes`` of weights (L2-resident); within a group every 32-row block
    of x passes over the group's 32-column blocks."""
    kp, np_ = _ceil(k, KB), _ceil(n, NB)
    group = max(1, min(np_ // NB, group_bytes // (NB * kp)))  # column blocks per group
    groups = -(-(np_ // NB) // group)
    kq = kp // 4
    blocks_m = -(-m // MB)
    direct = m // MB if (k % KB == 0 or m % MB) else m // MB - 1  # blocks whose tile loads stay inside x
    u8, i64 = T.uint8, T.int64

    @T.macro
    def block(src, row0, stride, w, acc, no):
        for t in T.unroll(4):
            _tile("tilezero", u8(t))
        for kb in range(kp // KB):
            _tile("tileloadd64", u8(4), T.address_of(src[row0, kb * KB]), i64(stride))
            _tile("tileloadd64", u8(5), T.address_of(src[row0 + 16, kb * KB]), i64(stride))
            _tile("tileloadd64", u8(6), T.address_of(w[2 * no, kb * 16, 0, 0]), i64(64))
            _tile("tileloadd64", u8(7), T.address_of(w[2 * no + 1, kb * 16, 0, 0]), i64(64))
            _tile("tdpbusd", u8(0), u8(4), u8(6))
            _tile("tdpbusd", u8(1), u8(4), u8(7))
            _tile("tdpbusd", u8(2), u8(5), u8(6))
            _tile("tdpbusd", u8(3), u8(5), u8(7))
        _tile("tilestored64", u8(0), T.address_of(acc[0, 0]), i64(NB * 4))
        _tile("tilestored64", u8(1), T.address_of(acc[0, 16]), i64(NB * 4))
        _tile("tilestored64", u8(2), T.address_of(acc[16, 0]), i64(NB * 4))
        _tile("tilestored64", u8(3), T.address_of(acc[16, 16]), i64(NB * 4))

    @T.macro
    def epilogue(acc, offset, out, mo, no):
        for i in range(MB):
            if mo * MB + i < m:
                if no * NB + NB <= n:
                    for j in T.vectorized(NB):
                        out[mo * MB + i, no * NB + j] = acc[i, j] + offset[no * NB + j]
                else:
                    for j in range(NB):
                        if no * NB + j < n:
                            out[mo * MB + i, no * NB + j] = acc[i, j] + offset[no * NB + j]

    @T.prim_func
    def func(x: T.Buffer((m, k), "uint8"), w: T.Buffer((np_ // 16, kq, 16, 4), "int8"),
             offset: T.Buffer((np_,), "int32"), out: T.Buffer((m, n), "int32")):
        T.func_attr({"tir.noalias": True, "bnncc.kernel": "qdense_amx"})
        request_tile_permission()
        for g in range(groups):
            for mo in T.parallel(blocks_m) if parallel else T.serial(blocks_m):
                cfg = T.alloc_buffer((64,), "uint8", align=64)
                acc = T.alloc_buffer((MB, NB), "int32", align=64)
                for i in range(64):
                    cfg[i] = u8(0)
                cfg[0] = u8(1)  # palette 1
                for t in range(8):  # every tile: 16 rows of 64 bytes
                    cfg[16 + 2 * t] = u8(64)
                    cfg[48 + t] = u8(16)
                _tile("ldtilecfg", T.address_of(cfg[0]))
                if mo < direct:
                    for no in range(g * group, T.min(g * group + group, np_ // NB)):
                        block(x, mo * MB, k, w, acc, no)
                        epilogue(acc, offset, out, mo, no)
                else:
                    tail = T.alloc_buffer((MB, kp), "uint8", align=64)
                    for i, kk in T.grid(MB, kp):
                        tail[i, kk] = T.if_then_else(mo * MB + i < m and kk < k, x[T.min(mo * MB + i, m - 1),
                                                                                   T.min(kk, k - 1)], u8(0))
                    for no in range(g * group, T.min(g * group + group, np_ // NB)):
                        block(tail, 0, kp, w, acc, no)
                        epilogue(acc, offset, out, mo, no)
                _tile("tilerelease")

    return func


def _qdense_shape(func: tvm.tirx.PrimFunc) -> tuple[int, int, int] | None:
    """(M, N, K) if ``func`` is exactly one ``bnncc.qdense`` (not fused with anything else), else None."""
    from tvm import s_tir

    from ..relay_ops.qdense import BLOCK, OUTPUT_BLOCK, PAD_BLOCK

    if len(func.params) != 4:
        return None
    try:
        sch = s_tir.Schedule(func)
        blocks = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    except Exception:  # not a block-structured function (e.g. already a hand-written kernel)
        return None
    if blocks != [PAD_BLOCK, BLOCK, OUTPUT_BLOCK]:
        return None
    x = sch.get(sch.get_sblock(PAD_BLOCK)).reads[0].source.ty
    out = sch.get(sch.get_sblock(OUTPUT_BLOCK)).writes[0].source.ty
    (m, k), (_, n) = [int(s) for s in x.shape], [int(s) for s in out.shape]
    return m, n, k


def use_amx(mod: tvm.IRModule, parallel: bool = True) -> tvm.IRModule:
    """Every un-fused ``bnncc.qdense`` PrimFunc of ``mod`` replaced by the AMX kernel of the same signature."""
    out = mod.clone()
    for gv, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or (shape := _qdense_shape(func)) is None:
            continue
        kernel = qdense_amx(*shape, parallel=parallel)
        out.update_func(gv, kernel.with_attrs({**{k: func.attrs[k] for k in func.attrs.keys()},
                                               "bnncc.kernel": "qdense_amx"}))
    return out
