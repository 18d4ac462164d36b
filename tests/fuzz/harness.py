"""What every fuzz target shares: seeds written to a corpus directory, atheris (libFuzzer) started on it, and the
rule that a loader may only fail with a :class:`bnncc.errors.BnnccError` (one clear line for the user); any
other exception, a crash or a hang is a finding.

A target module is a few lines::

    from tests.fuzz.harness import fuzz_main, instrumented

    with instrumented():
        from bnncc import elfcheck          # the code under test, instrumented for coverage

    def one_input(data: bytes) -> None:
        elfcheck.check_elf(data)

    def seeds() -> dict[str, bytes]:
        return {"empty": b""}

    if __name__ == "__main__":
        fuzz_main("library_check", one_input, seeds)

and runs as ``python -m tests.fuzz.library_check -runs=100000`` from the repository root (any libFuzzer flag
works; a directory argument replaces the default corpus ``$TMPDIR/bnncc-fuzz/<name>``, which is kept between
runs). tests/fuzz/test_fuzz_targets.py runs each target for a few seconds in the default suite.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bnncc.errors import BnnccError

TARGETS = ("library_check", "keras_config", "npy_input", "tuning_log", "onnx_model", "tflite_model",
           "caffe_model")


@contextlib.contextmanager
def instrumented(*parsers: str) -> Iterator[None]:
    """Imports in this block are instrumented for coverage: bnncc and the pure-Python ``parsers`` it hands the
    bytes to (e.g. "numpy.lib.format"), when atheris is there; a plain import otherwise, so a target module can
    be imported by a test without atheris."""
    try:
        import atheris
    except ImportError:
        yield
        return
    with atheris.instrument_imports(include=["bnncc", *parsers]):
        yield


def as_file(data: bytes, suffix: str) -> str:
    """``data`` written to this process's scratch file for loaders that take a path (rewritten per input)."""
    path = os.path.join(tempfile.gettempdir(), f"bnncc-fuzz-{os.getpid()}{suffix}")
    with open(path, "wb") as f:
        f.write(data)
    return path


def checked(one_input: Callable[[bytes], object]) -> Callable[[bytes], None]:
    """``one_input`` with the expected failure (BnnccError) swallowed; everything else propagates. With
    ``$BNNCC_FUZZ_LAST`` set, each input is first written there: the one a native crash died on is kept even
    when libFuzzer cannot write it."""
    last = os.environ.get("BNNCC_FUZZ_LAST")

    def run(data: bytes) -> None:
        if last:
            with open(last, "wb") as f:
                f.write(data)
        try:
            one_input(data)
        except BnnccError as e:
            if "\n" in str(e):
                raise AssertionError(f"a multi-line error: {e!r}") from None
    return run


def corpus_dir(name: str, seeds: Callable[[], dict[str, bytes]]) -> Path:
    path = Path(os.environ.get("BNNCC_FUZZ_CORPUS", Path(tempfile.gettempdir()) / "bnncc-fuzz")) / name
    path.mkdir(parents=True, exist_ok=True)
    for seed, data in seeds().items():
        f = path / f"seed-{seed}"
        if not f.exists():
            f.write_bytes(data)
    return path


def fuzz_main(name: str, one_input: Callable[[bytes], object], seeds: Callable[[], dict[str, bytes]],
              argv: list[str] | None = None) -> None:
    import atheris

    argv = list(sys.argv if argv is None else argv)
    if not any(not a.startswith("-") for a in argv[1:]):  # no corpus directory given: the default one, seeded
        argv.append(str(corpus_dir(name, seeds)))
    if not any(a.startswith("-artifact_prefix=") for a in argv):  # crash inputs beside the corpus, not in cwd
        argv.append(f"-artifact_prefix={corpus_dir(name, seeds).parent}/{name}-")
    if not any(a.startswith("-timeout=") for a in argv):
        argv.append("-timeout=20")  # seconds for one input: a slower one is a hang
    atheris.Setup(argv, checked(one_input))
    atheris.Fuzz()
