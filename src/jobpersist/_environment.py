"""Where persisted job data lives: the container's environment variables and the file paths
derived from them, with the checks that keep user-supplied names inside their directory.

Only the ``AMZN_BRAKET_*`` variables count, as in amazon-braket-sdk (whose docstrings say
``JOB_NAME`` and ``CHECKPOINT_DIR`` but whose code reads only these): CI servers set
``JOB_NAME`` (Jenkins, for every build), and a script run there must write the files the
reference writes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

JOB_NAME = "AMZN_BRAKET_JOB_NAME"
CHECKPOINT_DIR = "AMZN_BRAKET_CHECKPOINT_DIR"
RESULTS_DIR = "AMZN_BRAKET_JOB_RESULTS_DIR"
# Names the reference ignores (its docstrings mention them): a job environment clears them.
IGNORED = ("CHECKPOINT_DIR", "JOB_NAME")


def job_variables(job_name: str, checkpoint_dir: str, results_dir: str) -> dict[str, str]:
    """The variables a Braket job container sets for these folders: what this module reads.
    (Also loaded by file path from ``tools/check_wheels.py``: stdlib imports only.)"""
    return {JOB_NAME: job_name, CHECKPOINT_DIR: checkpoint_dir, RESULTS_DIR: results_dir}


@contextlib.contextmanager
def job_environment(job_name: str, checkpoint_dir: str, results_dir: str) -> Iterator[None]:
    """This process's environment as a job's (``job_variables``, the ignored names unset)
    for the duration of the block, then as it was. For the CLI's own runs, not the library's:
    the environment is process-wide."""
    values: dict[str, str | None] = {name: None for name in IGNORED}
    values.update(job_variables(job_name, checkpoint_dir, results_dir))
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            _set(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set(name, value)


def _set(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


_ENVIRON_TYPE = type(os.environ)
# os.environ's dict holds bytes on POSIX (str elsewhere, upper-cased on Windows).
_BYTES_KEYS = os.supports_bytes_environ
# Names as os.environ keeps them, encoded once each.
_KEYS: dict[str, Any] = {}


def variable(name: str) -> str | None:
    """``os.environ.get(name)``, read as it reads it, but from the dict of bytes CPython's
    ``os.environ`` keeps on POSIX: every save reads two to four variables, and
    ``os.environ.get`` of an unset one raises and catches two exceptions (0.7 us alone, about
    2 us within a save; this, 0.1 us). Elsewhere, or if ``os.environ`` was replaced by
    another mapping, ``os.environ.get`` itself."""
    environ: Any = os.environ
    data = getattr(environ, "_data", None)
    if type(environ) is not _ENVIRON_TYPE or type(data) is not dict or not _BYTES_KEYS:
        got: str | None = environ.get(name)
        return got
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = environ.encodekey(name)
    value = data.get(key)
    if value is None:
        return None
    decoded: str = environ.decodevalue(value)
    return decoded


def get_job_name() -> str:
    """The current job's name: ``AMZN_BRAKET_JOB_NAME``, else ``""``."""
    return variable(JOB_NAME) or ""


def get_checkpoint_dir() -> str:
    """The checkpoint directory: ``AMZN_BRAKET_CHECKPOINT_DIR``, else ``.``.

    An empty value means ``.`` too: the reference would write ``/{job_name}.json``, at the
    file system's root.
    """
    return variable(CHECKPOINT_DIR) or "."


def get_results_dir() -> str:
    """The results directory: ``AMZN_BRAKET_JOB_RESULTS_DIR``, else ``.`` (also when empty,
    which the reference reads as the working directory as well)."""
    return variable(RESULTS_DIR) or "."


_SEPARATORS = (os.sep, os.altsep) if os.altsep else (os.sep,)


def check_name(what: str, name: str) -> None:
    """Refuses a name that could address a file outside its directory.

    Raises:
        ValueError: If ``name`` holds NUL, a path separator, or is ``..``.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if "\0" in name:
        raise ValueError(f"{what} {name!r} must not contain a NUL character.")
    for separator in _SEPARATORS:
        if separator in name:
            raise ValueError(f"{what} {name!r} must not contain a path separator.")
    if name == "..":
        raise ValueError(f"{what} {name!r} must not be '..'.")


def checkpoint_path(job_name: str, checkpoint_file_suffix: str) -> str:
    """The checkpoint file for a job, as the reference names it, after checking both names."""
    check_name("job_name", job_name)
    check_name("checkpoint_file_suffix", checkpoint_file_suffix)
    directory = get_checkpoint_dir()
    if checkpoint_file_suffix:
        return f"{directory}/{job_name}_{checkpoint_file_suffix}.json"
    return f"{directory}/{job_name}.json"


def results_path() -> str:
    """The job results file."""
    return os.path.join(get_results_dir(), "results.json")
