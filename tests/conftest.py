import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from hypothesis import HealthCheck, settings  # noqa: E402

# Compiling a kernel takes ~0.4 s, so property tests have no deadline; CI draws the same cases every run.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """The files of tests/model_files.py (good and bad Keras models, tiny.so), made once per session."""
    from bnncc.testing import shared_dir

    repo = Path(__file__).resolve().parents[1]
    with shared_dir(tmp_path_factory, "bnncc-model-files") as path:
        if not (path / "done").exists():
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH"))
                                                               if p)}
            subprocess.run([sys.executable, str(repo / "tests" / "model_files.py"), str(path)], cwd=path, env=env,
                           check=True, capture_output=True, timeout=600)
            (path / "done").touch()
    return path
