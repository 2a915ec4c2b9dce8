"""Crash safety and concurrency, with real processes, in every durability mode.

* A child saves checkpoints in a loop and acknowledges each save on stdout once it returned;
  the parent SIGKILLs it at random moments. The checkpoint must then load whole, holding the
  last acknowledged sequence number or the one in flight: never a torn or partial file, even
  when deferred fsyncs and frees were still waiting.
* Kills proven to land mid-write: the child pauses inside a save once megabytes of it are
  written (a value's pickling or conversion blocks), and the parent checks the writer's temp
  holds them (the unnamed O_TMPFILE file through /proc/<pid>/fd, or the named fallback) and
  that the directory shows no partial file under any name before it kills the child.
* Several processes merge results concurrently: no key may be lost, and no lock file may
  remain among the results.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.files import temp_leftovers
from support.jobenv import child_env
from support.threads import run_threads

import jobpersist
from jobpersist._codec.python import atomic_file as _atomic

# SIGKILL loops, strace runs, fault sweeps: `make test-quick` leaves them out.
pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.slow]

TRIALS = 30

SAVER = textwrap.dedent(
    """
    import dataclasses, os, random, sys, time
    import jobpersist

    fmt, which, pause_at = sys.argv[1], sys.argv[2], int(sys.argv[3])


    class Pause:
        # Runs inside the save, after the blob before it was written: says so, then waits
        # for the parent's SIGKILL (pickled: __reduce__; plaintext: the dataclass's asdict).
        def wait(self):
            sys.stdout.write(f"mid {seq}\\n")
            sys.stdout.flush()
            time.sleep(60)
            raise SystemExit("not killed mid-write")

        def __reduce__(self):
            self.wait()

        def __deepcopy__(self, memo):
            self.wait()


    @dataclasses.dataclass
    class Holder:
        pause: object


    seq = 0
    while True:
        size = random.Random(seq).choice([0, 10, 1000, 50_000, 300_000])
        if seq == pause_at:
            size = 3 << 20  # more than any write buffer: the temp holds megabytes
        if fmt == "plaintext":
            blob = chr(ord("a") + seq % 26) * size
        else:
            blob = bytes([seq % 256]) * size
        data = {"seq": seq, "size": size, "blob": blob}
        if seq == pause_at:
            data["pause"] = Holder(Pause())
        if which == "checkpoint":
            jobpersist.save_job_checkpoint(data, "", fmt)
        else:
            jobpersist.save_job_result(data, fmt)
        sys.stdout.write(f"{seq}\\n")
        sys.stdout.flush()
        seq += 1
    """
)
PAUSE_AT = 2


def expected_blob(fmt: str, seq: int, size: int) -> object:
    if fmt == "plaintext":
        return chr(ord("a") + seq % 26) * size
    return bytes([seq % 256]) * size


def run_kill_trial(
    directory: Path, backend: str, fmt: str, which: str, delay: float, durability: str
) -> int:
    """Runs the saver, SIGKILLs it after ``delay`` seconds; the last acknowledged seq."""
    env = child_env(
        backend,
        AMZN_BRAKET_CHECKPOINT_DIR=str(directory),
        AMZN_BRAKET_JOB_RESULTS_DIR=str(directory),
        AMZN_BRAKET_JOB_NAME="job",
        JOBPERSIST_DURABILITY=durability,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", SAVER, fmt, which, "-1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first save returned: a checkpoint exists
        assert first.strip() == b"0", proc.stderr.read() if proc.stderr else b""
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acks = [int(line) for line in (first + rest).split(b"\n") if line.strip()]
    assert acks == list(range(len(acks))), "acknowledgements out of order"
    assert proc.returncode == -signal.SIGKILL
    return acks[-1]


@pytest.mark.parametrize("durability", ["full", "deferred", "none"])
@pytest.mark.parametrize("which", ["checkpoint", "result"])
@pytest.mark.parametrize("fmt", ["plaintext", "pickled_v4"])
def test_sigkill_during_saves(
    tmp_path: Path,
    backend: str,
    fmt: str,
    which: str,
    durability: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(f"{backend}-{fmt}-{which}-{durability}")
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "job")
    target = "job.json" if which == "checkpoint" else "results.json"
    trials = TRIALS // 2 if which == "checkpoint" else TRIALS // 4
    torn_writes = 0
    for trial in range(trials):
        for path in tmp_path.iterdir():
            path.unlink()
        delay = rng.uniform(0.0, 0.06)
        last_ack = run_kill_trial(tmp_path, backend, fmt, which, delay, durability)
        torn_writes += bool(temp_leftovers(tmp_path))
        if which == "checkpoint":
            loaded = jobpersist.load_job_checkpoint(allow_pickle=True)
        else:
            loaded = jobpersist.load_job_result(allow_pickle=True)
            assert set(loaded) == {"seq", "size", "blob"}
        seq = loaded["seq"]
        assert seq in (last_ack, last_ack + 1), (trial, seq, last_ack)
        assert loaded["blob"] == expected_blob(fmt, seq, loaded["size"]), trial
        # A temp file the killed writer left is removed by the next process's first save
        # there (this one's, as far as the scan goes: a process looks once per directory).
        _atomic.rescan(str(tmp_path))
        if which == "checkpoint":
            jobpersist.save_job_checkpoint({"after": trial}, "", fmt)
        else:
            jobpersist.save_job_result({"after": trial}, fmt)
        assert temp_leftovers(tmp_path) == []
        assert [p.name for p in tmp_path.iterdir()] == [target]
    # Random kills may all land between saves (the named fallback's leftovers show some
    # landed mid-write); the kills proven mid-write are test_sigkill_mid_write's.
    print(f"{torn_writes} of {trials} kills left a named temp")


def unnamed_temps_of(pid: int, directory: Path) -> list[int]:
    """Sizes of the unnamed files process ``pid`` has open in ``directory``."""
    sizes = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith(f"{directory}/#") and link.endswith("(deleted)"):
                sizes.append(os.stat(f"/proc/{pid}/fd/{fd}").st_size)
        except FileNotFoundError:
            continue
    return sizes


@pytest.mark.parametrize("durability", ["full", "deferred", "none"])
@pytest.mark.parametrize("tmpfile", ["unnamed", "named"])
@pytest.mark.parametrize("which", ["checkpoint", "result"])
@pytest.mark.parametrize("fmt", ["plaintext", "pickled_v4"])
def test_sigkill_mid_write(
    tmp_path: Path,
    backend: str,
    fmt: str,
    which: str,
    tmpfile: str,
    durability: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "job")
    target = "job.json" if which == "checkpoint" else "results.json"
    extra = {"JOBPERSIST_NO_TMPFILE": "1"} if tmpfile == "named" else {}
    env = child_env(
        backend,
        AMZN_BRAKET_CHECKPOINT_DIR=str(tmp_path),
        AMZN_BRAKET_JOB_RESULTS_DIR=str(tmp_path),
        AMZN_BRAKET_JOB_NAME="job",
        JOBPERSIST_DURABILITY=durability,
        **extra,
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", SAVER, fmt, which, str(PAUSE_AT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(PAUSE_AT + 1)]
        assert lines == [b"0\n", b"1\n", b"mid 2\n"], (lines, proc.stderr)
        # The writer is inside save 2, megabytes into it. The directory holds the complete
        # save 1 and, for the named fallback only, the temp being written.
        load = (
            jobpersist.load_job_checkpoint if which == "checkpoint" else jobpersist.load_job_result
        )
        assert load(allow_pickle=True)["seq"] == 1
        leftovers = temp_leftovers(tmp_path)
        if tmpfile == "named":
            assert len(leftovers) == 1
            written = (tmp_path / leftovers[0]).stat().st_size
        else:
            assert leftovers == [] and os.listdir(tmp_path) == [target]
            sizes = sorted(unnamed_temps_of(proc.pid, tmp_path))
            # The file being written, and maybe the (empty) spare made for the next save.
            assert sizes[:-1] in ([], [0]), sizes
            written = sizes[-1]
        assert written >= 1 << 20, written
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    loaded = load(allow_pickle=True)
    assert loaded["seq"] == 1 and loaded["blob"] == expected_blob(fmt, 1, loaded["size"])
    # An unnamed temp vanishes with its writer; a named one stays until the next process's
    # first save there (this one's, as far as the scan goes).
    assert len(temp_leftovers(tmp_path)) == (1 if tmpfile == "named" else 0)
    _atomic.rescan(str(tmp_path))
    if which == "checkpoint":
        jobpersist.save_job_checkpoint({"after": 1}, "", fmt)
    else:
        jobpersist.save_job_result({"after": 1}, fmt)
    assert os.listdir(tmp_path) == [target]


CONCURRENT = textwrap.dedent(
    """
    import os, sys, time
    import jobpersist

    worker, count, fmt, go = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    while not os.path.exists(go):
        time.sleep(0.001)
    for i in range(count):
        data = {f"w{worker}_k{i}": [worker, i]}
        jobpersist.save_job_result(data, None if fmt == "default" else fmt)
    """
)


@pytest.mark.parametrize("first_format", ["default", "pickled_v4"])
def test_concurrent_result_merges_lose_nothing(
    tmp_path: Path, backend: str, first_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers, count = 4, 25
    results = tmp_path / "results"
    results.mkdir()
    go = tmp_path / "go"
    env = child_env(backend, AMZN_BRAKET_JOB_RESULTS_DIR=str(results), JOBPERSIST_FSYNC="0")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CONCURRENT,
                str(w),
                str(count),
                first_format if w == 0 else "default",
                str(go),
            ],
            env=env,
            stderr=subprocess.PIPE,
        )
        for w in range(workers)
    ]
    time.sleep(0.3)  # let every worker import jobpersist and wait
    go.touch()
    errors = []
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        if proc.returncode != 0:
            errors.append(stderr.decode())
    assert not errors, errors
    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(results))
    loaded = jobpersist.load_job_result(allow_pickle=True)
    expected = {f"w{w}_k{i}": [w, i] for w in range(workers) for i in range(count)}
    assert len(loaded) == len(expected)
    assert loaded == expected
    assert os.listdir(results) == ["results.json"]


def test_threads_merging_results_lose_nothing(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(tmp_path))
    threads, count = 6, 20

    def work(worker: int) -> None:
        for i in range(count):
            fmt = "pickled_v4" if worker == 0 and i == 0 else None
            jobpersist.save_job_result({f"t{worker}_k{i}": [worker, i]}, fmt)

    run_threads(work, threads)
    loaded = jobpersist.load_job_result(allow_pickle=True)
    assert loaded == {f"t{w}_k{i}": [w, i] for w in range(threads) for i in range(count)}
    assert os.listdir(tmp_path) == ["results.json"]
