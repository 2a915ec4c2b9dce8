"""The spare unnamed files of a backend (``spare_files``): switch, count, find."""

from __future__ import annotations

import os
import time
from pathlib import Path

from jobpersist._codec.python import spare_files as python_spares


def set_spares(backend: str, policy: python_spares.Policy) -> None:
    """Sets when the backend's saves use spare files: "off" (which closes those made),
    "where slow" (the default: where creating a file took long) or "always"."""
    if backend == "native":
        from jobpersist import _native

        _native._set_spares(policy)
    else:
        python_spares.set_policy(policy)


def spare_count(backend: str) -> int:
    if backend == "native":
        from jobpersist import _native

        return _native._spare_count()
    return python_spares.count()


def wait_for_spares(backend: str, count: int = 1, timeout: float = 5.0) -> None:
    """Waits until the backend holds ``count`` spares (made by its thread)."""
    deadline = time.monotonic() + timeout
    while spare_count(backend) < count:
        assert time.monotonic() < deadline, f"no spare made within {timeout} s"
        time.sleep(0.002)


def wait_for_spare_in(directory: Path, backend: str, timeout: float = 5.0) -> int:
    """Waits until this process holds a spare made in ``directory``, in the backend's pool
    (the thread opens it before it stores it) and the thread is done storing it; its inode."""
    deadline = time.monotonic() + timeout
    while not (found := unnamed_inodes(directory)) or spare_count(backend) < 1:
        assert time.monotonic() < deadline, f"no spare made in {directory} within {timeout} s"
        time.sleep(0.002)
    time.sleep(0.005)  # a save only try-locks the pool: let the thread let go of it
    (inode,) = found
    return inode


def unnamed_inodes(directory: Path) -> set[int]:
    """The inodes of this process's open unnamed files made in ``directory`` (an unnamed file's
    /proc/self/fd link reads ``{directory}/#{inode} (deleted)``)."""
    found = set()
    prefix = f"{os.path.realpath(directory)}/#"
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith(prefix) and link.endswith(" (deleted)"):
            found.add(int(link[len(prefix) : -len(" (deleted)")]))
    return found
