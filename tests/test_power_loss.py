"""Power-loss ordering, from the system calls a save makes (recorded with ``strace -f -y``).

A save is durable only if its file's data reach the disk before the file gets the target's
name, and the rename reaches the disk after that: every write to the new file comes before its
fsync, the fsync before the file is named (``linkat``) and renamed over the target, and the
directory is fsynced after the rename. With ``JOBPERSIST_FSYNC=0`` the same calls happen minus
the fsyncs. A failed fsync (injected by strace) fails the save; it is never retried.

strace is a Debian package (.ci/run installs it): the tests skip without it, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.jobenv import child_env

# SIGKILL loops, strace runs, fault sweeps: `make test-quick` leaves them out.
pytestmark = [pytest.mark.usefixtures("backend"), pytest.mark.slow]

SYSCALLS = (
    "openat,open,creat,write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,sync_file_range,"
    "linkat,link,rename,renameat,renameat2,close,flock,access,faccessat,faccessat2,"
    "unlink,unlinkat,fchmod,ftruncate"
)
MARK = "/jobpersist-strace-mark"

CHILD = textwrap.dedent(
    """
    import json, os, sys
    import jobpersist

    jobpersist.save_job_checkpoint({"old": 1}, "", "pickled_v4")
    os.access(sys.argv[1], os.F_OK)  # marks where the save under test starts
    try:
        jobpersist.save_job_checkpoint(
            {"blob": bytes(range(256)) * 12000, "n": 2}, "", "pickled_v4"
        )
    except OSError as exc:
        outcome = {"errno": exc.errno, "filename": exc.filename}
    else:
        outcome = {"errno": None}
    os.access(sys.argv[1] + "-end", os.F_OK)
    outcome["loaded"] = sorted(jobpersist.load_job_checkpoint(allow_pickle=True))
    outcome["listing"] = sorted(os.listdir(os.environ["AMZN_BRAKET_CHECKPOINT_DIR"]))
    print(json.dumps(outcome))
    """
)

# `1234  name(args) = result`, after strace joined any unfinished/resumed pair.
LINE = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(\w+)\((.*)\)\s+=\s+(-?\d+)(?:<[^>]*>)?(.*)$")


def strace_or_skip() -> str:
    path = shutil.which("strace")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("strace is missing under CI=true: .ci/run installs it (apt-get)")
        pytest.skip("strace is not installed (apt-get install strace)")
    return path


def record(
    tmp_path: Path, backend: str, fsync: bool, tmpfile: str, inject: str | None = None
) -> tuple[list[tuple[str, str, int]], dict[str, object], Path]:
    """Runs the child under strace; the calls of the marked save, and the child's outcome."""
    strace = strace_or_skip()
    checkpoints = tmp_path / f"ckpt-{fsync}-{tmpfile}-{inject is not None}"
    checkpoints.mkdir()
    log = tmp_path / f"strace-{fsync}-{tmpfile}-{inject is not None}.log"
    env = child_env(
        backend,
        AMZN_BRAKET_CHECKPOINT_DIR=str(checkpoints),
        AMZN_BRAKET_JOB_NAME="job",
        JOBPERSIST_FSYNC="1" if fsync else "0",
    )
    if tmpfile == "named":
        env["JOBPERSIST_NO_TMPFILE"] = "1"
    else:
        env.pop("JOBPERSIST_NO_TMPFILE", None)
    command = [strace, "-f", "-y", "-qq", "-s", "256", "-e", f"trace={SYSCALLS}", "-o", str(log)]
    if inject:
        command += ["-e", inject]
    proc = subprocess.run(
        [*command, sys.executable, "-c", CHILD, MARK],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    calls: list[tuple[str, str, int]] = []
    inside = False
    pending: dict[str, str] = {}
    for raw in log.read_text().splitlines():
        # -f interleaves threads: join "<unfinished ...>" with its "<... resumed>".
        head = raw.split(" ", 1)
        if raw.endswith("<unfinished ...>"):
            pending[head[0]] = raw[: -len("<unfinished ...>")].rstrip()
            continue
        resumed = re.match(r"^(\d+)\s+<\.\.\. \w+ resumed>(.*)$", raw)
        if resumed:
            raw = pending.pop(resumed.group(1), "") + resumed.group(2)
        match = LINE.match(raw)
        if not match:
            continue
        _, name, args, result, _ = match.groups()
        if MARK in args:
            inside = not args.startswith(f'"{MARK}-end') and f"{MARK}-end" not in args
            continue
        if inside and str(checkpoints) in args:
            calls.append((name, args, int(result)))
    return calls, outcome, checkpoints


def fd_of(args: str) -> str:
    """The descriptor a call's first argument names, with strace -y's path: ``5</d/x>``."""
    return args.split(",", 1)[0].strip()


def analyse(calls: list[tuple[str, str, int]], checkpoints: Path, tmpfile: str) -> list[str]:
    """Checks the order; returns the calls in a normalised form (no fd numbers or names)."""
    target = str(checkpoints / "job.json")
    file_fd = dir_fd = None
    events: list[str] = []
    for name, args, result in calls:
        if name in ("openat", "open"):
            if "O_TMPFILE" in args or ("O_CREAT" in args and ".jptmp." in args):
                assert file_fd is None, "two files created"
                file_fd = str(result)
                events.append("create_unnamed" if "O_TMPFILE" in args else "create_named")
            elif "O_DIRECTORY" in args and result >= 0 and dir_fd is None:
                dir_fd = str(result)
                events.append("open_dir")
            else:
                events.append("open_other")
            continue
        fd = fd_of(args)
        number = fd.split("<", 1)[0]
        if name in ("write", "pwrite64", "writev", "pwritev", "pwritev2"):
            assert number == file_fd, f"write to another file: {args[:120]}"
            events.append("write")
        elif name in ("fsync", "fdatasync"):
            if number == file_fd:
                events.append("fsync_file")
            elif number == dir_fd:
                events.append("fsync_dir")
            else:
                raise AssertionError(f"fsync of an unexpected descriptor: {args[:160]}")
        elif name in ("linkat", "link"):
            assert f"/proc/self/fd/{file_fd}" in args, args
            events.append("link")
        elif name.startswith("rename"):
            events.append("rename" if '"job.json"' in args or f'"{target}"' in args else name)
        elif name == "close":
            if number == file_fd:
                events.append("close_file")
            elif number == dir_fd:
                events.append("close_dir")
        elif name == "flock":
            events.append("lock_file" if number == file_fd else "lock_other")
        elif name in ("unlink", "unlinkat"):
            events.append("unlink")
        elif name == "fchmod":
            events.append("chmod")
    assert file_fd is not None, "no temp file created"
    assert ("create_unnamed" in events) == (tmpfile == "unnamed"), events
    return events


@pytest.mark.parametrize("tmpfile", ["unnamed", "named"])
def test_data_and_file_are_synced_before_the_name_the_directory_after(
    tmp_path: Path, backend: str, tmpfile: str
) -> None:
    by_fsync = {}
    for fsync in (True, False):
        calls, outcome, checkpoints = record(tmp_path, backend, fsync, tmpfile)
        assert outcome == {"errno": None, "loaded": ["blob", "n"], "listing": ["job.json"]}
        events = analyse(calls, checkpoints, tmpfile)
        by_fsync[fsync] = events
        writes = [i for i, e in enumerate(events) if e == "write"]
        assert len(writes) >= 2, events  # megabytes: several writes
        rename = events.index("rename")
        assert events.count("rename") == 1
        assert events.index("lock_file") < writes[0], events
        if tmpfile == "unnamed":
            # Nothing is named until the data are complete (and synced).
            assert writes[-1] < events.index("link") < rename, events
        if fsync:
            fsync_file = events.index("fsync_file")
            assert events.count("fsync_file") == 1 and events.count("fsync_dir") == 1, events
            assert writes[-1] < fsync_file, events
            if tmpfile == "unnamed":
                assert fsync_file < events.index("link"), events
            assert fsync_file < rename < events.index("fsync_dir"), events
        else:
            assert "fsync_file" not in events and "fsync_dir" not in events, events
    # JOBPERSIST_FSYNC=0 skips the fsyncs and nothing else.
    assert [e for e in by_fsync[True] if not e.startswith("fsync")] == by_fsync[False]


@pytest.mark.parametrize("tmpfile", ["unnamed", "named"])
def test_a_failed_fsync_fails_the_save_and_is_not_retried(
    tmp_path: Path, backend: str, tmpfile: str
) -> None:
    calls, outcome, checkpoints = record(
        # The first save of the child makes fsyncs 1 and 2 (file, directory).
        tmp_path,
        backend,
        True,
        tmpfile,
        inject="inject=fsync:error=EIO:when=3",
    )
    assert outcome["errno"] == 5, outcome
    assert outcome["filename"] == str(checkpoints / "job.json")
    assert outcome["loaded"] == ["old"]  # the old checkpoint is intact
    assert outcome["listing"] == ["job.json"]  # no temp left
    events = analyse(calls, checkpoints, tmpfile)
    assert events.count("fsync_file") == 1, events  # tried once, never again
    after = events[events.index("fsync_file") + 1 :]
    assert not {"write", "link", "rename", "fsync_dir"} & set(after), events
