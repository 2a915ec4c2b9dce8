"""Durability modes: what a save has made durable when it returns, and the deferred syncs.

Every save replaces its file atomically (a new file renamed over the old one), whatever the
mode: a killed process leaves the old file or the new one, never a partial one. The modes
differ only in when the data and the rename reach the disk:

* ``full``: the file is fsynced before the rename and its directory after it; the save
  returns once both are done.
* ``deferred`` (the default): the save makes no fsync. A thread of this module fsyncs the
  renamed files and their directories soon after (the saves of the last ``BATCH_DELAY``
  seconds together, each file and directory once). ``flush()`` waits for them;
  ``wait_for_saves()`` and the interpreter's exit call it. On tmpfs and ramfs, where no fsync
  makes a file durable, a save that replaced a file schedules none.
* ``none``: no fsync at all; the kernel writes the data back when it will.

In ``deferred`` and ``none``, the same thread also frees the files the saves replaced: a save
keeps the replaced file open across its rename (so the rename only unlinks it) and hands the
descriptor here, to be closed, which frees the file, off the caller's path. Freeing a small
file is most of the cost of the rename that replaces it (0.12 ms of 0.13 ms on ext4 here).

The mode of a save: the caller's ``durability`` argument where there is one, else
``JOBPERSIST_DURABILITY`` (read at every save), else ``JOBPERSIST_FSYNC`` (``0`` means
``none``, any other value ``full``: the variable older versions read), else ``deferred``.
docs/durability.md says what each mode promises after a power cut.
"""

from __future__ import annotations

import _thread
import atexit
import os
import sys
import time
from typing import TYPE_CHECKING, Literal

from jobpersist._codec.python.atomic_file import close_quietly
from jobpersist._environment import variable

if TYPE_CHECKING:
    import threading

Durability = Literal["full", "deferred", "none"]
FULL: Durability = "full"
DEFERRED: Durability = "deferred"
NONE: Durability = "none"
MODES: tuple[Durability, ...] = (FULL, DEFERRED, NONE)
DEFAULT: Durability = DEFERRED

#: How long the syncing thread gathers saves before it syncs them: every save of that window
#: costs one fsync of its file and one of its directory in all, however many were made.
BATCH_DELAY = 0.02
#: The most replaced files held open for the thread to free: beyond, a save frees its own
#: (as the rename would have), so that fast saves never run the process out of descriptors.
MAX_HELD = 64
#: How many held files make the thread free them at once, without waiting for the batch's
#: fsyncs: saves 0.15 ms apart would otherwise reach MAX_HELD within a batch and free their
#: own (0.1-0.2 ms each on a disk that discards freed blocks), a quarter of them here.
FREE_AT = 16


def resolve(durability: str | None = None) -> Durability:
    """The durability mode of one save: ``durability`` if given, else the environment's.

    Raises:
        ValueError: If the argument or ``JOBPERSIST_DURABILITY`` names no mode.
    """
    if durability is None:
        durability = (variable("JOBPERSIST_DURABILITY") or "").strip().lower()
        source = "JOBPERSIST_DURABILITY"
        if not durability:
            fsync = (variable("JOBPERSIST_FSYNC") or "").strip()
            if not fsync:
                return DEFAULT
            return NONE if fsync == "0" else FULL
    else:
        source = "durability"
    if durability not in MODES:
        raise ValueError(
            f"{source}={durability!r} is not a durability mode: use 'full', 'deferred' or 'none'."
        )
    return durability


class _Syncer:
    """The deferred fsyncs of this process: the paths renamed and not yet synced, and the
    thread that syncs them."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """The state of a process that deferred nothing yet (a forked child's: it has no
        syncing thread, and its parent syncs and frees what the parent saved)."""
        # A forked child's copies of the replaced files' descriptors: closing them frees
        # nothing the parent still holds.
        for fd in getattr(self, "replaced", ()):
            close_quietly(fd)
        # Imported by the first deferred save: ``import jobpersist`` stays light.
        import threading

        self.cond = threading.Condition()
        # Paths renamed since the last batch was taken (a dict: ordered, each once).
        self.pending: dict[str, None] = {}
        # Replaced files still open (their descriptors), to be closed by the next batch.
        self.replaced: list[int] = []
        self.taken = 0  # batches taken so far; each gets the next number
        self.running: set[int] = set()  # the numbers of the batches being synced
        self.errors: list[OSError] = []  # failed syncs nobody was told of yet
        self.thread: threading.Thread | None = None

    def schedule(self, path: str | None, replaced: int | None) -> None:
        with self.cond:
            idle = not self._waiting()
            if path is not None:
                self.pending[path] = None
            if replaced is not None:
                if len(self.replaced) < MAX_HELD:
                    self.replaced.append(replaced)
                else:
                    close_quietly(replaced)
            if self.thread is None or not self.thread.is_alive():
                # (A thread that died, of an error no fsync raises, is replaced.)
                import threading

                thread = threading.Thread(target=self._run, name="jobpersist-sync", daemon=True)
                try:
                    thread.start()
                except RuntimeError:
                    # No new threads at interpreter shutdown: the exit's flush syncs it.
                    return
                self.thread = thread
            # The thread waits for the first save of a batch, and while it gathers one, for
            # FREE_AT held files; waking it for every save would cost each save a switch.
            if idle or len(self.replaced) >= FREE_AT:
                self.cond.notify_all()

    def _waiting(self) -> bool:
        return bool(self.pending or self.replaced)

    def _take(self, paths_too: bool = True) -> tuple[int, list[str], list[int]]:
        """The pending paths (unless not ``paths_too``) and replaced files, as a new batch
        (the caller holds ``cond``)."""
        paths = list(self.pending) if paths_too else []
        if paths_too:
            self.pending.clear()
        replaced, self.replaced = self.replaced, []
        self.taken += 1
        self.running.add(self.taken)
        return self.taken, paths, replaced

    def _done(self, batch: int, errors: list[OSError]) -> None:
        with self.cond:
            self.running.discard(batch)
            self.errors.extend(errors)
            self.cond.notify_all()

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self._waiting():
                    self.cond.wait()
                self._gather()
                if not self._waiting():
                    continue  # a flush took them meanwhile
                batch, paths, replaced = self._take()
            self._process(batch, paths, replaced)

    def _gather(self) -> None:
        """Lets the saves of the next ``BATCH_DELAY`` seconds join the batch, freeing the
        replaced files meanwhile whenever ``FREE_AT`` are held (the caller holds ``cond``)."""
        due = time.monotonic() + BATCH_DELAY
        while (left := due - time.monotonic()) > 0:
            if len(self.replaced) < FREE_AT:
                self.cond.wait(left)
                continue
            batch, _, replaced = self._take(paths_too=False)
            self.cond.release()
            try:
                self._process(batch, [], replaced)
            finally:
                self.cond.acquire()

    def _process(self, batch: int, paths: list[str], replaced: list[int]) -> None:
        errors: list[OSError] = []
        try:
            for fd in replaced:
                close_quietly(fd)  # frees the file
            errors = sync_paths(paths)
        finally:
            self._done(batch, errors)

    def flush(self) -> None:
        with self.cond:
            if not self._waiting() and not self.running and not self.errors:
                return
            batch, paths, replaced = self._take()
        self._process(batch, paths, replaced)
        with self.cond:
            # The thread's batch taken before ours may still be syncing: wait for it.
            while any(number <= batch for number in self.running):
                self.cond.wait()
            errors, self.errors = self.errors, []
        if errors:
            raise errors[0]


def sync_paths(paths: list[str]) -> list[OSError]:
    """fsyncs each file, then each of their directories once; the errors, each naming its
    path. A file gone meanwhile (replaced and removed, deleted) needs no sync. A failed
    fsync is never retried: the kernel may have dropped the data it could not write."""
    errors: list[OSError] = []
    directories: dict[str, None] = {}
    for path in paths:
        try:
            _fsync_path(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors.append(OSError(exc.errno, exc.strerror, path))
            continue
        # The directory holding the file's name, through any symlinks (the one renamed in).
        directories[os.path.dirname(os.path.realpath(path))] = None
    for directory in directories:
        try:
            _fsync_path(directory, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        except OSError as exc:
            errors.append(OSError(exc.errno, exc.strerror, directory))
    return errors


def _fsync_path(path: str, flags: int) -> None:
    # O_NONBLOCK: a FIFO put in a file's place must not hang the thread.
    fd = os.open(path, flags | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Made by the first save that defers anything, under _MAKING (a lock of the _thread module,
# which, unlike threading, costs ``import jobpersist`` nothing).
_SYNCER: _Syncer | None = None
_MAKING = _thread.allocate_lock()


def _reset_after_fork() -> None:
    global _MAKING
    _MAKING = _thread.allocate_lock()
    if _SYNCER is not None:
        _SYNCER.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def schedule(path: str | None, replaced: int | None = None) -> None:
    """Has ``path``, just renamed into place by a ``deferred`` save, fsynced soon, with its
    directory; and ``replaced``, the descriptor of the file the save replaced (kept open so
    the rename did not free it), closed soon. Either may be None."""
    global _SYNCER
    if _SYNCER is None:
        with _MAKING:
            if _SYNCER is None:
                _SYNCER = _Syncer()
    _SYNCER.schedule(path, replaced)


def flush() -> None:
    """Blocks until every deferred fsync of this process's saves made before the call is
    done (at once, in the calling thread, for those still waiting for their batch).

    Raises:
        OSError: The first deferred fsync that failed since the last ``flush`` (naming the
            file or directory); the others are dropped. The save it belongs to returned
            long ago: its data may not be on the disk.
    """
    if _SYNCER is not None:
        _SYNCER.flush()


def _flush_at_exit() -> None:
    try:
        flush()
    except OSError as exc:
        print(f"jobpersist: a deferred fsync failed: {exc}", file=sys.stderr)


atexit.register(_flush_at_exit)
