"""Spare unnamed files: the file a save replaces its target with, created before the save
needs it (the twin of ``rust/core/src/spare_files.rs``).

Creating a file is most of the cost of a small save on some disks (an ``O_TMPFILE`` open took
0.09-0.2 ms on the project's test machine's ext4, the rest of a tiny save under 0.1 ms). After a
save that replaced a file through an unnamed temp, a thread of this module creates the next
unnamed file in the same directory, and the next save there takes it instead of creating its
own. A spare has no name until a save names it, and vanishes with the process. Each directory
keeps at most one, at most ``MAX_SPARES`` directories keep one (the oldest goes first), and a
spare only replaces an existing file, whose mode the save gives it anyway.

Only where creating is slow: a save wants a spare when its own creation took ``SLOW_CREATE_NS``
or more, and the thread keeps a spare only if making it took as long. On tmpfs (5 µs) a spare
would cost more (a thread's wake-up, the GIL changing hands) than it saves.

Forks: a spare is taken only by the process that made it (a child holds copies of its parent's
descriptors: two processes must never write one file). A save only ever try-locks the pool.
"""

from __future__ import annotations

import _thread
import os
import time
from typing import Literal, NamedTuple

#: The most directories that keep a spare (as rust/core's).
MAX_SPARES = 4
#: A file creation this slow (in nanoseconds) makes its directory keep a spare (as rust/core's).
SLOW_CREATE_NS = 40_000

Policy = Literal["off", "where slow", "always"]
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
# When saves take and want spares: "off" (tests of a save creating its own file), "where
# slow" (the default), "always" (tests of the spares).
_policy: Policy = "where slow"


class Spare(NamedTuple):
    """An unnamed file of this process, ready for a save in its directory."""

    directory: tuple[int, int]  # (st_dev, st_ino): a spare made in one is linked there
    mode: int  # its permission bits (0o666 less the umask when it was made)
    fd: int  # the open file, empty


class _Pool:
    """The spares of one process and the thread that makes them."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = _thread.allocate_lock()
        self.ready = _thread.allocate_lock()  # released when a directory wants a spare
        self.ready.acquire()
        self.spares: list[Spare] = []  # oldest first
        self.wanted: list[tuple[tuple[int, int], int]] = []  # (directory, a descriptor of it)
        self.making: tuple[int, int] | None = None  # the directory the thread makes one in
        self.thread = "not started"  # "running", or "failed": no spares in this process

    def own(self) -> None:
        """Forgets what a parent process left (its spares, its thread), if the fork hook did
        not (a fork it did not see): the caller holds ``lock``."""
        if self.pid != os.getpid():
            self.forget()
            self.making = None
            self.pid = os.getpid()
            self.ready = _thread.allocate_lock()
            self.ready.acquire()
            self.thread = "not started"

    def forget(self) -> None:
        """Closes this process's copies of the spares and directories (which frees nothing
        the parent still holds)."""
        for spare in self.spares:
            _close(spare.fd)
        for _, fd in self.wanted:
            _close(fd)
        self.spares, self.wanted = [], []

    def make_spares(self) -> None:
        """The thread: makes a spare for each directory that wants one."""
        while True:
            self.ready.acquire()
            while True:
                with self.lock:
                    if not self.wanted:
                        break
                    directory, fd = self.wanted.pop()
                    self.making = directory
                started = time.perf_counter_ns()
                spare = _make(directory, fd)
                with self.lock:
                    self.making = None
                    if spare is None:
                        continue
                    # A spare made fast is dropped: the directory creates its files fast.
                    unwanted = _policy == "off" or not slow(started)
                    if unwanted or any(s.directory == directory for s in self.spares):
                        _close(spare.fd)
                        continue
                    if len(self.spares) >= MAX_SPARES:
                        _close(self.spares.pop(0).fd)
                    self.spares.append(spare)


_POOL = _Pool()


def _reset_after_fork() -> None:
    global _POOL
    # The parent's lock may have been held by its thread at the fork: a fresh pool (the child
    # runs one thread now, so the old one's lists can be read without it).
    _POOL.forget()
    _POOL = _Pool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _key(dir_fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(dir_fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def set_policy(policy: Policy) -> None:
    """Sets when this process's saves use spares; ``"off"`` also closes the spares made
    (a test hook)."""
    global _policy
    if policy not in ("off", "where slow", "always"):
        raise ValueError('the spare policies are "off", "where slow" and "always"')
    _policy = policy
    if policy == "off":
        with _POOL.lock:
            for spare in _POOL.spares:
                _close(spare.fd)
            _POOL.spares = []


def count() -> int:
    """How many spares this process holds (a test hook)."""
    with _POOL.lock:
        _POOL.own()
        return len(_POOL.spares)


def take(dir_fd: int) -> Spare | None:
    """The spare made in the directory ``dir_fd`` if this process has one (never waits);
    the caller owns its descriptor."""
    pool = _POOL
    if _policy == "off" or not pool.spares or not pool.lock.acquire(False):
        return None  # (not pool.spares: the common case where creating is fast, no fstat)
    try:
        pool.own()
        directory = _key(dir_fd)
        for i, spare in enumerate(pool.spares):
            if spare.directory == directory:
                return pool.spares.pop(i)
        return None
    finally:
        pool.lock.release()


def want(dir_fd: int) -> None:
    """Has a spare made in the directory ``dir_fd`` for the next save there, unless one is
    there or coming (never waits; best effort)."""
    if _policy == "off":
        return
    directory = _key(dir_fd)
    pool = _POOL
    if directory is None or not pool.lock.acquire(False):
        return
    try:
        pool.own()
        known = (
            pool.making == directory
            or any(s.directory == directory for s in pool.spares)
            or any(w[0] == directory for w in pool.wanted)
        )
        if known or pool.thread == "failed":
            return
        try:
            copy = os.dup(dir_fd)
        except OSError:
            return
        pool.wanted.append((directory, copy))
        if pool.thread == "not started":
            try:
                _thread.start_new_thread(pool.make_spares, ())
            except RuntimeError:  # no threads (at interpreter exit, a thread limit)
                for _, fd in pool.wanted:
                    _close(fd)
                pool.wanted.clear()
                pool.thread = "failed"
                return
            pool.thread = "running"
        if pool.ready.locked():
            pool.ready.release()
    finally:
        pool.lock.release()


def slow(started: int) -> bool:
    """Whether a creation that began at ``started`` (``perf_counter_ns``) was slow enough for
    a spare: it took ``SLOW_CREATE_NS`` or more (always, under the ``"always"`` policy)."""
    return _policy == "always" or time.perf_counter_ns() - started >= SLOW_CREATE_NS


def _make(directory: tuple[int, int], dir_fd: int) -> Spare | None:
    try:
        fd = os.open(".", _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        _close(dir_fd)
    try:
        mode = os.fstat(fd).st_mode & 0o7777
    except OSError:
        _close(fd)
        return None
    return Spare(directory, mode, fd)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
