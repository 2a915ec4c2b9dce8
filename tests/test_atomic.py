"""Atomic replacement: file modes, failed saves, temp files, fsync, and a write that fails
for lack of room (RLIMIT_FSIZE) in a subprocess."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from braket.jobs import data_persistence as reference
from support.files import temp_leftovers
from support.jobenv import JobEnv, child_env
from support.reference import snapshot

import jobpersist
from jobpersist import _codec

pytestmark = pytest.mark.usefixtures("backend")

FORMATS = ["plaintext", "pickled_v4"]
BIG = 3 * 1024 * 1024  # larger than any write buffer, so a temp file really holds data


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask() -> Any:
    """Sets a umask for the test, restoring the old one after."""
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(old)


# --------------------------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o000, 0o027], ids=oct)
@pytest.mark.parametrize("fmt", FORMATS)
def test_new_file_mode_follows_umask(
    job_env: JobEnv,
    umask: Any,
    mask: int,
    fmt: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    umask(mask)
    jobpersist.save_job_checkpoint({"a": 1}, "", fmt)
    jobpersist.save_job_result({"a": 1}, fmt)
    expected = 0o666 & ~mask
    assert mode_of(job_env.checkpoint_path) == expected
    assert mode_of(job_env.results_path) == expected
    # The same mode as the reference's plain open().
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(reference_dir))
    reference.save_job_checkpoint({"a": 1}, "", fmt)
    assert mode_of(reference_dir / "test-job.json") == expected


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604, 0o644, 0o666, 0o400], ids=oct)
@pytest.mark.parametrize("fmt", FORMATS)
def test_replaced_file_keeps_mode(job_env: JobEnv, umask: Any, mode: int, fmt: str) -> None:
    umask(0o022)
    jobpersist.save_job_checkpoint({"a": 1}, "", fmt)
    jobpersist.save_job_result({"a": 1}, fmt)
    job_env.checkpoint_path.chmod(mode)
    job_env.results_path.chmod(mode)
    jobpersist.save_job_checkpoint({"a": 2}, "", fmt)
    jobpersist.save_job_result({"b": 2})
    assert mode_of(job_env.checkpoint_path) == mode
    assert mode_of(job_env.results_path) == mode
    assert jobpersist.load_job_checkpoint(allow_pickle=True) == {"a": 2}
    assert jobpersist.load_job_result(allow_pickle=True) == {"a": 1, "b": 2}


# --------------------------------------------------------------------------------------------
# Failed saves
# --------------------------------------------------------------------------------------------
class Boom(Exception):
    pass


class ExplodesWhenPickled:
    def __reduce__(self) -> Any:
        raise Boom("no pickling me")


class InterruptsWhenPickled:
    def __reduce__(self) -> Any:
        raise KeyboardInterrupt


class ExplodesWhenConverted:
    """A dataclass-like object whose plaintext conversion fails half-way."""

    def __iter__(self) -> Any:
        raise Boom("no iterating me")


def unpicklable_local() -> Any:
    return lambda: 0


FAILING_SAVES: dict[str, tuple[str, dict[str, Any], type[BaseException]]] = {
    # name: (format, data, expected exception)
    "plaintext_object": ("plaintext", {"a": "x" * BIG, "b": object()}, TypeError),
    "plaintext_circular": ("plaintext", {"a": "x" * BIG, "b": None}, ValueError),
    "plaintext_bad_nested_key": ("plaintext", {"a": "x" * BIG, "b": {(1,): 1}}, TypeError),
    "pickled_lambda": ("pickled_v4", {"a": b"x" * BIG, "b": unpicklable_local()}, Exception),
    "pickled_raises": ("pickled_v4", {"a": b"x" * BIG, "b": ExplodesWhenPickled()}, Boom),
    "pickled_interrupt": (
        "pickled_v4",
        {"a": b"x" * BIG, "b": InterruptsWhenPickled()},
        KeyboardInterrupt,
    ),
    "pickled_later_value": (
        "pickled_v4",
        {"a": b"x" * BIG, "b": 1, "c": [1, ExplodesWhenPickled()]},
        Boom,
    ),
}


def _failing(name: str) -> tuple[str, dict[str, Any], type[BaseException]]:
    fmt, data, error = FAILING_SAVES[name]
    if name == "plaintext_circular":
        cyclic: list[Any] = []
        cyclic.append(cyclic)
        data = {**data, "b": cyclic}
    return fmt, data, error


@pytest.mark.parametrize("name", list(FAILING_SAVES))
def test_failed_checkpoint_leaves_old_file(job_env: JobEnv, name: str) -> None:
    fmt, data, error = _failing(name)
    jobpersist.save_job_checkpoint({"old": "value" * 1000}, "", fmt)
    before = snapshot(job_env.checkpoint_dir)
    with pytest.raises(error):
        jobpersist.save_job_checkpoint(data, "", fmt)
    assert snapshot(job_env.checkpoint_dir) == before
    assert temp_leftovers(job_env.checkpoint_dir) == []


@pytest.mark.parametrize("name", list(FAILING_SAVES))
def test_failed_result_leaves_old_file(job_env: JobEnv, name: str) -> None:
    fmt, data, error = _failing(name)
    jobpersist.save_job_result({"old": "value" * 1000}, fmt)
    before = snapshot(job_env.results_dir)
    with pytest.raises(error):
        jobpersist.save_job_result(data, fmt)
    assert snapshot(job_env.results_dir) == before
    assert temp_leftovers(job_env.results_dir) == []
    # The results are still usable.
    jobpersist.save_job_result({"new": 1})
    assert jobpersist.load_job_result(allow_pickle=True) == {"old": "value" * 1000, "new": 1}


def test_failed_first_save_leaves_nothing(job_env: JobEnv) -> None:
    with pytest.raises(TypeError):
        jobpersist.save_job_checkpoint({"a": "x" * BIG, "b": object()})
    with pytest.raises(TypeError):
        jobpersist.save_job_result({"a": "x" * BIG, "b": object()})
    assert list(job_env.checkpoint_dir.iterdir()) == []
    assert list(job_env.results_dir.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Temp files
# --------------------------------------------------------------------------------------------
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"someone else's file in progress")
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the parent closes our stdin
    """
)


@pytest.mark.parametrize("tmpfile", ["unnamed", "named"])
@pytest.mark.parametrize("which", ["checkpoint", "results"])
def test_stale_temps_removed_by_lock_not_by_pid(
    job_env: JobEnv, which: str, tmpfile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temp whose lock can be taken is a dead writer's, whatever pid its name carries
    (pids repeat when a job's container restarts); a live writer's locked temp is kept."""
    if tmpfile == "named":
        monkeypatch.setenv("JOBPERSIST_NO_TMPFILE", "1")
    target = job_env.checkpoint_path if which == "checkpoint" else job_env.results_path
    directory = target.parent
    dead = directory / f".{target.name}.jptmp.{dead_pid()}.0123456789abcdef"
    # Our own pid, as a restarted container's process often gets the dead one's.
    reused = directory / f".{target.name}.jptmp.{os.getpid()}.fedcba9876543210"
    odd = directory / f".{target.name}.jptmp.not-a-pid"
    for path in (dead, reused, odd):
        path.write_bytes(b"half a file")
    live = directory / f".{target.name}.jptmp.{os.getpid()}.1111111111111111"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(live)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        if which == "checkpoint":
            jobpersist.save_job_checkpoint({"a": 1})
            assert jobpersist.load_job_checkpoint() == {"a": 1}
        else:
            jobpersist.save_job_result({"a": 1})
            assert jobpersist.load_job_result() == {"a": 1}
        assert temp_leftovers(directory) == [live.name]
        assert live.read_bytes() == b"someone else's file in progress"
    finally:
        holder.communicate(input="", timeout=30)
    # The holder exited: its temp is now a dead writer's. A process looks for them once per
    # directory (a listing per save would cost more than a small save): the next save here
    # leaves it, the next process's first save removes it.
    if which == "checkpoint":
        jobpersist.save_job_checkpoint({"a": 2})
    else:
        jobpersist.save_job_result({"b": 2})
    assert temp_leftovers(directory) == [live.name]
    save = (
        "jobpersist.save_job_checkpoint({'a': 3})"
        if which == "checkpoint"
        else "jobpersist.save_job_result({'c': 3})"
    )
    subprocess.run(
        [sys.executable, "-c", f"import jobpersist; {save}"],
        env=child_env(_codec.BACKEND),
        check=True,
        timeout=120,
    )
    assert temp_leftovers(directory) == []


def test_a_failed_save_has_the_next_one_look_for_stale_temps(job_env: JobEnv) -> None:
    jobpersist.save_job_checkpoint({"a": 1})
    stale = job_env.checkpoint_dir / ".test-job.json.jptmp.1.0123456789abcdef"
    stale.write_bytes(b"half a file")
    jobpersist.save_job_checkpoint({"a": 2})
    assert stale.exists()  # looked once already
    with pytest.raises(TypeError):
        jobpersist.save_job_checkpoint({"a": object()})
    jobpersist.save_job_checkpoint({"a": 3})
    assert not stale.exists()
    assert jobpersist.load_job_checkpoint() == {"a": 3}


@pytest.mark.parametrize("tmpfile", ["unnamed", "named"])
def test_no_partial_file_under_any_name(
    job_env: JobEnv, backend: str, tmpfile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mid-save (while a value is being pickled, after megabytes were written), the directory
    holds only the old checkpoint with an unnamed temp; the named fallback shows its temp."""
    if tmpfile == "named":
        monkeypatch.setenv("JOBPERSIST_NO_TMPFILE", "1")
    jobpersist.save_job_checkpoint({"old": 1}, "", "pickled_v4")
    before = snapshot(job_env.checkpoint_dir)
    seen: list[list[str]] = []

    class Peek:
        def __reduce__(self) -> Any:
            seen.append(sorted(os.listdir(job_env.checkpoint_dir)))
            return (int, (7,))

    jobpersist.save_job_checkpoint({"a": b"x" * BIG, "b": Peek()}, "", "pickled_v4")
    assert before != snapshot(job_env.checkpoint_dir)
    assert jobpersist.load_job_checkpoint(allow_pickle=True) == {"a": b"x" * BIG, "b": 7}
    assert len(seen) == 1
    if tmpfile == "unnamed":
        assert seen[0] == [job_env.checkpoint_path.name]
    else:
        assert len(seen[0]) == 2 and temp_leftovers(job_env.checkpoint_dir) == []
        assert ".jptmp." in next(n for n in seen[0] if n != job_env.checkpoint_path.name)


# --------------------------------------------------------------------------------------------
# fsync
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_fsync_enabled_path_works(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch, backend: str, fmt: str
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    monkeypatch.setenv("JOBPERSIST_FSYNC", "1")
    jobpersist.save_job_checkpoint({"a": "x" * 100_000}, "", fmt)
    jobpersist.save_job_result({"a": 1}, fmt)
    jobpersist.save_job_result({"b": 2})
    assert jobpersist.load_job_checkpoint(allow_pickle=True) == {"a": "x" * 100_000}
    assert jobpersist.load_job_result(allow_pickle=True) == {"a": 1, "b": 2}
    if backend == "python":
        # The file and its directory, for each of the three saves.
        assert len(calls) >= 6
    calls.clear()
    monkeypatch.setenv("JOBPERSIST_FSYNC", "0")
    jobpersist.save_job_checkpoint({"a": 1}, "", fmt)
    assert calls == []


# --------------------------------------------------------------------------------------------
# RLIMIT_FSIZE: the write fails with EFBIG half-way
# --------------------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import errno, json, os, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    import jobpersist

    results = []
    for fmt in ("plaintext", "pickled_v4"):
        for which in ("checkpoint", "result"):
            if which == "checkpoint":
                jobpersist.save_job_checkpoint({"old": "small"}, "", fmt)
                target = os.environ["AMZN_BRAKET_CHECKPOINT_DIR"] + "/job.json"
                save = lambda: jobpersist.save_job_checkpoint({"new": big}, "", fmt)
            else:
                target = os.path.join(os.environ["AMZN_BRAKET_JOB_RESULTS_DIR"], "results.json")
                if os.path.exists(target):
                    os.unlink(target)
                jobpersist.save_job_result({"old": "small"}, fmt)
                save = lambda: jobpersist.save_job_result({"new": big}, fmt)
            big = "x" * 2_000_000 if fmt == "plaintext" else b"x" * 2_000_000
            old = open(target, "rb").read()
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (65536, hard))
            try:
                save()
            except OSError as exc:
                outcome = {"type": type(exc).__name__, "errno": exc.errno,
                           "filename": exc.filename}
            except BaseException as exc:
                outcome = {"type": type(exc).__name__, "message": str(exc)}
            else:
                outcome = {"type": None}
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            outcome.update(
                fmt=fmt, which=which, target=target, backend=jobpersist.BACKEND,
                intact=open(target, "rb").read() == old,
                leftovers=sorted(n for n in os.listdir(os.path.dirname(target))
                                 if ".jptmp." in n),
            )
            results.append(outcome)
    print(json.dumps(results))
    """
)


def test_efbig_leaves_old_file(tmp_path: Path, backend: str) -> None:
    checkpoints, results = tmp_path / "c", tmp_path / "r"
    checkpoints.mkdir()
    results.mkdir()
    env = child_env(
        backend,
        AMZN_BRAKET_CHECKPOINT_DIR=str(checkpoints),
        AMZN_BRAKET_JOB_RESULTS_DIR=str(results),
        AMZN_BRAKET_JOB_NAME="job",
    )
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    outcomes = json.loads(proc.stdout)
    assert len(outcomes) == 4
    for outcome in outcomes:
        assert outcome["backend"] == backend
        assert outcome["type"] in ("OSError",), outcome
        assert outcome["errno"] == errno.EFBIG, outcome
        assert outcome["filename"] == outcome["target"], outcome
        assert outcome["intact"], outcome
        assert outcome["leftovers"] == [], outcome


def test_a_named_temp_removed_before_its_lock_is_replaced(
    job_env: JobEnv, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another save's cleanup may take a named temp for a dead writer's between its creation
    and its lock: the writer notices and starts over under a new name (the native writer's
    counterpart is a cargo test, through the core's fault seam)."""
    if backend != "python":
        pytest.skip("the native writer is tested by cargo (atomic_file.rs)")
    import fcntl

    from jobpersist._codec.python import atomic_file as _atomic

    monkeypatch.setenv("JOBPERSIST_NO_TMPFILE", "1")
    removed: list[str] = []
    real_flock = fcntl.flock

    class RacingFcntl:
        def __getattr__(self, name: str) -> Any:
            return getattr(fcntl, name)

        def flock(self, fd: int, operation: int) -> None:
            if not removed and not operation & fcntl.LOCK_NB:
                removed.extend(temp_leftovers(job_env.checkpoint_dir))
                for name in removed:
                    (job_env.checkpoint_dir / name).unlink()
            real_flock(fd, operation)

    monkeypatch.setattr(_atomic, "fcntl", RacingFcntl())
    jobpersist.save_job_checkpoint({"a": 1})
    assert len(removed) == 1
    assert jobpersist.load_job_checkpoint() == {"a": 1}
    assert os.listdir(job_env.checkpoint_dir) == [job_env.checkpoint_path.name]
