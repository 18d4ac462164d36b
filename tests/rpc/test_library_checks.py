"""A library is checked before it goes to a device: a damaged one before any session is requested, one built for
another architecture than the device's before it is uploaded (its ELF e_machine against the device's TVM)."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

from bnncc.elfcheck import TRAILER_BYTES, add_checksum
from bnncc.rpc import RemoteError, run_remote
from bnncc.testing import local_fleet

KEY = "bnncc-arch-test"
X = np.zeros((1, 8, 8, 8), np.float32)  # tests/model_files.py's tiny model


def test_truncated_library_is_refused_before_contacting_the_tracker(model_dir, tmp_path):
    cut = tmp_path / "cut.so"
    cut.write_bytes((model_dir / "tiny.so").read_bytes()[:20000])
    with pytest.raises(RemoteError, match="cut.so: truncated"):
        run_remote(cut, [X], "127.0.0.1:9", KEY, request_timeout=5)  # port 9: nothing listens, never reached


def test_library_for_another_architecture_is_refused_before_upload(model_dir, tmp_path):
    arm = tmp_path / "arm.so"
    data = bytearray((model_dir / "tiny.so").read_bytes()[:-TRAILER_BYTES])
    struct.pack_into("<H", data, 18, 183)  # e_machine: aarch64
    arm.write_bytes(bytes(data))
    add_checksum(arm)
    shutil.copy(model_dir / "tiny.so", tmp_path / "good.so")
    (tmp_path / "logs").mkdir()
    with local_fleet(tmp_path / "logs", KEY, servers=1) as (addr, _servers, _logs):
        with pytest.raises(RemoteError, match=r"arm.so: built for aarch64, but device .* is x86_64: not uploaded"):
            run_remote(arm, [X], addr, KEY, session_timeout=60, request_timeout=30)
        y = run_remote(tmp_path / "good.so", [X], addr, KEY, session_timeout=60, request_timeout=30)
    assert y.shape == (1, 3)
