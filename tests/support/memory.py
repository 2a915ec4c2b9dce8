"""Peak resident memory of an action in a fresh interpreter (Linux /proc)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.backends import require_backend
from support.jobenv import child_env

_PEAK_HARNESS = """
import json, os

def _peak():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

{setup}
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak to the current resident size
with open("/proc/self/statm") as f:
    _base = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
{action}
print(json.dumps({{"extra": _peak() - _base}}))
"""


def peak_extra_memory(backend: str, directory: Path, setup: str, action: str) -> int:
    """How far the peak resident memory of a fresh interpreter on ``backend`` (checkpoints in
    ``directory``) grows during ``action`` (Python source), run after ``setup``. Linux only
    (``/proc/self/clear_refs``): skipped elsewhere, as the native leg of a pure-Python run."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("Linux /proc only")
    require_backend(backend)
    env = child_env(backend, AMZN_BRAKET_CHECKPOINT_DIR=str(directory), AMZN_BRAKET_JOB_NAME="peak")
    script = _PEAK_HARNESS.format(
        setup=textwrap.dedent(setup).strip(), action=textwrap.dedent(action).strip()
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    if env.get("JOBPERSIST_BACKEND") == "native" and "_native" in out.stderr:
        pytest.fail(out.stderr)
    assert out.returncode == 0, out.stderr
    extra: int = json.loads(out.stdout.strip().splitlines()[-1])["extra"]
    return extra
