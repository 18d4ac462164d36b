"""The tuning databases (bnncc.tune.database): corrupt lines moved aside, nothing a user wrote lost, the rest
loads and compile applies it."""

from __future__ import annotations

from pathlib import Path

import tvm_ffi
from tune_cases import database_with, layer

from bnncc import tune as T
from bnncc.pipeline import build


def test_corrupt_lines_are_moved_aside(tmp_path):
    tasks = [T.extract_tasks(layer(h=h)[0])[0] for h in (4, 6, 8)]
    database_with(tmp_path, [t.mod for t in tasks])
    rec_path, wl_path = tmp_path / T.RECORD_FILE, tmp_path / T.WORKLOAD_FILE
    recs = rec_path.read_text().splitlines()
    # a record truncated mid-line (a killed writer), and a hand edit gone wrong in the workload table
    rec_path.write_text("\n".join([recs[0][: len(recs[0]) // 2], *recs[1:]]) + "\n")
    wls = wl_path.read_text().splitlines()
    wl_path.write_text("\n".join([wls[0], "[\"123\", not json", wls[2]]) + "\n")
    warnings: list[str] = []
    moved = T.sanitize_database(tmp_path, warn=warnings.append)
    assert moved == 3  # the truncated record, the bad workload line, and the record of that workload
    assert any(f"{rec_path}:1:" in w for w in warnings) and any(f"{wl_path}:2:" in w for w in warnings)
    aside = Path(f"{rec_path}.corrupt").read_text()
    assert recs[0][: len(recs[0]) // 2] in aside and recs[1] in aside  # nothing a user wrote is lost
    assert "not json" in Path(f"{wl_path}.corrupt").read_text()
    # the third record survives, renumbered to its workload's new line
    db = T.open_database(tmp_path, warn=warnings.append)
    (rec,) = db.get_all_tuning_records()
    assert tvm_ffi.structural_equal(rec.workload.mod, tasks[2].mod)
    assert len(warnings) == 3  # clean after the first pass
    # and compile applies it (the record is the default trace: same code, but marked tuned)
    exe = build(layer(h=8)[0], "host", tuning_log=tmp_path)
    assert exe.stats["tuned_ops"] == 1
