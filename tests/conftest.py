"""Shared fixtures of the jobpersist test suite.

* ``backend``: runs a test once per codec ("native", "python"). The native leg FAILS when the
  compiled ``jobpersist._native`` cannot be imported. An explicit pure-Python run
  (``JOBPERSIST_BACKEND=python``) skips the native leg.
* ``backend_name``: the same two legs, for tests that run the backend in a child process.
* ``job_env``: the job's environment variables pointing at fresh temp directories (and the
  short names the reference ignores, ``CHECKPOINT_DIR`` and ``JOB_NAME``, at decoys).
* ``twin``: runs the same operation through jobpersist and through the reference
  (``braket.jobs.data_persistence``), each in its own directories, and compares the outcome
  and the bytes of every file written.
* ``JOBPERSIST_FSYNC=0`` for every test (fsync itself is tested by overriding it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from support.backends import BACKENDS, pennylane_available, require_backend
from support.jobenv import JOB_NAME, JobEnv, job_variables
from support.reference import Twin

from jobpersist import _codec

# --------------------------------------------------------------------------------------------
# Hypothesis profiles: modest example counts, no deadline, derandomized (deterministic).
# --------------------------------------------------------------------------------------------
_COMMON = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("default", max_examples=80, **_COMMON)
settings.register_profile("ci", max_examples=120, print_blob=True, **_COMMON)
settings.register_profile("quick", max_examples=20, **_COMMON)
# For bug hunting: HYPOTHESIS_PROFILE=thorough (randomized, many examples).
settings.register_profile("thorough", **{**_COMMON, "derandomize": False}, max_examples=1500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: subprocesses, SIGKILL and strace runs, large saves (left out by `make test-quick`)",
    )
    config.addinivalue_line(
        "markers",
        "pennylane: needs PennyLane (real-script cases with pennylane.numpy tensors); "
        "skipped only when pennylane cannot be imported",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if pennylane_available():
        return
    skip = pytest.mark.skip(
        reason="pennylane is not installed (pip install pennylane): the real-script cases "
        "with PennyLane tensors need it"
    )
    for item in items:
        if item.get_closest_marker("pennylane") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Speed: skip fsyncs everywhere (renames stay atomic). Tests of fsync override it."""
    monkeypatch.setenv("JOBPERSIST_FSYNC", "0")


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    """A backend's name, once per backend, for a test that runs it in a child process (the
    codec in this process is left as it is). Skipped or failed as ``require_backend`` says."""
    name: str = request.param
    require_backend(name)
    return name


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Switches jobpersist to one codec for the test; restores the previous one after."""
    name = request.param
    require_backend(name)
    previous = (_codec.BACKEND, _codec.CODEC)
    _codec.use(name)
    try:
        yield name
    finally:
        _codec.BACKEND, _codec.CODEC = previous


@pytest.fixture
def job_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobEnv:
    checkpoint_dir = tmp_path / "checkpoints"
    results_dir = tmp_path / "results"
    checkpoint_dir.mkdir()
    results_dir.mkdir()
    decoys = tmp_path / "not-the-checkpoint-dir"
    for name, value in job_variables(checkpoint_dir, results_dir, JOB_NAME, decoys).items():
        monkeypatch.setenv(name, value)
    return JobEnv(checkpoint_dir, results_dir, JOB_NAME)


@pytest.fixture
def twin(tmp_path: Path) -> Twin:
    return Twin(tmp_path)
