"""The malformed inputs of the sweep (tests/test_malformed_inputs.py): for each format bnncc reads, the ways a
file can be broken (truncated at many offsets, flipped bits, zeros, random bytes, wrong kind, a directory) and
the ways a model or argument can be unusable. Each case is made from the good files of tests/model_files.py.
"""

from __future__ import annotations

import io
import shutil
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from model_files import TINY_SHAPE

Make = Callable[[Path, Path], None]  # (model files directory, the case's directory) → writes the case's files


@dataclass(frozen=True)
class Case:
    id: str
    make: Make
    argv: list[str]
    expect: str | None = ""  # a phrase of the error line; None: a clean error or success are both acceptable
    outputs: list[str] = field(default_factory=list)  # files the user already has: must be left as they were


def _bytes(name: str, data: Callable[[bytes], bytes], src: str) -> Make:
    def make(models: Path, case: Path) -> None:
        (case / name).write_bytes(data((models / src).read_bytes()))
    return make


def _copy(src: str, name: str | None = None) -> Make:
    def make(models: Path, case: Path) -> None:
        s, d = models / src, case / (name or src)
        (shutil.copytree if s.is_dir() else shutil.copy)(s, d)
    return make


def _all(*makes: Make) -> Make:
    def make(models: Path, case: Path) -> None:
        for m in makes:
            m(models, case)
    return make


def _npy(name: str, array: np.ndarray | None = None, raw: bytes | None = None) -> Make:
    def make(models: Path, case: Path) -> None:
        if raw is not None:
            (case / name).write_bytes(raw)
        else:
            np.save(case / name, array, allow_pickle=array.dtype == object)
    return make


def _truncated(n: int) -> Callable[[bytes], bytes]:
    return lambda d: d[:n] if n >= 0 else d[:len(d) + n]


def _fraction(f: float) -> Callable[[bytes], bytes]:
    return lambda d: d[:int(len(d) * f)]


def _flipped(at: float | int, mask: int = 0x01) -> Callable[[bytes], bytes]:
    def flip(d: bytes) -> bytes:
        b = bytearray(d)
        i = int(len(d) * at) if isinstance(at, float) else at
        b[i] ^= mask
        return bytes(b)
    return flip


def _patched(offset: int, fmt: str, value: int, rechecksum: bool = True) -> Callable[[bytes], bytes]:
    """An ELF header field set to ``value``, with the checksum trailer rewritten to match (so the structural
    check, not the checksum, has to catch it)."""
    def patch(d: bytes) -> bytes:
        import hashlib

        from bnncc.elfcheck import CHECKSUM_MAGIC, TRAILER_BYTES

        b = bytearray(d[:-TRAILER_BYTES])
        struct.pack_into(fmt, b, offset, value)
        return bytes(b) + (CHECKSUM_MAGIC + hashlib.sha256(b).digest() if rechecksum else b"")
    return patch


def _keras_zip(config: bytes | None) -> Make:
    def make(models: Path, case: Path) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("metadata.json", "{}")
            if config is not None:
                z.writestr("config.json", config)
        (case / "model.keras").write_bytes(buf.getvalue())
    return make


X = "x.npy"
GOOD_INPUT = _npy(X, np.zeros(TINY_SHAPE, np.float32))
RUN_OUT = "out.npy"
COMPILE_OUT = "out.so"


def _run(lib: str = "lib.so", *extra: str) -> list[str]:
    return ["run", lib, "-i", X, "-o", RUN_OUT, *extra]


def library_cases() -> list[Case]:
    cases = []
    truncations = [0, 1, 4, 15, 16, 52, 63, 64, 200, 1000, 4096, -4096, -1000, -64, -49, -47, -40, -16, -1]
    for n in truncations:
        cases.append(Case(f"so-truncated-{n}", _all(_bytes("lib.so", _truncated(n), "tiny.so"), GOOD_INPUT),
                          _run(), "lib.so", [RUN_OUT]))
    for f in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99):
        cases.append(Case(f"so-truncated-{f:.0%}", _all(_bytes("lib.so", _fraction(f), "tiny.so"), GOOD_INPUT),
                          _run(), "lib.so: truncated", [RUN_OUT]))
    fields = {  # (offset, struct format, value) of the 64-bit little-endian header
        "magic": (0, "<I", 0x464C457F ^ 0x100), "class": (4, "<B", 3), "byte-order": (5, "<B", 0),
        "type-exec": (16, "<H", 2), "machine-unknown": (18, "<H", 0xBEEF), "phoff-huge": (32, "<Q", 2**40),
        "shoff-huge": (40, "<Q", 2**40), "ehsize": (52, "<H", 0), "phentsize": (54, "<H", 1),
        "phnum-huge": (56, "<H", 0xFFFF), "phnum-0": (56, "<H", 0), "shentsize": (58, "<H", 1),
        "shnum-huge": (60, "<H", 0xFFFF), "shstrndx": (62, "<H", 0xFFFF),
        "segment0-filesz-huge": (64 + 32, "<Q", 2**40), "segment0-offset-huge": (64 + 8, "<Q", 2**40),
    }
    for name, (offset, fmt, value) in fields.items():
        cases.append(Case(f"so-header-{name}", _all(_bytes("lib.so", _patched(offset, fmt, value), "tiny.so"),
                                                    GOOD_INPUT), _run(), "lib.so", [RUN_OUT]))
    cases.append(Case("so-aarch64", _all(_bytes("lib.so", _patched(18, "<H", 183), "tiny.so"), GOOD_INPUT),
                      _run(), "built for aarch64", [RUN_OUT]))
    for at in (0.05, 0.3, 0.5, 0.7, 0.95):
        cases.append(Case(f"so-bitflip-{at:.0%}", _all(_bytes("lib.so", _flipped(at), "tiny.so"), GOOD_INPUT),
                          _run(), "checksum does not match", [RUN_OUT]))
    cases += [
        Case("so-zeros", _all(_bytes("lib.so", lambda d: bytes(len(d)), "tiny.so"), GOOD_INPUT), _run(),
             "lib.so: not an ELF shared library", [RUN_OUT]),
        Case("so-random", _all(_bytes("lib.so", lambda d: np.random.default_rng(3).bytes(len(d)), "tiny.so"),
                               GOOD_INPUT), _run(), "lib.so: not an ELF", [RUN_OUT]),
        Case("so-text", _all(_npy("lib.so", raw=b"#!/bin/sh\necho hi\n"), GOOD_INPUT), _run(), "not an ELF"),
        Case("so-directory", lambda m, c: ((c / "lib.so").mkdir(), GOOD_INPUT(m, c)), _run(), "is a directory"),
        Case("so-is-an-h5", _all(_copy("tiny.h5", "lib.so"), GOOD_INPUT), _run(), "not an ELF"),
        Case("so-is-the-npy", GOOD_INPUT, ["run", X, "-i", X], "x.npy: not an ELF"),
        Case("so-missing", GOOD_INPUT, _run("nothere.so"), "nothere.so: no such compiled model"),
        Case("so-without-checksum-runs", _all(_bytes("lib.so", _truncated(-48), "tiny.so"), GOOD_INPUT),
             ["run", "lib.so", "-i", X], None),  # an older bnncc's library: structure checked, no trailer
    ]
    return cases


def input_cases() -> list[Case]:
    good = io.BytesIO()
    np.save(good, np.zeros(TINY_SHAPE, np.float32))
    data = good.getvalue()
    cases = []
    for n in (0, 5, 10, 60, 127, 128, 129, len(data) - 1):
        cases.append(Case(f"npy-truncated-{n}", _all(_copy("tiny.so", "lib.so"), _npy(X, raw=data[:n])), _run(),
                          "x.npy", [RUN_OUT]))
    header_edits = {
        "magic": lambda d: b"\x93NUMPX" + d[6:],
        "version-9": lambda d: d[:6] + b"\x09" + d[7:],
        "header-len-huge": lambda d: d[:8] + b"\xff\xff" + d[10:],
        "shape-huge": lambda d: d.replace(b"(1, 8, 8, 8)", b"(10**9, 8)  ", 1),
        "descr-string": lambda d: d.replace(b"'<f4'", b"'<U1'", 1),
        "header-garbage": lambda d: d[:10] + b"x" * 100 + d[110:],
    }
    for name, edit in header_edits.items():
        cases.append(Case(f"npy-{name}", _all(_copy("tiny.so", "lib.so"), _npy(X, raw=edit(data))), _run(),
                          "x.npy", [RUN_OUT]))
    nan = np.zeros(TINY_SHAPE, np.float32)
    nan[0, 0, 0, 0] = np.nan
    inf = np.full(TINY_SHAPE, np.inf, np.float32)
    arrays = {
        "nan": (nan, "NaN or infinite"), "inf": (inf, "NaN or infinite"),
        "object-pickle": (np.array([{"a": 1}], dtype=object), "x.npy: not a .npy array file"),
        "strings": (np.array(["a", "b"]), "x.npy: holds <U1 values"),
        "complex": (np.zeros(TINY_SHAPE, np.complex64), "holds complex64 values"),
        "wrong-shape": (np.zeros((1, 4, 4, 8), np.float32), "expects shape (1, 8, 8, 8) float32"),
        "wrong-rank": (np.zeros((8, 8, 8), np.float32), "expects shape"),
        "int32": (np.zeros(TINY_SHAPE, np.int32), "input 0"),
        "empty": (np.zeros((0, 8, 8, 8), np.float32), "expects shape"),
        "scalar": (np.float32(1.0) * np.ones(()), "expects shape"),
    }
    for name, (a, phrase) in arrays.items():
        cases.append(Case(f"npy-{name}", _all(_copy("tiny.so", "lib.so"), _npy(X, np.asarray(a))), _run(),
                          phrase, [RUN_OUT]))
    cases += [
        Case("npy-missing", _copy("tiny.so", "lib.so"), _run(), "x.npy: no such input file", [RUN_OUT]),
        Case("npy-directory", lambda m, c: (_copy("tiny.so", "lib.so")(m, c), (c / X).mkdir()), _run(),
             "x.npy: is a directory", [RUN_OUT]),
        Case("npy-is-a-library", _all(_copy("tiny.so", "lib.so"), _copy("tiny.so", X)), _run(), "x.npy: not a .npy",
             [RUN_OUT]),
        Case("npy-npz", _all(_copy("tiny.so", "lib.so"),
                             lambda m, c: np.savez(c / "a.npz", x=np.zeros(TINY_SHAPE, np.float32))),
             ["run", "lib.so", "-i", "a.npz", "-o", RUN_OUT], "a.npz: a .npz archive", [RUN_OUT]),
        Case("npy-two-inputs-for-one", _all(_copy("tiny.so", "lib.so"), GOOD_INPUT),
             ["run", "lib.so", "-i", X, "-i", X, "-o", RUN_OUT], "2 input(s)", [RUN_OUT]),
    ]
    return cases


def argument_cases() -> list[Case]:
    lib = _all(_copy("tiny.so", "lib.so"), GOOD_INPUT)
    model = _copy("tiny.h5", "model.h5")
    cases = [(f"threads-{t}", lib, _run("lib.so", "--threads", t), "--threads") for t in
             ("0", "-1", "100000", "abc", "1e3", "")]
    cases += [
        ("bench-threads-huge", lib, ["bench", "lib.so", "--threads", "100000"], "--threads"),
        ("bench-repeats-0", lib, ["bench", "lib.so", "--repeats", "0"], "--repeats"),
        ("bench-input-shape-text", lib, ["bench", "lib.so", "--input-shape", "1,x"], "--input-shape must be integers"),
        ("bench-input-shape-zero", lib, ["bench", "lib.so", "--input-shape", "0,8,8,8"], "--input-shape must be"),
        ("compile-batch-0", model, ["compile", "model.h5", "-o", COMPILE_OUT, "--batch", "0"], "--batch"),
        ("compile-input-size-0", model, ["compile", "quicknet", "-o", COMPILE_OUT, "--input-size", "0"],
         "--input-size"),
        ("compile-unknown-target", model, ["compile", "model.h5", "-o", COMPILE_OUT, "--target", "z80"], "z80"),
        ("compile-output-is-the-model", model, ["compile", "model.h5", "-o", "model.h5"], "is also an input"),
        ("compile-output-is-a-directory", lambda m, c: (model(m, c), (c / "d").mkdir()),
         ["compile", "model.h5", "-o", "d"], "d: is a directory"),
        ("compile-output-missing-dir", model, ["compile", "model.h5", "-o", "no/out.so"], "does not exist"),
        ("compile-missing-tuning-log", model, ["compile", "model.h5", "-o", COMPILE_OUT, "--tuning-log", "nolog"],
         "nolog: no such tuning log"),
        ("compile-tuning-log-without-records", lambda m, c: (model(m, c), (c / "log").mkdir()),
         ["compile", "model.h5", "-o", COMPILE_OUT, "--tuning-log", "log"], "log: not a tuning log"),
        ("run-output-is-the-input", lib, ["run", "lib.so", "-i", X, "-o", X], "is also an input"),
        ("run-output-is-the-library", lib, ["run", "lib.so", "-i", X, "-o", "lib.so"], "is also an input"),
        ("run-output-is-a-directory", lambda m, c: (lib(m, c), (c / "d").mkdir()), ["run", "lib.so", "-i", X, "-o",
                                                                                     "d"], "d: is a directory"),
        ("unknown-command", lib, ["frobnicate"], "invalid choice"),
        ("unknown-flag", lib, ["run", "lib.so", "-i", X, "--fast"], "unrecognized arguments"),
    ]
    return [Case(i, m, argv, phrase, [RUN_OUT, COMPILE_OUT]) for i, m, argv, phrase in cases]


def _compile(name: str = "model.h5") -> list[str]:
    return ["compile", name, "-o", COMPILE_OUT]


def model_cases() -> list[Case]:
    cases = []
    for n in (0, 8, 100, 512, 2048, 0.25, 0.5, 0.75, -100, -1):
        cut = _fraction(n) if isinstance(n, float) else _truncated(n)
        cases.append(Case(f"h5-truncated-{n}", _bytes("model.h5", cut, "tiny.h5"), _compile(), "model.h5",
                          [COMPILE_OUT]))
    for at in (0, 9, 20, 30, 44):
        cases.append(Case(f"h5-bitflip-{at}", _bytes("model.h5", _flipped(at, 0x40), "tiny.h5"), _compile(), None,
                          [COMPILE_OUT]))
    for n in (0, 10, 100, 0.5, -22, -1):
        cut = _fraction(n) if isinstance(n, float) else _truncated(n)
        cases.append(Case(f"keras-truncated-{n}", _bytes("model.keras", cut, "tiny.keras"),
                          _compile("model.keras"), "model.keras", [COMPILE_OUT]))
    cases += [
        Case("keras-config-not-json", _keras_zip(b"{not json"), _compile("model.keras"), "config.json is not JSON"),
        Case("keras-no-config", _keras_zip(None), _compile("model.keras"), "without config.json"),
        Case("h5-zeros", _bytes("model.h5", lambda d: bytes(len(d)), "tiny.h5"), _compile(), "not a Keras model"),
        Case("h5-random", _bytes("model.h5", lambda d: np.random.default_rng(5).bytes(len(d)), "tiny.h5"),
             _compile(), "not a Keras model"),
        Case("h5-empty", _npy("model.h5", raw=b""), _compile(), "an empty file"),
        Case("h5-is-a-library", _copy("tiny.so", "model.h5"), _compile(), "neither HDF5"),
        Case("npy-as-model", GOOD_INPUT, _compile(X), "unknown model file type"),
        Case("h5-weights-only", lambda m, c: _h5_without_config(c / "model.h5"), _compile(), "without a Keras model"),
        Case("directory", lambda m, c: (c / "model.h5").mkdir(), _compile(), "not a SavedModel"),
        Case("savedmodel-garbage-metadata", lambda m, c: _savedmodel(c, b"\xff\xff\xff"), _compile("sm"),
             "keras_metadata.pb"),
        Case("h5-named-keras", _copy("tiny.h5", "model.keras"), _compile("model.keras"), None),
    ]
    for name, phrase in [("lambda.h5", "Lambda layers hold Python code"), ("lambda.keras", "Lambda layers"),
                         ("nested_lambda.h5", "layer 'evil'"), ("lambda_savedmodel", "layer 'evil'"),
                         ("nan_bn.h5", "layer 'bn'"), ("negative_variance.h5", "moving_variance + epsilon"),
                         ("nan_kernel.h5", "layer 'bconv'"), ("inf_bias.h5", "layer 'head'"),
                         ("dynamic.h5", "undefined dimension"), ("huge.h5", "more than 2147483647 elements"),
                         ("zero_channels.h5", "every dimension must be at least 1"),
                         ("upsampling.h5", "layer 'bad_layer': UpSampling2D"), ("lstm.h5", "LSTM")]:
        cases.append(Case(f"model-{name}", _copy(name), _compile(name), phrase, [COMPILE_OUT]))
    cases.append(Case("bench-input-shape-mismatch", _all(_copy("tiny.so", "lib.so"), GOOD_INPUT),
                      ["bench", "lib.so", "--input-shape", "1,8"], "expects shape"))
    return cases


def _h5_without_config(path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("w", data=np.zeros(3))


def _savedmodel(case: Path, metadata: bytes) -> None:
    (case / "sm").mkdir()
    (case / "sm" / "saved_model.pb").write_bytes(b"")
    (case / "sm" / "keras_metadata.pb").write_bytes(metadata)


PROTO, WEIGHTS = "net.prototxt", "net.caffemodel"
GOOD_PROTO = _copy("tiny.prototxt", PROTO)


def _pair(stem: str) -> Make:
    return _all(_copy(f"{stem}.prototxt", PROTO), _copy(f"{stem}.caffemodel", WEIGHTS))


def caffe_cases() -> list[Case]:
    """A Caffe net's two files (tests/model_files.py:caffe): each broken, missing, or not fitting the other."""
    def weights(edit: Callable[[bytes], bytes]) -> Make:
        return _all(GOOD_PROTO, _bytes(WEIGHTS, edit, "tiny.caffemodel"))

    def proto(edit: Callable[[bytes], bytes]) -> Make:
        return _all(_bytes(PROTO, edit, "tiny.prototxt"), _copy("tiny.caffemodel", WEIGHTS))

    cases = []
    for n in (0, 1, 7, 64, 500, 0.25, 0.5, 0.9, -9, -1):
        cut = _fraction(n) if isinstance(n, float) else _truncated(n)
        cases.append(Case(f"caffemodel-truncated-{n}", weights(cut), _compile(PROTO), WEIGHTS, [COMPILE_OUT]))
    for n in (0, 30, 0.5, -3):
        cut = _fraction(n) if isinstance(n, float) else _truncated(n)
        cases.append(Case(f"prototxt-truncated-{n}", proto(cut), _compile(PROTO), PROTO, [COMPILE_OUT]))
    cases += [
        Case("caffemodel-zeros", weights(lambda d: bytes(len(d))), _compile(PROTO), WEIGHTS, [COMPILE_OUT]),
        Case("caffemodel-random", weights(lambda d: np.random.default_rng(11).bytes(len(d))), _compile(PROTO),
             WEIGHTS, [COMPILE_OUT]),
        Case("caffemodel-wrong-magic", weights(lambda d: b"\x89HDF\r\n\x1a\n" + d[8:]), _compile(PROTO), WEIGHTS,
             [COMPILE_OUT]),
        Case("caffemodel-is-the-prototxt", _all(GOOD_PROTO, _copy("tiny.prototxt", WEIGHTS)), _compile(PROTO),
             "net.caffemodel: not a Caffe .caffemodel", [COMPILE_OUT]),
        Case("caffemodel-is-an-h5", _all(GOOD_PROTO, _copy("tiny.h5", WEIGHTS)), _compile(PROTO), WEIGHTS,
             [COMPILE_OUT]),
        Case("caffemodel-directory", lambda m, c: (GOOD_PROTO(m, c), (c / WEIGHTS).mkdir()), _compile(PROTO),
             "net.caffemodel: is a directory", [COMPILE_OUT]),
        Case("caffemodel-missing", GOOD_PROTO, _compile(PROTO), "net.caffemodel beside it, which does not exist",
             [COMPILE_OUT]),
        Case("prototxt-missing", _copy("tiny.caffemodel", WEIGHTS), _compile(WEIGHTS),
             "net.prototxt beside it, which does not exist", [COMPILE_OUT]),
        Case("prototxt-syntax-error", proto(lambda d: d.replace(b"}", b"", 1)), _compile(PROTO),
             "not a valid Caffe .prototxt", [COMPILE_OUT]),
        Case("prototxt-binary", proto(lambda d: np.random.default_rng(12).bytes(len(d))), _compile(PROTO),
             "net.prototxt: not a", [COMPILE_OUT]),
        Case("prototxt-is-the-caffemodel", _all(_copy("tiny.caffemodel", PROTO), _copy("tiny.caffemodel", WEIGHTS)),
             _compile(PROTO), "net.prototxt: not a", [COMPILE_OUT]),
        Case("prototxt-misspelt-parameter", proto(lambda d: d.replace(b"kernel_size", b"kernal_size", 1)),
             _compile(PROTO), "unknown parameter", [COMPILE_OUT]),
        Case("caffe-via-the-caffemodel", _pair("caffe_mismatch"), _compile(WEIGHTS), "the layer needs (6, 8, 3, 3)",
             [COMPILE_OUT]),
        Case("caffe-output-is-the-weights", _pair("tiny"), ["compile", PROTO, "-o", WEIGHTS], "is also an input"),
    ]
    for stem, phrase in [("caffe_mismatch", "layer 'conv1': Convolution: blob 0 in net.caffemodel has shape"),
                         ("caffe_missing", "need trained blobs that net.caffemodel does not hold: 'bconv'"),
                         ("caffe_nan", "NaN or infinite"),
                         ("caffe_unsupported", "2 layers cannot be imported: layer 'norm': LRN"),
                         ("caffe_dynamic", "has a dynamic shape (1, 8, -1, 8)"),
                         ("caffe_noshape", "input 'data' has no shape"), ("caffe_v1", "V1 'layers' format")]:
        cases.append(Case(f"model-{stem}", _pair(stem), _compile(PROTO), phrase, [COMPILE_OUT]))
    return cases


def all_cases() -> list[Case]:
    return [*library_cases(), *input_cases(), *argument_cases(), *model_cases(), *caffe_cases()]
