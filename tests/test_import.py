"""``import jobpersist`` stays light: the background writer, the braket patch, the CLI and
the optional dependencies are imported on first use, and the public names still work.

Each check runs in a fresh interpreter (``sys.modules`` of this one is full of them). The
figures against the reference: ``benches/bench_import.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.jobenv import child_env

import jobpersist

# Heavy, or not needed to save and load: none may be imported by `import jobpersist`.
NOT_AT_IMPORT = (
    "numpy",
    "braket",
    "argparse",
    "jobpersist.cli",
    "jobpersist.background",
    "jobpersist.braket_patch",
    "jobpersist.checkpoints",
    "concurrent.futures",
    "threading",
    "logging",
    "asyncio",
    "subprocess",
    "matplotlib",
    "tqdm",
    "rich",
)
PUBLIC = [
    "BACKEND",
    "CheckpointManager",
    "PersistedJobDataFormat",
    "UnsafePickleError",
    "deserialize_values",
    "load_job_checkpoint",
    "load_job_result",
    "patch_braket",
    "save_job_checkpoint",
    "save_job_checkpoint_async",
    "save_job_result",
    "save_job_result_async",
    "serialize_values",
    "wait_for_saves",
]


def run_python(code: str, **env: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_import_is_light(backend_name: str) -> None:
    # Only what jobpersist itself imports counts: orjson, its one dependency, imports `uuid`,
    # which on Python 3.10 imports subprocess and threading.
    code = (
        "import sys, json\n"
        "import orjson\n"
        "before = set(sys.modules)\n"
        "import jobpersist\n"
        f"print(json.dumps([m for m in {NOT_AT_IMPORT!r} if m in set(sys.modules) - before]))\n"
    )
    assert json.loads(run_python(code, JOBPERSIST_BACKEND=backend_name)) == []


def test_public_names_still_import() -> None:
    code = (
        "import sys, json\n"
        "from jobpersist import save_job_checkpoint_async, save_job_result_async, "
        "wait_for_saves, patch_braket, CheckpointManager\n"
        "import jobpersist, jobpersist.background as bg, jobpersist.braket_patch as bp\n"
        "import jobpersist.checkpoints as cp\n"
        "assert CheckpointManager is cp.CheckpointManager\n"
        "assert save_job_checkpoint_async is bg.save_job_checkpoint_async\n"
        "assert save_job_result_async is bg.save_job_result_async\n"
        "assert wait_for_saves is bg.wait_for_saves and patch_braket is bp.patch_braket\n"
        "namespace = {}\n"
        "exec('from jobpersist import *', namespace)\n"
        "print(json.dumps([jobpersist.__all__, sorted(k for k in namespace if k[0] != '_'), "
        "[n for n in jobpersist.__all__ if n not in dir(jobpersist)]]))\n"
    )
    all_, star, missing_from_dir = json.loads(run_python(code))
    assert all_ == PUBLIC
    assert star == sorted(PUBLIC)
    assert missing_from_dir == []


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jobpersist.nope  # noqa: B018


def test_background_save_made_by_a_late_atexit_hook_is_written(tmp_path: Path) -> None:
    # The job's atexit hook is registered after `import jobpersist` but before the first
    # background save imports jobpersist.background (and registers its drain): the save the
    # hook makes at exit must still be waited for, as when the import was eager.
    code = (
        "import atexit, jobpersist\n"
        "def at_exit():\n"
        "    jobpersist.save_job_checkpoint_async({'x': 'y' * (16 << 20)}, 'late')\n"
        "atexit.register(at_exit)\n"
        "jobpersist.save_job_checkpoint_async({'a': 1}, 'early').result()\n"
    )
    run_python(
        code,
        AMZN_BRAKET_CHECKPOINT_DIR=str(tmp_path),
        AMZN_BRAKET_JOB_NAME="job",
        JOBPERSIST_FSYNC="1",
    )
    late = tmp_path / "job_late.json"
    assert late.exists(), sorted(p.name for p in tmp_path.iterdir())
    assert late.stat().st_size > 16 << 20
