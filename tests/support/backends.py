"""The two backends: which can run, and the rule that a native leg never silently falls back."""

from __future__ import annotations

import importlib
import os

import pytest

BACKENDS = ("native", "python")


def python_only_run() -> bool:
    """True when the run explicitly asked for the pure-Python backend only."""
    return os.environ.get("JOBPERSIST_BACKEND", "").strip().lower() == "python"


def native_available() -> bool:
    try:
        importlib.import_module("jobpersist._native")
    except ImportError:
        return False
    return True


def require_backend(name: str) -> None:
    """Skips the native leg on an explicit pure-Python run (JOBPERSIST_BACKEND=python);
    otherwise fails it when the compiled module cannot be imported."""
    if name != "native":
        return
    if python_only_run():
        pytest.skip("JOBPERSIST_BACKEND=python: the native leg is skipped")
    if not native_available():
        pytest.fail(
            "the compiled module jobpersist._native cannot be imported; set "
            "JOBPERSIST_BACKEND=python to run the pure-Python backend only",
            pytrace=False,
        )


def pennylane_available() -> bool:
    try:
        importlib.import_module("pennylane")
    except ImportError:
        return False
    return True
