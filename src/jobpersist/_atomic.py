"""Atomic, durable replacement of a file, in pure Python (the fallback of the Rust writer).

Both implementations name their temp files alike, so each removes the other's leftovers.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat


def fsync_enabled() -> bool:
    """False when ``JOBPERSIST_FSYNC=0``: the rename stays, only the fsyncs are skipped."""
    return os.environ.get("JOBPERSIST_FSYNC", "1").strip() != "0"


def temp_prefix(target: str) -> str:
    """The prefix shared by every temp file written for ``target``."""
    return f".{os.path.basename(target)}.jptmp."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale_temps(target: str) -> None:
    """Removes the temp files that writers killed while saving ``target`` left behind."""
    directory = os.path.dirname(target) or "."
    prefix = temp_prefix(target)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix) :].split(".", 1)[0]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass


def fsync_directory(directory: str) -> None:
    """Makes a rename inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
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
    """A temp file beside ``target`` that replaces it on ``commit`` and vanishes on ``abort``."""

    def __init__(self, target: str, fsync: bool) -> None:
        shown = target
        target = _resolve_symlinks(target)
        self.target = target
        self.fsync = fsync
        self.directory = os.path.dirname(target) or "."
        remove_stale_temps(target)
        prefix = os.path.join(self.directory, temp_prefix(target)) + f"{os.getpid()}."
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        while True:
            self.temp = prefix + secrets.token_hex(8)
            try:
                # 0o666 lets the umask decide, as a plain open() would.
                self.fd = os.open(self.temp, flags, 0o666)
                break
            except FileExistsError:
                continue
            except OSError as exc:
                raise _with_filename(exc, shown) from None
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            pass
        except OSError:
            self.abort()
            raise
        else:
            try:
                os.fchmod(self.fd, mode)
            except OSError:
                self.abort()
                raise

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Writes all of ``data``."""
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError as exc:
            raise _with_filename(exc, self.target) from None

    def commit(self) -> None:
        """Makes the written bytes the target's content, durably unless fsync is off."""
        try:
            if self.fsync:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            os.replace(self.temp, self.target)
        except OSError as exc:
            self.abort()
            raise _with_filename(exc, self.target) from None
        if self.fsync:
            fsync_directory(self.directory)

    def abort(self) -> None:
        """Drops the temp file; the target is untouched."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass


def _with_filename(exc: OSError, filename: str) -> OSError:
    # Name the file the caller asked for, not our temp file.
    return OSError(exc.errno, exc.strerror, filename)
