"""Spare unnamed files (``spare_files``): a save that replaces a file has the next one's file
made in the background, and the next save there writes into it. Both backends.

The spare a save used is recognised by its inode: the new checkpoint has the spare's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.files import temp_leftovers
from support.jobenv import JobEnv
from support.spares import set_spares, spare_count, unnamed_inodes, wait_for_spare_in

import jobpersist


@pytest.fixture(autouse=True)
def spares_on(request: pytest.FixtureRequest) -> Iterator[None]:
    """Spares after every replacing save, for the test (in the backend it runs in this
    process, if any); those it left closed after it."""
    if "backend" not in request.fixturenames:
        yield
        return
    backend = request.getfixturevalue("backend")
    set_spares(backend, "off")  # none left by an earlier test
    set_spares(backend, "always")
    yield
    set_spares(backend, "off")  # closes what the test left
    set_spares(backend, "where slow")


def test_the_next_save_writes_into_the_spare(job_env: JobEnv, backend: str) -> None:
    jobpersist.save_job_checkpoint({"n": 0})
    assert unnamed_inodes(job_env.checkpoint_dir) == set()
    for n in range(1, 6):
        jobpersist.save_job_checkpoint({"n": n})  # replaces a file: wants a spare
        spare = wait_for_spare_in(job_env.checkpoint_dir, backend)
        jobpersist.save_job_checkpoint({"n": n, "step": "spare"})
        assert job_env.checkpoint_path.stat().st_ino == spare
        assert jobpersist.load_job_checkpoint() == {"n": n, "step": "spare"}
    assert temp_leftovers(job_env.checkpoint_dir) == []


def test_a_first_save_makes_no_spare(job_env: JobEnv, backend: str) -> None:
    # Only a save replacing a file wants one: a job that saves once leaves no file open. (A
    # spare wanted wrongly would be there within milliseconds; the thread may still be making
    # one for an earlier test's directory, so only this directory is looked at.)
    jobpersist.save_job_checkpoint({"n": 0}, "once")
    jobpersist.wait_for_saves()
    time.sleep(0.1)
    assert unnamed_inodes(job_env.checkpoint_dir) == set()


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o664])
def test_the_spare_takes_the_replaced_files_mode(job_env: JobEnv, backend: str, mode: int) -> None:
    jobpersist.save_job_checkpoint({"n": 0})
    jobpersist.save_job_checkpoint({"n": 1})
    job_env.checkpoint_path.chmod(mode)
    wait_for_spare_in(job_env.checkpoint_dir, backend)
    jobpersist.save_job_checkpoint({"n": 2})
    assert job_env.checkpoint_path.stat().st_mode & 0o7777 == mode


def test_a_spare_serves_only_its_directory(job_env: JobEnv, backend: str, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    jobpersist.save_job_checkpoint({"n": 0})
    jobpersist.save_job_checkpoint({"n": 1})
    spare = wait_for_spare_in(job_env.checkpoint_dir, backend)
    (other / f"{job_env.job_name}.json").write_text("{}")  # replaced: wants a spare there
    os.environ["AMZN_BRAKET_CHECKPOINT_DIR"] = str(other)
    try:
        jobpersist.save_job_checkpoint({"n": 2}, "")
    finally:
        os.environ["AMZN_BRAKET_CHECKPOINT_DIR"] = str(job_env.checkpoint_dir)
    assert unnamed_inodes(job_env.checkpoint_dir) == {spare}


def test_spares_off_every_save_makes_its_own_file(job_env: JobEnv, backend: str) -> None:
    set_spares(backend, "off")
    for n in range(5):
        jobpersist.save_job_checkpoint({"n": n})
    jobpersist.wait_for_saves()
    assert spare_count(backend) == 0
    assert unnamed_inodes(job_env.checkpoint_dir) == set()


def test_threads_saving_side_by_side_never_share_a_spare(job_env: JobEnv, backend: str) -> None:
    errors: list[BaseException] = []

    def saves(name: str) -> None:
        try:
            for n in range(40):
                jobpersist.save_job_checkpoint({"thread": name, "n": n}, name)
                assert jobpersist.load_job_checkpoint(job_env.job_name, name) == {
                    "thread": name,
                    "n": n,
                }
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=saves, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert temp_leftovers(job_env.checkpoint_dir) == []


FORK_CHILD = r"""
import os, sys
sys.path[:0] = sys.argv[3:]
os.environ["JOBPERSIST_BACKEND"] = sys.argv[1]
import jobpersist
from support.spares import set_spares, wait_for_spare_in
set_spares(sys.argv[1], "always")
from pathlib import Path
directory = Path(os.environ["AMZN_BRAKET_CHECKPOINT_DIR"])
jobpersist.save_job_checkpoint({"who": "parent", "n": 0})
jobpersist.save_job_checkpoint({"who": "parent", "n": 1})
spare = wait_for_spare_in(directory, sys.argv[1])
pid = os.fork()
if pid == 0:
    # The child replaces the same file and another: never through its parent's spare.
    jobpersist.save_job_checkpoint({"who": "child"}, "child")
    jobpersist.save_job_checkpoint({"who": "child", "n": 1}, "child")
    jobpersist.save_job_checkpoint({"who": "child"})
    ok = all(
        (directory / name).stat().st_ino != spare for name in ("job_child.json", "job.json")
    )
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, status
assert jobpersist.load_job_checkpoint() == {"who": "child"}
jobpersist.save_job_checkpoint({"who": "parent", "n": 2})
assert (directory / "job.json").stat().st_ino == spare
assert jobpersist.load_job_checkpoint("job", "child") == {"who": "child", "n": 1}
assert jobpersist.load_job_checkpoint() == {"who": "parent", "n": 2}
print("ok")
"""


def test_a_forked_child_never_writes_into_its_parents_spare(
    job_env: JobEnv, backend_name: str
) -> None:
    # In a child process of its own: fork() beside the spares' thread.
    env = dict(os.environ, AMZN_BRAKET_JOB_NAME="job")
    tests = str(Path(__file__).parent)
    command = [sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORK_CHILD]
    proc = subprocess.run(
        [*command, backend_name, "-", tests],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


KILLED_CHILD = r"""
import os, sys
sys.path[:0] = sys.argv[2:]
os.environ["JOBPERSIST_BACKEND"] = sys.argv[1]
import jobpersist
from support.spares import set_spares, wait_for_spares
set_spares(sys.argv[1], "always")
for n in range(3):
    jobpersist.save_job_checkpoint({"n": n})
wait_for_spares(sys.argv[1])
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_killed_process_leaves_no_spare_behind(job_env: JobEnv, backend_name: str) -> None:
    tests = str(Path(__file__).parent)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, backend_name, tests],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert sorted(p.name for p in job_env.checkpoint_dir.iterdir()) == [
        job_env.checkpoint_path.name
    ]
    assert jobpersist.load_job_checkpoint() == {"n": 2}


def test_where_creating_is_fast_no_spare_is_kept(
    job_env: JobEnv, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tmpfs creates a file in microseconds: a spare would cost more than it saves. (A
    # creation slowed past SLOW_CREATE_NS by preemption may make one; the next fast one
    # ends it.)
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        pytest.skip("no writable /dev/shm")
    set_spares(backend, "where slow")
    directory = Path(tempfile.mkdtemp(dir=shm))
    try:
        monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(directory))
        for n in range(30):
            jobpersist.save_job_checkpoint({"n": n})
        time.sleep(0.05)
        assert unnamed_inodes(directory) == set()
    finally:
        shutil.rmtree(directory)
