"""Crash safety and concurrency, with real processes.

* A child saves checkpoints in a loop and acknowledges each save on stdout once it returned;
  the parent SIGKILLs it at random moments. The checkpoint must then load whole, holding the
  last acknowledged sequence number or the one in flight.
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
from conftest import child_env, temp_leftovers

import jobpersist

pytestmark = pytest.mark.usefixtures("backend")

TRIALS = 30

SAVER = textwrap.dedent(
    """
    import os, random, sys
    import jobpersist

    fmt, which = sys.argv[1], sys.argv[2]
    seq = 0
    while True:
        size = random.Random(seq).choice([0, 10, 1000, 50_000, 300_000])
        if fmt == "plaintext":
            blob = chr(ord("a") + seq % 26) * size
        else:
            blob = bytes([seq % 256]) * size
        data = {"seq": seq, "size": size, "blob": blob}
        if which == "checkpoint":
            jobpersist.save_job_checkpoint(data, "", fmt)
        else:
            jobpersist.save_job_result(data, fmt)
        sys.stdout.write(f"{seq}\\n")
        sys.stdout.flush()
        seq += 1
    """
)


def expected_blob(fmt: str, seq: int, size: int) -> object:
    if fmt == "plaintext":
        return chr(ord("a") + seq % 26) * size
    return bytes([seq % 256]) * size


def run_kill_trial(directory: Path, backend: str, fmt: str, which: str, delay: float) -> int:
    """Runs the saver, SIGKILLs it after ``delay`` seconds; the last acknowledged seq."""
    env = child_env(
        backend,
        AMZN_BRAKET_CHECKPOINT_DIR=str(directory),
        AMZN_BRAKET_JOB_RESULTS_DIR=str(directory),
        AMZN_BRAKET_JOB_NAME="job",
        JOBPERSIST_FSYNC="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", SAVER, fmt, which],
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


@pytest.mark.parametrize("which", ["checkpoint", "result"])
@pytest.mark.parametrize("fmt", ["plaintext", "pickled_v4"])
def test_sigkill_during_saves(
    tmp_path: Path, backend: str, fmt: str, which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(f"{backend}-{fmt}-{which}")
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "job")
    target = "job.json" if which == "checkpoint" else "results.json"
    trials = TRIALS // 2 if which == "checkpoint" else TRIALS // 4
    kills_mid_run = torn_writes = 0
    for trial in range(trials):
        for path in tmp_path.iterdir():
            path.unlink()
        delay = rng.uniform(0.0, 0.06)
        last_ack = run_kill_trial(tmp_path, backend, fmt, which, delay)
        torn_writes += bool(temp_leftovers(tmp_path))
        if which == "checkpoint":
            loaded = jobpersist.load_job_checkpoint(allow_pickle=True)
        else:
            loaded = jobpersist.load_job_result(allow_pickle=True)
            assert set(loaded) == {"seq", "size", "blob"}
        seq = loaded["seq"]
        assert seq in (last_ack, last_ack + 1), (trial, seq, last_ack)
        assert loaded["blob"] == expected_blob(fmt, seq, loaded["size"]), trial
        kills_mid_run += seq == last_ack + 1 or last_ack > 0
        # A temp file the killed writer left is removed by the next save.
        if which == "checkpoint":
            jobpersist.save_job_checkpoint({"after": trial}, "", fmt)
        else:
            jobpersist.save_job_result({"after": trial}, fmt)
        assert temp_leftovers(tmp_path) == []
        assert [p.name for p in tmp_path.iterdir()] == [target]
    assert kills_mid_run > 0, "no kill landed after the first save: the test tested nothing"
    print(f"{torn_writes} of {trials} kills interrupted a write")


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
    import threading

    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(tmp_path))
    threads, count = 6, 20
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(worker: int) -> None:
        try:
            start.wait()
            for i in range(count):
                fmt = "pickled_v4" if worker == 0 and i == 0 else None
                jobpersist.save_job_result({f"t{worker}_k{i}": [worker, i]}, fmt)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert not errors, errors
    loaded = jobpersist.load_job_result(allow_pickle=True)
    assert loaded == {f"t{w}_k{i}": [w, i] for w in range(threads) for i in range(count)}
    assert os.listdir(tmp_path) == ["results.json"]
