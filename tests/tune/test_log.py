"""The compile side of tuning (bnncc.tune.log): where the logs live, a log of another target refused, and
``bnncc compile`` applying the log of its target by itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from tune_cases import database_with, layer

from bnncc import tune as T

REPO = Path(__file__).resolve().parents[2]


def test_logs_live_in_the_source_tree(monkeypatch):
    monkeypatch.delenv("BNNCC_TUNING_LOGS", raising=False)
    assert T.logs_root() == REPO / "tuning_logs"
    assert T.default_log_dir("host") == REPO / "tuning_logs" / T.log_name("host")


def test_log_of_another_target_is_refused(tmp_path):
    (task,) = T.extract_tasks(layer()[0])
    database_with(tmp_path / "log", [task.mod])
    with pytest.raises(T.TuningError, match="was tuned for llvm mcpu="):
        T.TuningLog.resolve(tmp_path / "log", "x86")
    with pytest.raises(T.TuningError, match="not a tuning log"):
        T.TuningLog.resolve(tmp_path, "host")
    assert T.TuningLog.resolve(tmp_path / "log", "host").path == tmp_path / "log"


def test_compile_cli_applies_the_matching_log(tmp_path, monkeypatch, capsys):
    """``bnncc compile`` finds tuning_logs/<target>/ by itself and says how many ops it tuned; --no-tuning and
    --tuning-log override it; a log of another target is refused with a clear error."""
    from bnncc import from_keras, models
    from bnncc.cli import main

    model = models.build("quicknet_small", input_shape=(32, 32, 3))
    tasks = T.extract_tasks(from_keras(model), "host", float_tasks=0)
    root = tmp_path / "logs"
    log = root / T.log_name("host")
    database_with(log, [t.mod for t in tasks])  # bnncc's default traces as the "tuned" records: cheap
    monkeypatch.setenv("BNNCC_TUNING_LOGS", str(root))
    monkeypatch.chdir(tmp_path)
    calls = sum(t.calls for t in tasks)

    assert main(["compile", "quicknet_small", "--input-size", "32", "-o", "a.so"]) == 0
    err = capsys.readouterr().err
    assert f"tuning: {calls} of " in err and str(log) in err
    assert main(["compile", "quicknet_small", "--input-size", "32", "-o", "b.so", "--no-tuning"]) == 0
    assert "tuning: off" in capsys.readouterr().err
    assert main(["compile", "quicknet_small", "--input-size", "32", "-o", "c.so", "--target", "x86",
                 "--tuning-log", str(log)]) == 2
    assert "was tuned for llvm mcpu=" in capsys.readouterr().err
