"""Injected I/O faults, SQLite-style, on both backends.

* The sweep: a checkpoint save runs again and again with its Nth I/O operation failing (N = 1,
  2, ... until a save completes without reaching N), for EIO, ENOSPC, EDQUOT, EROFS and EACCES,
  with the unnamed (O_TMPFILE) temp and the named fallback, in each durability mode. The native
  backend fails its operations through the core's seam (``_native._arm_faults``); the
  pure-Python backend through stand-ins for the ``os`` and ``fcntl`` functions
  ``jobpersist._codec.python.atomic_file`` calls. After each save: the checkpoint holds the
  old content or the new one, never anything else; the error reached the caller as the
  ``OSError`` subclass of the errno, naming the checkpoint; no temp file is left. A failure of
  the stale-temp cleanup never fails the save.
* Short writes (and, native, EINTR) are retried, not surfaced.
* Faults from outside, during a save (from a value's ``__reduce__``, so mid-write on both
  backends): the directory removed, the directory made immutable, the checkpoint replaced by a
  directory; ENOSPC on a small tmpfs; background saves whose Future fails, the next save working.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.files import keeps_replaced_files, temp_leftovers
from support.jobenv import JobEnv
from support.spares import set_spares, wait_for_spares

import jobpersist
from jobpersist._codec.python import atomic_file as _atomic

# SIGKILL loops, strace runs, fault sweeps: `make test-quick` leaves them out.
pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.slow]

ERRNOS = {
    "EIO": errno.EIO,
    "ENOSPC": errno.ENOSPC,
    "EDQUOT": errno.EDQUOT,
    "EROFS": errno.EROFS,
    "EACCES": errno.EACCES,
}
SCAN_OPS = {"scan", "scan_open", "scan_lock", "scan_unlink"}
# Failures that never fail a save: the stale temp cleanup, the block reservation, keeping the
# replaced file open across the rename.
BEST_EFFORT_OPS = SCAN_OPS | {"reserve", "trim", "keep"}
# Every operation a save in the full durability mode performs, in the Rust core's names.
SAVE_OPS = {
    "open_dir",
    "stat",
    "open",
    "lock",
    "chmod",
    "reserve",
    "write",
    "trim",
    "fsync_file",
    "rename",
    "close",
    "fsync_dir",
}
NEW = {"blob": b"\x07" * (2 << 20), "n": 2}  # several writes in both backends
OLD = {"n": 1}
STALE = ".test-job.json.jptmp.1.0123456789abcdef"


@dataclasses.dataclass
class Record:
    ops: list[str] = dataclasses.field(default_factory=list)
    failed: str | None = None
    short_writes: int = 0
    interrupts: int = 0


class _Injector:
    """The pure-Python backend's seam: counts the calls ``_atomic`` makes, in the core's
    operation names, and fails the ``fail_at``-th."""

    def __init__(self, fail_at: int | None, err: int, short_writes: bool) -> None:
        self.fail_at = fail_at
        self.err = err
        self.short = short_writes
        self.record = Record()
        self.dir_fds: set[int] = set()
        self.kept_fds: set[int] = set()
        self.creating = False
        self.renamed = False
        self.closed_after_rename = False

    def check(self, op: str) -> None:
        self.record.ops.append(op)
        if len(self.record.ops) == self.fail_at:
            self.record.failed = op
            raise OSError(self.err, os.strerror(self.err))


class _FaultyOS:
    def __init__(self, inj: _Injector) -> None:
        self._inj = inj

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def listdir(self, path: Any) -> list[str]:
        self._inj.check("scan")
        return os.listdir(path)

    def open(self, path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        tmpfile = getattr(os, "O_TMPFILE", 0)
        if (tmpfile and flags & tmpfile == tmpfile) or flags & os.O_CREAT:
            op = "open"
            self._inj.creating = True
        elif flags & os.O_PATH:
            op = "keep"
        elif flags & os.O_DIRECTORY:
            op = "open_dir"
        else:
            op = "scan_open"
        self._inj.check(op)
        fd = os.open(path, flags, mode, dir_fd=dir_fd)
        if op == "open_dir":
            self._inj.dir_fds.add(fd)
        if op == "keep":
            self._inj.kept_fds.add(fd)
        return fd

    def stat(self, path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> Any:
        if ".jptmp." not in str(path):  # the target's (the rest are temps' inode checks)
            self._inj.check("stat")
        return os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def fchmod(self, fd: int, mode: int) -> None:
        self._inj.check("chmod")
        os.fchmod(fd, mode)

    def ftruncate(self, fd: int, length: int) -> None:
        self._inj.check("trim")
        os.ftruncate(fd, length)

    def write(self, fd: int, data: Any) -> int:
        self._inj.check("write")
        view = memoryview(data)
        if self._inj.short and len(view) > 1:
            self._inj.record.short_writes += 1
            view = view[: len(view) // 2]
        return os.write(fd, view)

    def fsync(self, fd: int) -> None:
        self._inj.check("fsync_dir" if fd in self._inj.dir_fds else "fsync_file")
        os.fsync(fd)

    def link(self, src: Any, dst: Any, **kwargs: Any) -> None:
        self._inj.check("link")
        os.link(src, dst, **kwargs)

    def rename(self, src: Any, dst: Any, **kwargs: Any) -> None:
        self._inj.check("rename")
        os.rename(src, dst, **kwargs)
        self._inj.renamed = True

    def unlink(self, path: Any, *, dir_fd: int | None = None) -> None:
        if not self._inj.creating:
            self._inj.check("scan_unlink")
        os.unlink(path, dir_fd=dir_fd)

    def close(self, fd: int) -> None:
        inj = self._inj
        kept = fd in inj.dir_fds or fd in inj.kept_fds
        if inj.renamed and not inj.closed_after_rename and not kept:
            inj.closed_after_rename = True
            try:
                inj.check("close")
            except OSError:
                os.close(fd)
                raise
        os.close(fd)


class _FaultyFcntl:
    def __init__(self, inj: _Injector) -> None:
        self._inj = inj

    def __getattr__(self, name: str) -> Any:
        import fcntl

        return getattr(fcntl, name)

    def flock(self, fd: int, operation: int) -> None:
        import fcntl

        self._inj.check("scan_lock" if operation & fcntl.LOCK_NB else "lock")
        fcntl.flock(fd, operation)


@contextlib.contextmanager
def injected(
    backend: str,
    fail_at: int | None = None,
    err: int = errno.EIO,
    short_writes: bool = False,
    interrupt: bool = False,
) -> Iterator[Record]:
    """Fails the calling thread's ``fail_at``-th I/O operation of saves made inside."""
    record = Record()
    if backend == "native":
        from jobpersist import _native

        _native._arm_faults(fail_at, err, interrupt, short_writes)
        try:
            yield record
        finally:
            ops, failed, interrupts, shorts = _native._disarm_faults()
            record.ops, record.failed = ops, failed
            record.interrupts, record.short_writes = interrupts, shorts
        return
    inj = _Injector(fail_at, err, short_writes)
    # The module's own names for the os and fcntl modules, replaced for the save.
    saved = {name: getattr(_atomic, name) for name in ("os", "fcntl", "_fallocate")}
    fallocate = _atomic._fallocate

    def faulty_fallocate(fd: int, offset: int, count: int) -> None:
        inj.check("reserve")
        fallocate(fd, offset, count)

    setattr(_atomic, "os", _FaultyOS(inj))  # noqa: B010
    setattr(_atomic, "fcntl", _FaultyFcntl(inj))  # noqa: B010
    setattr(_atomic, "_fallocate", faulty_fallocate)  # noqa: B010
    try:
        yield record
    finally:
        for name, module in saved.items():
            setattr(_atomic, name, module)
        record.ops, record.failed = inj.record.ops, inj.record.failed
        record.short_writes = inj.record.short_writes


def load() -> Any:
    return jobpersist.load_job_checkpoint(allow_pickle=True)


@pytest.fixture(autouse=True)
def own_files(backend: str) -> Iterator[None]:
    """Every save creates its own file, as a process's first does (the saves that take a
    spare file are swept by the tests that ask for them)."""
    set_spares(backend, "off")
    yield
    set_spares(backend, "where slow")


def sweep(
    job_env: JobEnv, backend: str, err: int, new: dict[str, Any] = NEW, spare: bool = False
) -> Counter[str]:
    """Fails each operation of a save of ``new`` in turn; the count of failures per
    operation. Each save looks for stale temps, as the first of a process does; with
    ``spare``, it writes into the spare file made after the save before it."""
    target = job_env.checkpoint_path
    stale = job_env.checkpoint_dir / STALE
    counts: Counter[str] = Counter()
    set_spares(backend, "always" if spare else "off")
    if spare:
        jobpersist.save_job_checkpoint(OLD, "", "pickled_v4")  # only a replacing save wants one
    for n in range(1, 200):
        jobpersist.save_job_checkpoint(OLD, "", "pickled_v4")
        if spare:
            wait_for_spares(backend)
        stale.write_bytes(b"a dead writer's half file")
        _atomic.rescan(str(job_env.checkpoint_dir))
        error: OSError | None = None
        with injected(backend, n, err) as record:
            try:
                jobpersist.save_job_checkpoint(new, "", "pickled_v4")
            except OSError as exc:
                error = exc
        context = f"op #{n} = {record.failed}, ops {record.ops}"
        if record.failed is None:
            assert error is None, context
            assert load() == new
            jobpersist.wait_for_saves()  # the replaced files freed, the deferred syncs done
            assert temp_leftovers(job_env.checkpoint_dir) == []
            return counts
        counts[record.failed] += 1
        if record.failed in BEST_EFFORT_OPS:
            assert error is None, context
            assert load() == new, context
        else:
            assert error is not None, context
            assert type(error) is type(OSError(err, "")), (context, error)
            assert error.errno == err, (context, error)
            assert error.filename == str(target), (context, error)
            # Only after the rename may the new content be in place.
            after_rename = record.failed in ("close", "fsync_dir")
            assert load() == (new if after_rename else OLD), context
            if record.failed == "fsync_file":  # never retried, never named after it
                assert not {"fsync_file", "link", "rename"} & set(record.ops[n:]), context
        leftovers = temp_leftovers(job_env.checkpoint_dir)
        if stale.exists():
            assert record.failed in SCAN_OPS | {"open_dir", "stat"}, context
            leftovers.remove(STALE)
        assert leftovers == [], context
    raise AssertionError("the save never completed")


@pytest.fixture
def fast_job_env(job_env: JobEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[JobEnv]:
    """``job_env`` with the checkpoints on tmpfs where there is one (/dev/shm), where an
    fsync costs nothing: the sweeps make hundreds of saves with fsync on."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield job_env
        return
    directory = Path(tempfile.mkdtemp(prefix="jobpersist-faults-", dir=shm))
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(directory))
    try:
        yield JobEnv(directory, job_env.results_dir, job_env.job_name)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def mode_ops(durability: str) -> set[str]:
    """The operations of a save in a durability mode (beside the scan's and ``link``)."""
    if durability == "full":
        return SAVE_OPS
    # No fsync in the save; the replaced file kept open across the rename.
    return SAVE_OPS - {"fsync_file", "fsync_dir"} | {"keep"}


@pytest.mark.parametrize("durability", ["full", "deferred", "none"])
@pytest.mark.parametrize("tmpfile", ["unnamed", "named", "spare"])
def test_every_operation_of_a_save_fails_cleanly(
    job_env: JobEnv,
    fast_job_env: JobEnv,
    backend: str,
    tmpfile: str,
    durability: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if durability == "full":
        job_env = fast_job_env  # the saves fsync: tmpfs makes that free
    else:
        # The replaced file is kept (the "keep" operation) only where freeing it is disk work.
        monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(job_env.checkpoint_dir))
    monkeypatch.setenv("JOBPERSIST_DURABILITY", durability)
    if tmpfile == "named":
        monkeypatch.setenv("JOBPERSIST_NO_TMPFILE", "1")
    matrix: dict[str, Counter[str]] = {}
    for name, err in ERRNOS.items():
        matrix[name] = sweep(job_env, backend, err, spare=tmpfile == "spare")
    expected = mode_ops(durability) | SCAN_OPS | ({"link"} if tmpfile != "named" else set())
    if not keeps_replaced_files(job_env.checkpoint_dir):
        expected -= {"keep"}
    if tmpfile == "spare":
        # The spare was created before the save, with the mode the replaced file has.
        expected -= {"open", "chmod"}
    for name, counts in matrix.items():
        assert set(counts) == expected, (name, counts)
        assert counts["write"] >= 2, (name, counts)
    # The matrix, for the record (pytest -s).
    print(f"\nfault matrix, {backend}, {tmpfile} temp, durability {durability}:")
    for op in sorted(expected):
        print(f"  {op:<12}", " ".join(f"{name}={matrix[name][op]}" for name in ERRNOS))


def test_every_write_of_a_large_save_fails_cleanly(
    fast_job_env: JobEnv, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20 MiB: the native writer hands its writes to a thread of their own (the write pipe),
    # which takes the calling thread's fault plan along. Below 32 MiB of text, so no replaced
    # file is freed by a thread that could race the next save's scan.
    monkeypatch.setenv("JOBPERSIST_DURABILITY", "full")
    counts = sweep(fast_job_env, backend, errno.EIO, {"blob": b"\x07" * (20 << 20), "n": 3})
    assert counts["write"] >= 10, counts
    assert counts["reserve"] >= 1 and counts["trim"] == 1, counts
    assert set(counts) == SAVE_OPS | SCAN_OPS | {"link"}, counts


@pytest.mark.parametrize("tmpfile", ["unnamed", "named"])
def test_the_modes_differ_only_in_the_fsyncs(
    job_env: JobEnv, backend: str, tmpfile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if tmpfile == "named":
        monkeypatch.setenv("JOBPERSIST_NO_TMPFILE", "1")
    records = {}
    for durability in ("full", "deferred", "none"):
        monkeypatch.setenv("JOBPERSIST_DURABILITY", durability)
        jobpersist.save_job_checkpoint(OLD, "", "pickled_v4")
        _atomic.rescan(str(job_env.checkpoint_dir))
        with injected(backend) as record:
            jobpersist.save_job_checkpoint(NEW, "", "pickled_v4")
        records[durability] = record.ops
    full = records["full"]
    assert full.count("fsync_file") == full.count("fsync_dir") == 1
    # deferred and none: the same calls in the saving thread (deferred syncs in another),
    # those of full minus the fsyncs, plus keeping the replaced file across the rename.
    assert records["deferred"] == records["none"]
    assert [op for op in full if not op.startswith("fsync")] == [
        op for op in records["none"] if op != "keep"
    ]
    # Both backends perform the same operations, in the same order.
    core_order = ["open_dir", "stat", "scan", "open", "lock", "chmod"]
    assert [op for op in full if op in core_order] == core_order
    link = ["link"] if tmpfile == "unnamed" else []
    tail = ["fsync_file", *link, "rename", "close"]
    assert full[-len(tail) - 1 :] == [*tail, "fsync_dir"]
    assert records["none"][-len(link) - 3 :] == [*link, "keep", "rename", "close"]
    # Without a failure, a process looks for stale temps in a directory once.
    with injected(backend) as record:
        jobpersist.save_job_checkpoint(NEW, "", "pickled_v4")
    assert not SCAN_OPS & set(record.ops), record.ops


def test_short_writes_and_eintr_are_retried(job_env: JobEnv, backend: str) -> None:
    jobpersist.save_job_checkpoint(OLD, "", "pickled_v4")
    with injected(backend, short_writes=True, interrupt=True) as record:
        jobpersist.save_job_checkpoint(NEW, "", "pickled_v4")
    assert load() == NEW
    assert temp_leftovers(job_env.checkpoint_dir) == []
    assert record.short_writes > 20
    if backend == "native":
        # CPython retries EINTR inside os.write and fcntl.flock itself (PEP 475).
        assert record.interrupts > 20


# --------------------------------------------------------------------------------------------
# Faults from outside, mid-save
# --------------------------------------------------------------------------------------------
class During:
    """A value whose pickling runs ``action``: megabytes of the save are already written."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action

    def __reduce__(self) -> Any:
        self.action()
        return (int, (0,))


def mid_save(action: Callable[[], None]) -> dict[str, Any]:
    return {"first": b"\x01" * (3 << 20), "during": During(action), "last": b"\x02" * 1000}


@pytest.fixture(params=["unnamed", "named"])
def tmpfile(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "named":
        monkeypatch.setenv("JOBPERSIST_NO_TMPFILE", "1")
    return str(request.param)


@pytest.mark.usefixtures("tmpfile")
def test_directory_removed_mid_save(job_env: JobEnv) -> None:
    jobpersist.save_job_checkpoint(OLD, "", "pickled_v4")
    with pytest.raises(FileNotFoundError) as info:
        jobpersist.save_job_checkpoint(
            mid_save(lambda: shutil.rmtree(job_env.checkpoint_dir)), "", "pickled_v4"
        )
    assert info.value.filename == str(job_env.checkpoint_path)
    assert not job_env.checkpoint_dir.exists()
    job_env.checkpoint_dir.mkdir()
    jobpersist.save_job_checkpoint(NEW, "", "pickled_v4")
    assert load() == NEW
    assert os.listdir(job_env.checkpoint_dir) == [job_env.checkpoint_path.name]


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[Callable[[], None]]:
    """Yields an action making ``directory`` refuse new entries (chmod for a user; the
    immutable attribute for root, whom modes do not stop); undone on exit."""
    if os.geteuid() != 0:
        yield lambda: directory.chmod(0o555)
        directory.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root, and no chattr to make a directory immutable")
    probe = subprocess.run(["chattr", "+i", str(directory)], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"chattr +i refused here: {probe.stderr.decode().strip()}")
    subprocess.run(["chattr", "-i", str(directory)], check=True)

    def make_immutable() -> None:
        subprocess.run(["chattr", "+i", str(directory)], check=True)

    try:
        yield make_immutable
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


@pytest.mark.usefixtures("tmpfile")
def test_directory_made_read_only_mid_save(job_env: JobEnv) -> None:
    jobpersist.save_job_checkpoint(OLD, "", "pickled_v4")
    with read_only(job_env.checkpoint_dir) as make_read_only:
        with pytest.raises(PermissionError) as info:
            jobpersist.save_job_checkpoint(mid_save(make_read_only), "", "pickled_v4")
        assert info.value.errno in (errno.EPERM, errno.EACCES)
        assert info.value.filename == str(job_env.checkpoint_path)
        assert load() == OLD
    # A named temp could not be removed while the directory refused changes: it is unlocked,
    # so the next save removes it.
    jobpersist.save_job_checkpoint(NEW, "", "pickled_v4")
    assert load() == NEW
    assert os.listdir(job_env.checkpoint_dir) == [job_env.checkpoint_path.name]


@pytest.mark.usefixtures("tmpfile")
def test_checkpoint_replaced_by_a_directory_mid_save(job_env: JobEnv) -> None:
    target = job_env.checkpoint_path
    jobpersist.save_job_checkpoint(OLD, "", "pickled_v4")

    def replace() -> None:
        target.unlink()
        target.mkdir()
        (target / "inside").write_bytes(b"kept")

    with pytest.raises(OSError) as info:
        jobpersist.save_job_checkpoint(mid_save(replace), "", "pickled_v4")
    assert info.value.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST)
    assert info.value.filename == str(target)
    assert (target / "inside").read_bytes() == b"kept"
    assert temp_leftovers(job_env.checkpoint_dir) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only; skipped where mounting is not permitted)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        # The files the last saves replaced are freed (closed) by the syncing thread: until
        # then they keep the filesystem busy.
        with contextlib.suppress(Exception):
            jobpersist.wait_for_saves()
        subprocess.run(["umount", str(mount_point)], check=True)


@pytest.mark.usefixtures("tmpfile")
def test_enospc_on_a_full_filesystem(small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(small_tmpfs))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "job")
    monkeypatch.setenv("JOBPERSIST_FSYNC", "1")
    jobpersist.save_job_checkpoint(OLD, "", "pickled_v4")
    with pytest.raises(OSError) as info:
        jobpersist.save_job_checkpoint({"big": b"\x03" * (2 << 20)}, "", "pickled_v4")
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(small_tmpfs / "job.json")
    assert load() == OLD
    assert os.listdir(small_tmpfs) == ["job.json"]
    jobpersist.save_job_checkpoint(NEW | {"blob": b""}, "", "pickled_v4")
    assert load() == {"blob": b"", "n": 2}


@pytest.mark.usefixtures("tmpfile")
def test_background_saves_under_faults(small_tmpfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(small_tmpfs))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "job")
    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(small_tmpfs))
    jobpersist.save_job_checkpoint(OLD, "", "pickled_v4")
    failing = jobpersist.save_job_checkpoint_async({"big": b"\x03" * (2 << 20)}, "", "pickled_v4")
    exc = failing.exception(timeout=60)
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC, exc
    assert exc.filename == str(small_tmpfs / "job.json")
    assert load() == OLD
    failing_result = jobpersist.save_job_result_async({"big": b"\x03" * (2 << 20)}, "pickled_v4")
    exc = failing_result.exception(timeout=60)
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC, exc
    assert sorted(os.listdir(small_tmpfs)) == ["job.json"]
    ok = jobpersist.save_job_checkpoint_async({"small": 1}, "", "pickled_v4")
    assert ok.result(timeout=60) == str(small_tmpfs / "job.json")
    assert load() == {"small": 1}
    assert sorted(os.listdir(small_tmpfs)) == ["job.json"]
