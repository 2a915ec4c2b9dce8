"""jobpersist: a drop-in, Rust-accelerated replacement for ``braket.jobs.data_persistence``.

Same API, same files, atomic and durable writes. ``BACKEND`` tells which codec is in use:
``"native"`` (the compiled ``jobpersist._native``) or ``"python"`` (the pure-Python fallback).
"""

import atexit
import importlib
import sys
from typing import TYPE_CHECKING, Any

from jobpersist import _codec
from jobpersist._format.data_format import PersistedJobDataFormat
from jobpersist._pickle.safe import UnsafePickleError
from jobpersist.data_persistence import (
    load_job_checkpoint,
    load_job_result,
    save_job_checkpoint,
    save_job_result,
)
from jobpersist.serialization import deserialize_values, serialize_values

if TYPE_CHECKING:
    from jobpersist.background import (
        save_job_checkpoint_async,
        save_job_result_async,
        wait_for_saves,
    )
    from jobpersist.braket_patch import patch_braket
    from jobpersist.checkpoints import CheckpointManager

    __version__: str

__all__ = [
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


# Imported on first use, to keep `import jobpersist` light: the background writer (threads,
# concurrent.futures), the checkpoint manager and the braket patch are not needed by jobs that
# save synchronously.
_LAZY = {
    "CheckpointManager": "jobpersist.checkpoints",
    "save_job_checkpoint_async": "jobpersist.background",
    "save_job_result_async": "jobpersist.background",
    "wait_for_saves": "jobpersist.background",
    "patch_braket": "jobpersist.braket_patch",
}


def __getattr__(name: str) -> Any:
    # BACKEND is read live, so it stays true when tests or benchmarks switch codecs.
    if name == "BACKEND":
        return _codec.BACKEND
    if name == "__version__":
        globals()[name] = version = _version()
        return version
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jobpersist' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def _version() -> str:
    # The version lives in Cargo.toml ([workspace.package]); both wheels carry it in their
    # metadata. Read on first use: importlib.metadata is not a light import.
    from importlib import metadata

    try:
        return metadata.version("jobpersist")
    except metadata.PackageNotFoundError:  # a source tree put on sys.path, not installed
        return "0+unknown"


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})


def _drain_background_saves() -> None:
    # atexit runs hooks last-registered first. jobpersist.background registers its drain when
    # first used, which may be after an atexit hook of the job's that still saves in the
    # background; this one, registered at import as the drain was before the import became
    # lazy, runs after such hooks and waits for their saves too.
    background = sys.modules.get("jobpersist.background")
    if background is not None:
        background._drain_at_exit()


atexit.register(_drain_background_saves)
