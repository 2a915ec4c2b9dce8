"""The choice of codec at import: native by default, JOBPERSIST_BACKEND to force one.

Each case imports jobpersist in a fresh interpreter. With JOBPERSIST_BACKEND unset the
compiled module must be in use: a silent fall back to Python fails the test. On an explicit
pure-Python run (JOBPERSIST_BACKEND=python in this process's environment) the native cases
are skipped.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.backends import python_only_run, require_backend
from support.jobenv import child_env

import jobpersist
from jobpersist import _codec

PRINT_BACKEND = "import jobpersist; print(jobpersist.BACKEND)"

native_only = pytest.mark.skipif(
    python_only_run(), reason="JOBPERSIST_BACKEND=python: the native backend is not required"
)


def run_child(backend: str | None, code: str = PRINT_BACKEND) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(backend),
        capture_output=True,
        text=True,
        timeout=60,
    )


@native_only
def test_default_backend_is_native() -> None:
    proc = run_child(None)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "native", (
        "with JOBPERSIST_BACKEND unset, jobpersist fell back to the Python codec: the "
        "compiled module jobpersist._native is missing or failed to import"
    )


def test_forced_python() -> None:
    proc = run_child("python")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "python"


@native_only
def test_forced_native() -> None:
    proc = run_child("native")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "native"


@pytest.mark.parametrize("value", ["bogus", "rust", "pure-python", "1"])
def test_bogus_backend_is_an_import_error(value: str) -> None:
    proc = run_child(value)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "JOBPERSIST_BACKEND" in proc.stderr


def test_bogus_backend_raises_import_error_in_process() -> None:
    code = (
        "try:\n"
        "    import jobpersist\n"
        "except ImportError as exc:\n"
        "    print('ImportError', exc)\n"
        "else:\n"
        "    print('imported', jobpersist.BACKEND)\n"
    )
    proc = run_child("bogus", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ImportError")


def test_use_switches_backend(backend_name: str) -> None:
    previous = (_codec.BACKEND, _codec.CODEC)
    try:
        _codec.use(backend_name)
        assert jobpersist.BACKEND == backend_name == _codec.BACKEND
    finally:
        _codec.BACKEND, _codec.CODEC = previous


def test_use_refuses_unknown_backend() -> None:
    with pytest.raises(ValueError):
        _codec.use("bogus")


def test_the_backends_share_their_sizes() -> None:
    # Thresholds and buffer sizes both codecs use (line width, flush and reservation sizes,
    # the largest file read whole, the unpickler's peek size, the nesting limit): one value.
    require_backend("native")
    from jobpersist import _native
    from jobpersist._codec.python.codec import LIMITS

    assert _native.LIMITS == LIMITS
