"""The job's environment: the variables the reference reads, decoys it ignores, child processes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import jobpersist

# The variables jobpersist reads, as the reference does.
ENV_KEYS = (
    "AMZN_BRAKET_CHECKPOINT_DIR",
    "AMZN_BRAKET_JOB_NAME",
    "AMZN_BRAKET_JOB_RESULTS_DIR",
)
# Set in every job environment below to prove they are ignored: the reference reads only the
# AMZN_BRAKET_* names, and CI servers set JOB_NAME (Jenkins does, for every build).
DECOY_JOB_NAME = "ci-build-17"
JOB_NAME = "test-job"


def child_env(backend: str | None = None, **extra: str) -> dict[str, str]:
    """An environment for a subprocess that imports the jobpersist this process imported."""
    env = dict(os.environ)
    package_root = str(Path(jobpersist.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.pop("JOBPERSIST_BACKEND", None)
    if backend is not None:
        env["JOBPERSIST_BACKEND"] = backend
    env.setdefault("JOBPERSIST_FSYNC", "0")
    env.update(extra)
    return env


@dataclasses.dataclass
class JobEnv:
    checkpoint_dir: Path
    results_dir: Path
    job_name: str

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint_dir / f"{self.job_name}.json"

    def checkpoint_file(self, suffix: str = "") -> Path:
        name = f"{self.job_name}_{suffix}.json" if suffix else f"{self.job_name}.json"
        return self.checkpoint_dir / name

    @property
    def results_path(self) -> Path:
        return self.results_dir / "results.json"


def _set_environ(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """Sets (or with None, removes) environment variables, restoring them after."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(saved)


def job_variables(checkpoints: Path, results: Path, job_name: str, decoys: Path) -> dict[str, str]:
    """A job's environment, spelled out here rather than taken from jobpersist (the tests'
    own oracle): the AMZN_BRAKET_* names the reference reads, and the short names it ignores
    pointing at decoys (``decoys``: a directory that must stay unused)."""
    return {
        "AMZN_BRAKET_CHECKPOINT_DIR": str(checkpoints),
        "AMZN_BRAKET_JOB_NAME": job_name,
        "AMZN_BRAKET_JOB_RESULTS_DIR": str(results),
        "CHECKPOINT_DIR": str(decoys),
        "JOB_NAME": DECOY_JOB_NAME,
    }
