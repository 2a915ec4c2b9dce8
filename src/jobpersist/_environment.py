"""Where persisted job data lives: the container's environment variables and the file paths
derived from them, with the checks that keep user-supplied names inside their directory.

Only the ``AMZN_BRAKET_*`` variables count, as in amazon-braket-sdk (whose docstrings say
``JOB_NAME`` and ``CHECKPOINT_DIR`` but whose code reads only these): CI servers set
``JOB_NAME`` (Jenkins, for every build), and a script run there must write the files the
reference writes.
"""

from __future__ import annotations

import os


def get_job_name() -> str:
    """The current job's name: ``AMZN_BRAKET_JOB_NAME``, else ``""``."""
    return os.environ.get("AMZN_BRAKET_JOB_NAME", "")


def get_checkpoint_dir() -> str:
    """The checkpoint directory: ``AMZN_BRAKET_CHECKPOINT_DIR``, else ``.``.

    An empty value means ``.`` too: the reference would write ``/{job_name}.json``, at the
    file system's root.
    """
    return os.environ.get("AMZN_BRAKET_CHECKPOINT_DIR") or "."


def get_results_dir() -> str:
    """The results directory: ``AMZN_BRAKET_JOB_RESULTS_DIR``, else ``.`` (also when empty,
    which the reference reads as the working directory as well)."""
    return os.environ.get("AMZN_BRAKET_JOB_RESULTS_DIR") or "."


def check_name(what: str, name: str) -> None:
    """Refuses a name that could address a file outside its directory.

    Raises:
        ValueError: If ``name`` holds NUL, a path separator, or is ``..``.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if "\0" in name:
        raise ValueError(f"{what} {name!r} must not contain a NUL character.")
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    if any(sep in name for sep in separators):
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
