"""jobpersist: a drop-in, Rust-accelerated replacement for ``braket.jobs.data_persistence``.

Same API, same files, atomic and durable writes. ``BACKEND`` tells which codec is in use:
``"native"`` (the compiled ``jobpersist._native``) or ``"python"`` (the pure-Python fallback).
"""

from typing import Any

from jobpersist import _codec
from jobpersist._format import PersistedJobDataFormat
from jobpersist.background import (
    save_job_checkpoint_async,
    save_job_result_async,
    wait_for_saves,
)
from jobpersist.braket_patch import patch_braket
from jobpersist.data_persistence import (
    load_job_checkpoint,
    load_job_result,
    save_job_checkpoint,
    save_job_result,
)
from jobpersist.serialization import deserialize_values, serialize_values

__all__ = [
    "BACKEND",
    "PersistedJobDataFormat",
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

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # BACKEND is read live, so it stays true when tests or benchmarks switch codecs.
    if name == "BACKEND":
        return _codec.BACKEND
    raise AttributeError(f"module 'jobpersist' has no attribute {name!r}")
