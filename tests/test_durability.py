"""Durability modes: how a save's mode is chosen, and the deferred work (fsyncs of the renamed
files and their directories, frees of the replaced files) that ``flush()``,
``wait_for_saves()`` and the interpreter's exit wait for, in this process and in a forked one.
The order of the system calls in each mode is test_power_loss's; kills are test_crash's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from support.files import in_memory, keeps_replaced_files
from support.jobenv import JobEnv, child_env

import jobpersist
from jobpersist import _durability
from jobpersist._codec.python.in_memory_fs import KEEP_ANYWAY_AT, filesystem_type

pytestmark = pytest.mark.usefixtures("backend")


@pytest.mark.parametrize(
    ("argument", "durability", "fsync", "expected"),
    [
        (None, None, None, "deferred"),
        (None, None, "0", "none"),
        (None, None, "1", "full"),
        (None, "full", "0", "full"),
        (None, " None ", None, "none"),
        (None, "", "0", "none"),
        ("none", "full", "1", "none"),
        ("full", None, "0", "full"),
    ],
)
def test_the_mode_of_a_save(
    monkeypatch: pytest.MonkeyPatch,
    argument: str | None,
    durability: str | None,
    fsync: str | None,
    expected: str,
) -> None:
    for name, value in (("JOBPERSIST_DURABILITY", durability), ("JOBPERSIST_FSYNC", fsync)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert _durability.resolve(argument) == expected


def test_an_unknown_mode_is_refused(job_env: JobEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="'fast' is not a durability mode"):
        _durability.resolve("fast")
    with pytest.raises(ValueError, match="'sometimes' is not a durability mode"):
        jobpersist.save_job_checkpoint_async({"a": 1}, durability="sometimes")
    monkeypatch.setenv("JOBPERSIST_DURABILITY", "sync")
    with pytest.raises(ValueError, match="JOBPERSIST_DURABILITY='sync'"):
        jobpersist.save_job_checkpoint({"a": 1})
    assert not job_env.checkpoint_path.exists()


def held_replaced_files(directory: Path) -> list[str]:
    """The files of ``directory`` this process holds open though they have no name left
    (not the spare unnamed files, which never had one: ``{directory}/#{inode}``)."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        spare = link.startswith(f"{directory}/#")
        if link.startswith(f"{directory}/") and link.endswith(" (deleted)") and not spare:
            held.append(link)
    return held


@pytest.mark.parametrize("durability", ["deferred", "none"])
def test_flush_syncs_every_renamed_file_and_frees_the_replaced_ones(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch, durability: str
) -> None:
    synced: list[str] = []
    real = _durability._fsync_path

    def recording(path: str, flags: int) -> None:
        synced.append(path)
        real(path, flags)

    monkeypatch.setattr(_durability, "_fsync_path", recording)
    if durability == "deferred" and in_memory(job_env.checkpoint_dir):
        pytest.skip("deferred saves that replace a file on tmpfs sync nothing (tested below)")
    # Only the flush syncs: a syncer of the test's own, whose thread sleeps 30 s (and then
    # finds nothing); the process's syncer comes back after the test.
    monkeypatch.setattr(_durability, "BATCH_DELAY", 30.0)
    monkeypatch.setattr(_durability, "_SYNCER", None)
    monkeypatch.setenv("JOBPERSIST_DURABILITY", durability)
    for i in range(3):
        jobpersist.save_job_checkpoint({"i": i})
        jobpersist.save_job_checkpoint({"i": i}, "other")
        jobpersist.save_job_result({f"k{i}": i})
    # The first saves' files, held (where freeing them is disk work).
    assert bool(held_replaced_files(job_env.checkpoint_dir)) == keeps_replaced_files(
        job_env.checkpoint_dir
    )
    jobpersist.wait_for_saves()
    assert held_replaced_files(job_env.checkpoint_dir) == []
    assert held_replaced_files(job_env.results_dir) == []
    if durability == "none":
        assert synced == []
        return
    # Each renamed file once, then each directory once.
    checkpoints = job_env.checkpoint_dir
    assert sorted(synced[:3]) == sorted(
        [str(checkpoints / "test-job.json"), str(checkpoints / "test-job_other.json"),
         str(job_env.results_path)]
    )  # fmt: skip
    assert sorted(synced[3:]) == sorted([str(checkpoints), str(job_env.results_dir)])
    synced.clear()
    _durability.flush()  # nothing left
    assert synced == []


def test_the_thread_syncs_soon_without_a_flush(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPERSIST_DURABILITY", "deferred")
    synced: list[str] = []
    real = _durability._fsync_path

    def recording(path: str, flags: int) -> None:
        synced.append(path)
        real(path, flags)

    _durability.flush()
    monkeypatch.setattr(_durability, "_fsync_path", recording)
    # A syncer of the test's own: the process's thread may still be in a sleep that another
    # test lengthened (BATCH_DELAY patched while it had work).
    monkeypatch.setattr(_durability, "_SYNCER", None)
    jobpersist.save_job_checkpoint({"a": 1}, "", "pickled_v4")
    for _ in range(500):  # the thread's batch: BATCH_DELAY (20 ms) and two fsyncs
        if len(synced) == 2:
            break
        time.sleep(0.01)
    assert synced == [str(job_env.checkpoint_path), str(job_env.checkpoint_dir)]


def test_a_forked_child_syncs_its_own_saves(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPERSIST_DURABILITY", "deferred")
    jobpersist.save_job_checkpoint({"parent": 1})  # the parent's syncing thread exists
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            jobpersist.save_job_checkpoint({"child": 1}, "child")
            jobpersist.wait_for_saves()  # would hang on the parent's (absent) thread
            code = 0 if held_replaced_files(job_env.checkpoint_dir) == [] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    jobpersist.save_job_checkpoint({"parent": 2})
    jobpersist.wait_for_saves()
    assert jobpersist.load_job_checkpoint() == {"parent": 2}
    assert jobpersist.load_job_checkpoint(checkpoint_file_suffix="child") == {"child": 1}


EXIT_CHILD = textwrap.dedent(
    """
    import atexit

    synced = []
    # Registered before jobpersist registers its flush: runs after it.
    atexit.register(lambda: print(sorted(synced)))
    import jobpersist, jobpersist._durability as durability

    real = durability._fsync_path
    durability._fsync_path = lambda path, flags: (synced.append(path), real(path, flags))
    durability.BATCH_DELAY = 600.0  # the thread will not: the exit's flush must
    jobpersist.save_job_checkpoint({"a": 1})
    jobpersist.save_job_checkpoint({"a": 2})
    """
)


def test_the_interpreter_exit_flushes(tmp_path: Path, backend: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", EXIT_CHILD],
        env=child_env(
            backend,
            AMZN_BRAKET_CHECKPOINT_DIR=str(tmp_path),
            AMZN_BRAKET_JOB_NAME="job",
            JOBPERSIST_DURABILITY="deferred",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == repr(sorted([str(tmp_path), str(tmp_path / "job.json")]))


@pytest.mark.parametrize("durability", ["full", "deferred", "none"])
def test_background_saves_take_a_mode(job_env: JobEnv, durability: str) -> None:
    future = jobpersist.save_job_checkpoint_async({"a": 1}, durability=durability)
    result = jobpersist.save_job_result_async({"b": 2}, durability=durability)
    jobpersist.wait_for_saves()
    assert future.result() == str(job_env.checkpoint_path)
    assert result.result() == str(job_env.results_path)
    assert jobpersist.load_job_checkpoint() == {"a": 1}
    assert jobpersist.load_job_result() == {"b": 2}


def test_fast_saves_hold_a_bounded_number_of_replaced_files(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not keeps_replaced_files(job_env.checkpoint_dir):
        pytest.skip("the filesystem frees files in memory: none is held")
    monkeypatch.setenv("JOBPERSIST_DURABILITY", "none")
    # The thread frees nothing meanwhile.
    monkeypatch.setattr(_durability, "BATCH_DELAY", 30.0)
    monkeypatch.setattr(_durability, "FREE_AT", _durability.MAX_HELD + 1)
    monkeypatch.setattr(_durability, "_SYNCER", None)
    for i in range(3 * _durability.MAX_HELD):
        jobpersist.save_job_checkpoint({"i": i})
    assert len(held_replaced_files(job_env.checkpoint_dir)) == _durability.MAX_HELD
    jobpersist.wait_for_saves()
    assert held_replaced_files(job_env.checkpoint_dir) == []
    assert jobpersist.load_job_checkpoint() == {"i": 3 * _durability.MAX_HELD - 1}


def test_held_files_are_freed_before_their_batch_is_due(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Saves faster than the batches: the thread frees the replaced files every FREE_AT, and
    # leaves the fsyncs to the batch.
    monkeypatch.setenv("JOBPERSIST_DURABILITY", "deferred")
    monkeypatch.setattr(_durability, "BATCH_DELAY", 30.0)
    monkeypatch.setattr(_durability, "FREE_AT", 8)
    monkeypatch.setattr(_durability, "_SYNCER", None)
    for i in range(40):
        jobpersist.save_job_checkpoint({"i": i})
    deadline = time.monotonic() + 10
    while len(held_replaced_files(job_env.checkpoint_dir)) >= 8:
        assert time.monotonic() < deadline, held_replaced_files(job_env.checkpoint_dir)
        time.sleep(0.01)
    syncer = _durability._SYNCER
    assert syncer is not None and list(syncer.pending) == [str(job_env.checkpoint_path)]
    jobpersist.wait_for_saves()
    assert held_replaced_files(job_env.checkpoint_dir) == [] and not syncer.pending
    assert jobpersist.load_job_checkpoint() == {"i": 39}


def test_where_files_live_in_memory_the_rename_frees_the_replaced_one(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm")
    if filesystem_type(shm.stat().st_dev) not in ("tmpfs", "ramfs"):
        pytest.skip("/dev/shm is not tmpfs here")
    monkeypatch.setattr(_durability, "BATCH_DELAY", 30.0)
    monkeypatch.setattr(_durability, "_SYNCER", None)
    directory = Path(tempfile.mkdtemp(dir=shm))
    try:
        monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(directory))
        for mode in ("deferred", "none"):
            monkeypatch.setenv("JOBPERSIST_DURABILITY", mode)
            for i in range(3):
                jobpersist.save_job_checkpoint({"i": i})
            assert held_replaced_files(directory) == []
            # Nor is a deferred sync scheduled for a replaced file: none would make it
            # durable (the first save, which found no file, did not know where it was).
            jobpersist.wait_for_saves()
            jobpersist.save_job_checkpoint({"i": 3}, "new")
            syncer = _durability._SYNCER
            if mode == "deferred":
                assert syncer is not None and list(syncer.pending) == [
                    str(directory / "test-job_new.json")
                ]
            jobpersist.wait_for_saves()
            jobpersist.save_job_checkpoint({"i": 2})
            assert syncer is None or not syncer.pending
        assert not keeps_replaced_files(directory)
        # A large file is kept anyway: freeing its pages takes milliseconds even there.
        big = "x" * KEEP_ANYWAY_AT  # (the same in both backends: LIMITS)
        jobpersist.save_job_checkpoint({"big": big}, "big")
        jobpersist.save_job_checkpoint({"big": big}, "big")
        assert len(held_replaced_files(directory)) == 1
        jobpersist.wait_for_saves()
        assert held_replaced_files(directory) == []
        assert jobpersist.load_job_checkpoint() == {"i": 2}
    finally:
        shutil.rmtree(directory)


def test_filesystem_types_are_read_from_mountinfo() -> None:
    # Checked against /proc/self/mounts, which names each mount point's type too.
    mounted = {}
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            _, point, kind, *_ = line.split()
            mounted[point] = kind  # the last mount on a point is the one seen
    for point in ("/", "/proc", "/dev/shm"):
        if point in mounted:
            assert filesystem_type(os.stat(point).st_dev) == mounted[point], point
    assert filesystem_type(os.makedev(0, 0)) == ""  # no such device mounted
