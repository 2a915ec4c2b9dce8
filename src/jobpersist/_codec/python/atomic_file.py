"""Atomic, durable replacement of a file, in pure Python (the fallback of the Rust writer).

The same protocol as ``rust/core/src/atomic_file.rs``:

1. The new content goes into an unnamed file (``O_TMPFILE`` in the target's directory), locked
   with ``flock(LOCK_EX)``: no partial file appears in the directory under any name.
2. It is fsynced, then named ``.{name}.jptmp.{pid}.{random}`` by ``linkat`` of
   ``/proc/self/fd/N`` with ``AT_SYMLINK_FOLLOW`` (``os.link`` with ``dst_dir_fd``, which makes
   CPython call ``linkat`` rather than ``link``), and renamed over the target. (The Rust twin
   first tries ``linkat`` of the descriptor itself, ``AT_EMPTY_PATH``, which Linux 6.10 and
   later allow for a file the process opened: ``os.link`` cannot pass that flag.)
3. The directory is fsynced, so the rename is durable.

Where ``O_TMPFILE`` is refused (EOPNOTSUPP, EISDIR, EINVAL, ENOSYS), where ``/proc`` is missing,
or with ``JOBPERSIST_NO_TMPFILE=1`` (read at each save; tests force the fallback with it), the
content goes into the named temp directly, created and locked the same way.

A caller that knows a large content is coming reserves its blocks first (``reserve``:
``fallocate`` keeping the size); the commit gives back what the content did not use. ext4 flushes
a file with delayed allocations inside the rename that replaces another file (``auto_da_alloc``),
even with fsync off; a reserved file has none. Best effort: where ``fallocate`` is refused, the
writes allocate as they go.

A writer holds its temp's lock for as long as it writes, so a temp whose lock can be taken was
left by a writer that is gone, whatever pid its name carries: the next save of the same target
that looks for them (``scan_stale``) removes it. Both implementations name and lock their temps
alike, so each removes the other's leftovers. Every error names the target the caller gave.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import random
import stat
import time
from collections.abc import Callable

from jobpersist._codec.python import spare_files
from jobpersist._codec.python.in_memory_fs import KEEP_ANYWAY_AT, frees_in_memory
from jobpersist._environment import variable

# O_TMPFILE refused by the filesystem or the kernel (an old kernel sees O_DIRECTORY: EISDIR).
_UNNAMED_REFUSED = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS})
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
_PROC_FD = "/proc/self/fd"
# fallocate(2) mode: allocate blocks without changing the file's size.
_FALLOC_FL_KEEP_SIZE = 1
# The most ``AtomicFile.reserve`` reserves beyond what it is asked for (as rust/core's).
RESERVE_AHEAD = 64 << 20


@functools.cache
def _libc_fallocate() -> Callable[[int, int, int, int], int] | None:
    """libc's ``fallocate`` with a 64-bit offset, where ctypes reaches it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        function = getattr(libc, "fallocate64", None) or libc.fallocate
    except (ImportError, OSError, AttributeError):
        return None
    if getattr(libc, "fallocate64", None) is None and ctypes.sizeof(ctypes.c_long) < 8:
        return None  # a 32-bit off_t: offsets past 2 GiB would not fit
    function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    function.restype = ctypes.c_int
    return function


def _fallocate(fd: int, offset: int, count: int) -> None:
    """``fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, count)``; OSError where it fails."""
    function = _libc_fallocate()
    if function is None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
    import ctypes

    while function(fd, _FALLOC_FL_KEEP_SIZE, offset, count) != 0:
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))


# Temp names' random part: a generator of our own (the random module's is the user's), which
# asks the kernel for nothing per name. A forked child draws what its parent draws, but the
# pid in the names keeps them apart. Names need to be distinct, not secret: whoever can write
# the directory can remove the checkpoints anyway.
_NAMES = random.Random()  # noqa: S311
# The directories this process has looked for stale temps in (see stale_scan_due).
_SCANNED: set[str] = set()


def stale_scan_due(directory: str) -> bool:
    """Whether a save into ``directory`` should first remove the temps dead writers left:
    the first save of this process there, and the first after a failed one (``rescan``). A
    directory listing on every save would cost more than the save of a small file."""
    if directory in _SCANNED:
        return False
    _SCANNED.add(directory)
    return True


def rescan(directory: str) -> None:
    """Has the next save into ``directory`` look for stale temps again."""
    _SCANNED.discard(directory)


@functools.cache
def _proc_fd_available() -> bool:
    return os.path.isdir(_PROC_FD)


def unnamed_temp_enabled() -> bool:
    """False when ``JOBPERSIST_NO_TMPFILE=1``: the named temp file is used, as where the
    filesystem refuses ``O_TMPFILE``."""
    return (variable("JOBPERSIST_NO_TMPFILE") or "").strip() != "1"


def temp_prefix(target: str) -> str:
    """The prefix shared by every temp file written for ``target``."""
    return f".{os.path.basename(target)}.jptmp."


def remove_stale_temps(target: str, dir_fd: int | None = None) -> None:
    """Removes the temp files whose writers are gone (their lock can be taken); best effort."""
    directory = os.path.dirname(target) or "."
    prefix = temp_prefix(target)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(prefix):
            _remove_if_unlocked(directory, name, dir_fd)


def _remove_if_unlocked(directory: str, name: str, dir_fd: int | None) -> None:
    path = name if dir_fd is not None else os.path.join(directory, name)
    # O_NOFOLLOW: a symlink is nobody's temp; O_NONBLOCK: a FIFO must not hang the save.
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, os.O_RDONLY | flags, dir_fd=dir_fd)
        except PermissionError:  # a temp given a write-only mode
            fd = os.open(path, os.O_WRONLY | flags, dir_fd=dir_fd)
    except OSError:
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a live writer
        # Ours now; remove it only if the name still means this file.
        now = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
        if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            os.unlink(path, dir_fd=dir_fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _resolve_symlinks(target: str) -> str:
    """Follows symlinks at the last component, so the save replaces the file a link points
    to (as writing through the link would) and keeps the link itself."""
    path = target
    for _ in range(40):  # the kernel's own limit on links followed in one lookup
        if not os.path.islink(path):
            return path
        link = os.readlink(path)
        path = os.path.join(os.path.dirname(path), link)  # an absolute link replaces all
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), target)


class AtomicFile:
    """A temp file beside ``target`` that replaces it on ``commit`` and vanishes on ``abort``.

    ``unnamed`` tells whether the content goes into an unnamed ``O_TMPFILE`` file.
    """

    def __init__(
        self, target: str, fsync: bool, scan_stale: bool = True, keep_replaced: bool = False
    ) -> None:
        self.shown = target
        self.fsync = fsync
        self.keep_replaced = keep_replaced
        self.replacing = False  # whether a file had the target's name when we began
        self.in_memory = False  # whether the filesystem keeps its files in memory
        self.fd = -1
        self.dir_fd = -1
        self.linked = False  # whether self.temp names our file
        self.len = 0  # bytes written
        self.reserved = 0  # bytes of blocks reserved ahead of the writes
        self.reserving = True  # until fallocate first fails
        try:
            # The target's own stat tells both whether it is a symlink and, if not, the
            # mode of the file replaced: one call, where resolving links first takes two.
            st = self._open_directory(target, follow_symlinks=False)
            if st is not None and stat.S_ISLNK(st.st_mode):
                close_quietly(self.dir_fd)
                self.dir_fd = -1
                st = self._open_directory(_resolve_symlinks(target), follow_symlinks=True)
            if scan_stale:
                remove_stale_temps(self.target, self.dir_fd)
            self.replacing = st is not None
            # Whether no fsync makes a file durable here: known when a file is replaced.
            self.in_memory = st is not None and frees_in_memory(st.st_dev)
            # Where the filesystem frees a small file in memory, the rename frees it.
            self.keep_replaced = (
                keep_replaced
                and st is not None
                and (st.st_size >= KEEP_ANYWAY_AT or not self.in_memory)
            )
            self._open(None if st is None else stat.S_IMODE(st.st_mode))
        except OSError as exc:
            self.abort()
            raise _with_filename(exc, self.shown) from None
        except BaseException:
            self.abort()
            raise

    def _open_directory(self, target: str, follow_symlinks: bool) -> os.stat_result | None:
        """Opens the directory of ``target``; the stat of ``target``'s name in it (None if
        there is none)."""
        self.target = target
        self.directory = os.path.dirname(target) or "."
        self.name = os.path.basename(target)
        self.dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=follow_symlinks)
        except FileNotFoundError:
            return None

    def _new_temp_name(self) -> str:
        return f"{temp_prefix(self.name)}{os.getpid()}.{_NAMES.getrandbits(64):016x}"

    def _open(self, mode: int | None) -> None:
        self.temp = self._new_temp_name()
        self.unnamed = False
        spare = None
        if _O_TMPFILE and unnamed_temp_enabled() and _proc_fd_available():
            # A file replacing another takes the spare made after the last save here, if
            # there is one, and has the next one made (see spare_files).
            spare = spare_files.take(self.dir_fd) if mode is not None else None
            started = time.perf_counter_ns()
            if spare is not None:
                self.fd, self.unnamed = spare.fd, True
            else:
                self._open_unnamed()
            slow = spare is not None or spare_files.slow(started)
            if mode is not None and self.unnamed and slow:
                spare_files.want(self.dir_fd)
        try:
            if self.unnamed:
                # Nobody else can reach an unnamed file: the lock is free.
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            else:
                self._create_named_locked()
            if mode is not None and (spare is None or spare.mode != mode):
                os.fchmod(self.fd, mode)
        except OSError as exc:
            raise _with_filename(exc, self.shown) from None

    def _open_unnamed(self) -> None:
        try:
            # 0o666 lets the umask decide, as a plain open() would.
            self.fd = os.open(
                ".", _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666, dir_fd=self.dir_fd
            )
            self.unnamed = True
        except OSError as exc:
            if exc.errno not in _UNNAMED_REFUSED:
                raise _with_filename(exc, self.shown) from None

    def _create_named_locked(self) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for _ in range(100):
            try:
                self.fd = os.open(self.temp, flags, 0o666, dir_fd=self.dir_fd)
            except FileExistsError:
                self.temp = self._new_temp_name()
                continue
            self.linked = True
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            # Visible before it was locked: a concurrent save may have taken it for a dead
            # writer's temp and removed it meanwhile. Then start over under a new name.
            mine = os.fstat(self.fd)
            try:
                named = os.stat(self.temp, dir_fd=self.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if (named.st_dev, named.st_ino) == (mine.st_dev, mine.st_ino):
                    return
            self.linked = False
            os.close(self.fd)
            self.fd = -1
            self.temp = self._new_temp_name()
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), self.shown)

    def reserve(self, end: int) -> None:
        """Allocates the file's blocks up to ``end`` bytes before they are written. Best effort:
        the first failure (``EOPNOTSUPP`` on NFS or FUSE, anything) ends the reservations of
        this file, which is then written as without them. The commit gives back the blocks the
        content does not fill."""
        start = max(self.reserved, self.len)
        if not self.reserving or end <= start:
            return
        # Ahead by as much as is written (at most RESERVE_AHEAD): a file of many large
        # values then makes a few calls, not one per value; as the Rust writer does.
        end += min(self.len, RESERVE_AHEAD)
        try:
            _fallocate(self.fd, start, end - start)
        except OSError:
            self.reserving = False
            return
        self.reserved = end

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Writes all of ``data`` (os.write retries EINTR; short writes continue)."""
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                self.len += written
                view = view[written:]
        except OSError as exc:
            raise _with_filename(exc, self.shown) from None

    def _trim(self) -> None:
        # The reservation kept the size: blocks past the content cost space, never content.
        if self.reserved > self.len:
            try:
                os.ftruncate(self.fd, self.len)
            except OSError:
                pass
            self.reserved = self.len

    def commit(self) -> int | None:
        """Makes the written bytes the target's content, durably unless fsync is off.

        A failed fsync fails the save and is never retried (the kernel may have dropped the
        data). Before the rename, a failure removes the temp and leaves the target as it was;
        a failed directory fsync leaves the new content in place, not known to be durable.

        Returns:
            int | None: With ``keep_replaced``, the replaced file opened (``O_PATH``) just
            before the rename, so that the rename does not free it; the caller closes it,
            which frees it. None when nothing was replaced, without ``keep_replaced``, or
            when it could not be opened (the rename then frees it).
        """
        kept = None
        try:
            self._trim()
            if self.fsync:
                os.fsync(self.fd)
            if self.unnamed:
                # dst_dir_fd makes CPython call linkat(), which follows the /proc link.
                os.link(
                    f"{_PROC_FD}/{self.fd}",
                    self.temp,
                    dst_dir_fd=self.dir_fd,
                    follow_symlinks=True,
                )
                self.linked = True
            kept = self._open_replaced()
            os.rename(self.temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            self.linked = False
            # Only now is the lock released: until the rename, the temp's name stayed locked.
            fd, self.fd = self.fd, -1
            os.close(fd)
            if self.fsync:
                os.fsync(self.dir_fd)
        except OSError as exc:
            if kept is not None:
                close_quietly(kept)
            raise _with_filename(exc, self.shown) from None
        except BaseException:
            if kept is not None:
                close_quietly(kept)
            raise
        finally:
            self.abort()
        return kept

    def _open_replaced(self) -> int | None:
        """The file about to be replaced, opened ``O_PATH`` (the name only: no device,
        FIFO or permission check), if the caller keeps it. Best effort."""
        if not (self.keep_replaced and self.replacing):
            return None
        flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(self.name, flags, dir_fd=self.dir_fd)
        except OSError:
            return None

    def abort(self) -> None:
        """Drops the temp file; the target is untouched. Idempotent; never raises (it runs
        while another error propagates)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            close_quietly(fd)
        dir_fd = getattr(self, "dir_fd", -1)
        if self.linked:
            self.linked = False
            try:
                os.unlink(self.temp, dir_fd=dir_fd)
            except OSError:
                pass  # unlocked now: the next scan removes it (a failed save asks for one)
        if dir_fd >= 0:
            self.dir_fd = -1
            close_quietly(dir_fd)


def close_quietly(fd: int) -> None:
    """Closes ``fd``, ignoring errors (a cleanup that must not raise)."""
    try:
        os.close(fd)
    except OSError:
        pass


def _with_filename(exc: OSError, filename: str) -> OSError:
    # Name the file the caller asked for, not our temp file or its directory.
    return OSError(exc.errno, exc.strerror, filename)
