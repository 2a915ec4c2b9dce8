"""Checkpoint history under SIGKILL, with real processes: killed at random moments of a save
loop (saves, retention), killed mid-write, and killed in the middle of a retention pass. Each
time, ``restore()`` in a fresh process returns the newest complete step: the last one whose
save returned, or the one in flight if it completed; and every file left loads."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.jobenv import child_env

from jobpersist.checkpoints import list_checkpoints, load_checkpoint

pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.slow]

JOB = "job"
TRIALS = 8

SAVER = textwrap.dedent(
    """
    import os, sys, threading, time
    from jobpersist import CheckpointManager

    fmt, pause, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
    keep_last = None if pause == "retention" else 2


    class Pause:
        # Pickled inside the save of step 3: says so, then waits for the parent's SIGKILL.
        def __reduce__(self):
            sys.stdout.write("mid 3\\n")
            sys.stdout.flush()
            time.sleep(60)
            raise SystemExit("not killed mid-write")


    if pause == "retention":
        # A manager that keeps everything wrote steps 0..start-1; this one keeps 1, so its
        # first retention pass deletes several files: it is killed after the first unlink.
        real_unlink = os.unlink

        def unlink(path, *args, **kwargs):
            real_unlink(path, *args, **kwargs)
            if threading.current_thread().name == "jobpersist-retention":
                sys.stdout.write(f"deleted {os.path.basename(path)}\\n")
                sys.stdout.flush()
                time.sleep(60)

        os.unlink = unlink
        keep_last = 1
    ckpt = CheckpointManager(keep_last=keep_last, keep_best=1, metric="cost", data_format=fmt)
    step = start
    while True:
        size = [10, 1000, 200_000][step % 3]
        data = {"step": step, "cost": 100.0 - step, "blob": "x" * size}
        if pause == "write" and step == 3:
            data = {"step": step, "cost": 0.0, "blob": "x" * (3 << 20), "pause": Pause()}
        ckpt.save(step, data)
        sys.stdout.write(f"{step}\\n")
        sys.stdout.flush()
        step += 1
    """
)


def start_saver(
    directory: Path, backend: str, fmt: str, pause: str, start: int = 0
) -> subprocess.Popen[bytes]:
    env = child_env(backend, AMZN_BRAKET_CHECKPOINT_DIR=str(directory), AMZN_BRAKET_JOB_NAME=JOB)
    return subprocess.Popen(
        [sys.executable, "-c", SAVER, fmt, pause, str(start)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill(proc: subprocess.Popen[bytes]) -> bytes:
    proc.send_signal(signal.SIGKILL)
    assert proc.stdout is not None
    rest = proc.stdout.read()
    proc.wait(timeout=30)
    return rest


def restore_in_a_fresh_process(directory: Path, backend: str) -> tuple[int, int, str]:
    """(step restored, step in its data, file) from a new process, as a restarted job would."""
    script = textwrap.dedent(
        """
        import warnings
        from jobpersist import CheckpointManager
        warnings.simplefilter("error")  # a skipped file would be a damaged one: none may be
        ckpt = CheckpointManager(data_format="pickled_v4")
        found = ckpt.restore(allow_pickle="safe")
        print(found[0], found[1]["step"], ckpt.restored.name)
        """
    )
    env = child_env(backend, AMZN_BRAKET_CHECKPOINT_DIR=str(directory), AMZN_BRAKET_JOB_NAME=JOB)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    step, data_step, name = out.stdout.split()
    return int(step), int(data_step), name


def every_file_loads(directory: Path) -> list[int]:
    steps = []
    for checkpoint in list_checkpoints(str(directory)):
        data = load_checkpoint(checkpoint, allow_pickle="safe")
        assert data["step"] == checkpoint.step
        steps.append(checkpoint.step)
    return steps


@pytest.mark.parametrize("fmt", ["plaintext", "pickled_v4"])
def test_killed_at_random_moments_restore_returns_the_newest_complete_step(
    tmp_path: Path, backend: str, fmt: str
) -> None:
    rng = random.Random(f"{backend}-{fmt}")
    for trial in range(TRIALS):
        directory = tmp_path / f"trial{trial}"
        directory.mkdir()
        proc = start_saver(directory, backend, fmt, "none")
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.strip() == b"0", proc.stderr.read() if proc.stderr else b""
            time.sleep(rng.uniform(0.0, 0.4))
            rest = kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        acked = max(int(line) for line in (first + rest).split(b"\n") if line.strip())
        step, data_step, _ = restore_in_a_fresh_process(directory, backend)
        assert step == data_step
        assert step in (acked, acked + 1), (step, acked)
        left = every_file_loads(directory)
        assert max(left) == step


def test_killed_mid_write_restore_returns_the_step_before(tmp_path: Path, backend: str) -> None:
    proc = start_saver(tmp_path, backend, "pickled_v4", "write")
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(4)]
        assert lines == [b"0", b"1", b"2", b"mid 3"], proc.stderr.read() if proc.stderr else b""
        kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    step, data_step, _ = restore_in_a_fresh_process(tmp_path, backend)
    assert (step, data_step) == (2, 2)
    left = every_file_loads(tmp_path)
    assert left[-2:] == [1, 2] and set(left) <= {0, 1, 2}  # step 0 unless its pass ran


def test_killed_during_a_retention_delete_restore_returns_the_newest_step(
    tmp_path: Path, backend: str
) -> None:
    # Steps 0..4 from a manager that keeps every checkpoint.
    env = child_env(backend, AMZN_BRAKET_CHECKPOINT_DIR=str(tmp_path), AMZN_BRAKET_JOB_NAME=JOB)
    setup = (
        "from jobpersist import CheckpointManager\n"
        "c = CheckpointManager(metric='cost', data_format='pickled_v4')\n"
        "for s in range(5): c.save(s, {'step': s, 'cost': 100.0 - s})\n"
        "c.wait()\n"
    )
    subprocess.run([sys.executable, "-c", setup], env=env, check=True)
    assert every_file_loads(tmp_path) == [0, 1, 2, 3, 4]
    proc = start_saver(tmp_path, backend, "pickled_v4", "retention", start=5)
    try:
        assert proc.stdout is not None
        lines: list[bytes] = []
        while not lines or not lines[-1].startswith(b"deleted"):
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else b""
            lines.append(line.strip())
        rest = kill(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    acked = [int(x) for x in [*lines[:-1], *rest.split(b"\n")] if x.strip().isdigit()]
    assert lines[-1] == f"deleted {JOB}_ckpt-000000000_cost_100.0.json".encode()
    step, data_step, _ = restore_in_a_fresh_process(tmp_path, backend)
    assert step == data_step
    assert step in (max(acked), max(acked) + 1)  # the last save returned, or the next one
    left = every_file_loads(tmp_path)
    assert 0 not in left and left[-1] == step
    assert len(left) >= 2  # the pass was cut short: older files remain, none half-deleted
