"""Power-loss ordering, from the system calls a save makes (recorded with ``strace -f -y``),
in each durability mode.

``full``: a save is durable only if its file's data reach the disk before the file gets the
target's name, and the rename reaches the disk after that: every write to the new file comes
before its fsync, the fsync before the file is named (``linkat``) and renamed over the target,
and the directory is fsynced after the rename. A failed fsync (injected by strace) fails the
save; it is never retried.

``none``: the same calls minus the fsyncs (and with the replaced file kept open across the
rename, to be freed off the caller's path); no fsync at all, in any thread.

``deferred``: the save itself makes no fsync; every file it renamed into place, and the
directory, are fsynced after the rename, all of them before ``wait_for_saves()`` returns, or
before the process ends when nothing waited. A failed deferred fsync reaches
``wait_for_saves()``.

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
from support.files import in_memory, keeps_replaced_files
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
    import jobpersist.background

    jobpersist.save_job_checkpoint({"old": 1}, "", "pickled_v4")
    if os.environ.get("TAKE_SPARE") == "1":
        # A second save replaces the first: the save under test takes the spare it wanted.
        import time
        from jobpersist import _codec

        if _codec.BACKEND == "native":
            from jobpersist._native import _set_spares as policy, _spare_count as spares
        else:
            from jobpersist._codec.python.spare_files import count as spares, set_policy as policy
        policy("always")
        jobpersist.save_job_checkpoint({"old": 1}, "", "pickled_v4")
        while spares() < 1:
            time.sleep(0.002)
    jobpersist.background.wait_for_saves()  # the first saves' deferred syncs, if any
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
    tmp_path: Path, backend: str, mode: str, tmpfile: str, inject: str | None = None
) -> tuple[list[tuple[str, str, int]], dict[str, object], Path]:
    """Runs the child under strace; the calls of the marked save, and the child's outcome."""
    calls, outcome, checkpoints = run_traced(tmp_path, backend, mode, tmpfile, CHILD, inject)
    return (
        [(name, args, result) for phase, name, args, result in calls if phase == 1],
        (outcome),
        checkpoints,
    )


def run_traced(
    tmp_path: Path, backend: str, mode: str, tmpfile: str, child: str, inject: str | None = None
) -> tuple[list[tuple[int, str, str, int]], dict[str, object], Path]:
    """Runs ``child`` under strace in durability ``mode``; every call (of any thread) on the
    checkpoint directory or its files, each with its phase (0 before the first mark, then one
    more at each mark), and the child's outcome (its last line of output)."""
    strace = strace_or_skip()
    checkpoints = tmp_path / f"ckpt-{mode}-{tmpfile}-{inject is not None}"
    checkpoints.mkdir()
    log = tmp_path / f"strace-{mode}-{tmpfile}-{inject is not None}.log"
    env = child_env(
        backend,
        AMZN_BRAKET_CHECKPOINT_DIR=str(checkpoints),
        AMZN_BRAKET_JOB_NAME="job",
        JOBPERSIST_DURABILITY=mode,
    )
    if tmpfile == "named":
        env["JOBPERSIST_NO_TMPFILE"] = "1"
    else:
        env.pop("JOBPERSIST_NO_TMPFILE", None)
    env["TAKE_SPARE"] = "1" if tmpfile == "spare" else "0"
    command = [strace, "-f", "-y", "-qq", "-s", "256", "-e", f"trace={SYSCALLS}", "-o", str(log)]
    if inject:
        command += ["-e", inject]
    proc = subprocess.run(
        [*command, sys.executable, "-c", child, MARK],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    calls: list[tuple[int, str, str, int]] = []
    phase = 0
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
            phase += 1
            continue
        if str(checkpoints) in args:
            calls.append((phase, name, args, int(result)))
    return calls, outcome, checkpoints


def fd_of(args: str) -> str:
    """The descriptor a call's first argument names, with strace -y's path: ``5</d/x>``."""
    return args.split(",", 1)[0].strip()


def analyse(calls: list[tuple[str, str, int]], checkpoints: Path, tmpfile: str) -> list[str]:
    """Checks the order; returns the calls in a normalised form (no fd numbers or names).

    The save's file is the one it locks: one it created (``create_unnamed``,
    ``create_named``) or the spare made before the save (``take_spare``: strace -y shows an
    unnamed file as ``{directory}/#{inode} (deleted)``). The spare for the next save, which a
    thread may create meanwhile, is never locked, written or named by this save."""
    target = str(checkpoints / "job.json")
    file_fd = dir_fd = None
    created: dict[str, str] = {}  # descriptor -> how it was created
    events: list[str] = []
    for name, args, result in calls:
        if name in ("openat", "open"):
            if "O_PATH" in args:
                events.append("keep_replaced")
            elif "O_TMPFILE" in args or ("O_CREAT" in args and ".jptmp." in args):
                created[str(result)] = "create_unnamed" if "O_TMPFILE" in args else "create_named"
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
            # The temp itself (AT_EMPTY_PATH) or its /proc entry.
            assert f"/proc/self/fd/{file_fd}" in args or (
                number == file_fd and "AT_EMPTY_PATH" in args
            ), args
            events.append("link")
        elif name.startswith("rename"):
            events.append("rename" if '"job.json"' in args or f'"{target}"' in args else name)
        elif name == "close":
            if number == file_fd:
                events.append("close_file")
            elif number == dir_fd:
                events.append("close_dir")
        elif name == "flock":
            if file_fd is None and (number in created or f"{checkpoints}/#" in fd):
                assert "LOCK_NB" not in args, args  # not the stale-temp scan's
                file_fd = number
                events.append(created.pop(number, "take_spare"))
            events.append("lock_file" if number == file_fd else "lock_other")
        elif name in ("unlink", "unlinkat"):
            events.append("unlink")
        elif name == "fchmod":
            events.append("chmod")
    assert file_fd is not None, "no temp file locked"
    assert ("create_unnamed" in events) == (tmpfile == "unnamed"), events
    assert ("take_spare" in events) == (tmpfile == "spare"), events
    return events


@pytest.mark.parametrize("tmpfile", ["unnamed", "named", "spare"])
def test_data_and_file_are_synced_before_the_name_the_directory_after(
    tmp_path: Path, backend: str, tmpfile: str
) -> None:
    by_mode = {}
    for mode in ("full", "none"):
        calls, outcome, checkpoints = record(tmp_path, backend, mode, tmpfile)
        assert outcome == {"errno": None, "loaded": ["blob", "n"], "listing": ["job.json"]}
        events = analyse(calls, checkpoints, tmpfile)
        by_mode[mode] = events
        writes = [i for i, e in enumerate(events) if e == "write"]
        assert len(writes) >= 2, events  # megabytes: several writes
        rename = events.index("rename")
        assert events.count("rename") == 1
        assert events.index("lock_file") < writes[0], events
        if tmpfile != "named":
            # Nothing is named until the data are complete (and synced).
            assert writes[-1] < events.index("link") < rename, events
        if mode == "full":
            fsync_file = events.index("fsync_file")
            assert events.count("fsync_file") == 1 and events.count("fsync_dir") == 1, events
            assert writes[-1] < fsync_file, events
            if tmpfile != "named":
                assert fsync_file < events.index("link"), events
            assert fsync_file < rename < events.index("fsync_dir"), events
            assert "keep_replaced" not in events, events
        elif keeps_replaced_files(checkpoints):
            assert "fsync_file" not in events and "fsync_dir" not in events, events
            # The replaced file is held open across the rename, freed later.
            assert events.index("keep_replaced") == rename - 1, events
        else:
            assert not {"fsync_file", "fsync_dir", "keep_replaced"} & set(events), events
    # Without fsync, the same calls minus the fsyncs (the replaced file kept aside).
    assert [e for e in by_mode["full"] if not e.startswith("fsync")] == [
        e for e in by_mode["none"] if e != "keep_replaced"
    ]


def test_durability_none_makes_no_fsync_in_any_thread(tmp_path: Path, backend: str) -> None:
    calls, outcome, _ = run_traced(tmp_path, backend, "none", "unnamed", CHILD)
    assert outcome["errno"] is None, outcome
    assert [c for c in calls if c[1] in ("fsync", "fdatasync", "sync_file_range")] == []


DEFERRED_CHILD = textwrap.dedent(
    """
    import json, os, sys
    import jobpersist
    import jobpersist.background

    ending = os.environ["ENDING"]
    if os.environ.get("FIRST_UNSYNCED") == "1":
        # No fsync before the saves under test, in any thread.
        os.environ["JOBPERSIST_DURABILITY"] = "none"
    jobpersist.save_job_checkpoint({"old": 1})
    jobpersist.background.wait_for_saves()
    os.environ["JOBPERSIST_DURABILITY"] = "deferred"
    if ending == "exit":
        import jobpersist._durability
        jobpersist._durability.BATCH_DELAY = 600.0  # the thread will not sync: the exit must
    # The saves under test: two files of one directory, one replaced, one new.
    os.access(sys.argv[1], os.F_OK)
    jobpersist.save_job_checkpoint({"blob": bytes(range(256)) * 12000}, "", "pickled_v4")
    jobpersist.save_job_checkpoint({"n": 2}, "other")
    os.access(sys.argv[1] + "-saved", os.F_OK)
    outcome = {"errno": None}
    if ending == "wait":
        try:
            jobpersist.background.wait_for_saves()
        except OSError as exc:
            outcome = {"errno": exc.errno, "filename": exc.filename}
        os.access(sys.argv[1] + "-waited", os.F_OK)
    print(json.dumps(outcome))
    """
)


def deferred_run(
    tmp_path: Path, backend: str, tmpfile: str, ending: str, inject: str | None = None
) -> tuple[list[tuple[int, str, str, int]], dict[str, object], Path]:
    # strace counts a call for `when=` per thread, and which thread syncs a batch (the
    # syncing thread or the caller of wait_for_saves) is timing: with an injection, the first
    # save makes no fsync, so that `when=1+` fails every fsync of the saves under test.
    first_unsynced = "1" if inject else "0"
    child = (
        f"import os; os.environ['ENDING'] = {ending!r}; "
        f"os.environ['FIRST_UNSYNCED'] = {first_unsynced!r}\n" + DEFERRED_CHILD
    )
    return run_traced(tmp_path, backend, "deferred", tmpfile, child, inject)


@pytest.mark.parametrize("ending", ["wait", "exit"])
@pytest.mark.parametrize("tmpfile", ["unnamed", "named"])
def test_deferred_syncs_follow_the_renames_and_end_by_wait_or_exit(
    tmp_path: Path, backend: str, tmpfile: str, ending: str
) -> None:
    if in_memory(tmp_path):
        pytest.skip("deferred saves that replace a file on tmpfs sync nothing")
    calls, outcome, checkpoints = deferred_run(tmp_path, backend, tmpfile, ending)
    assert outcome == {"errno": None}
    targets = [str(checkpoints / "job.json"), str(checkpoints / "job_other.json")]
    marked = [(i, c) for i, c in enumerate(calls) if c[0] >= 1]
    renames = [i for i, (_, name, args, _) in marked if name.startswith("rename")]
    assert len(renames) == 2, marked
    fsyncs = [(i, c) for i, c in marked if c[1] in ("fsync", "fdatasync")]
    # The saves themselves (until the second mark) sync nothing before their renames.
    assert all(i > renames[0] for i, _ in fsyncs), marked
    synced = [fd_of(c[2]).split("<", 1)[1].rstrip(">") for _, c in fsyncs]
    # Every renamed file after its rename, and the directory after both renames.
    for target, rename in zip(targets, renames, strict=True):
        assert any(
            path == target and i > rename for (i, _), path in zip(fsyncs, synced, strict=True)
        ), (target, marked)
    directory_syncs = [
        i for (i, _), path in zip(fsyncs, synced, strict=True) if path == str(checkpoints)
    ]
    assert directory_syncs and max(directory_syncs) > renames[1], marked
    # Nothing else, and nothing twice but the directory (the thread's batch may have taken
    # the first save alone).
    assert set(synced) == {*targets, str(checkpoints)}, synced
    assert len(synced) <= 4, synced
    if ending == "wait":
        # All done when wait_for_saves() returned (before the third mark).
        assert all(c[0] <= 2 for _, c in fsyncs), marked


def test_a_failed_deferred_fsync_reaches_wait_for_saves(tmp_path: Path, backend: str) -> None:
    if in_memory(tmp_path):
        pytest.skip("deferred saves that replace a file on tmpfs sync nothing")
    # Every fsync fails (the first save made none).
    calls, outcome, checkpoints = deferred_run(
        tmp_path, backend, "unnamed", "wait", inject="inject=fsync:error=EIO:when=1+"
    )
    assert outcome["errno"] == 5, outcome
    assert outcome["filename"] in (
        str(checkpoints / "job.json"),
        str(checkpoints / "job_other.json"),
    ), outcome
    fsyncs = [fd_of(c[2]) for c in calls if c[1] == "fsync" and c[0] >= 1]
    # Each file tried once, never again; their directory not synced after them: that would
    # make durable a rename to data the kernel may have dropped.
    paths = sorted(fd.split("<", 1)[1].rstrip(">") for fd in fsyncs)
    assert paths == [str(checkpoints / "job.json"), str(checkpoints / "job_other.json")]


@pytest.mark.parametrize("tmpfile", ["unnamed", "named"])
def test_a_failed_fsync_fails_the_save_and_is_not_retried(
    tmp_path: Path, backend: str, tmpfile: str
) -> None:
    calls, outcome, checkpoints = record(
        # The first save of the child makes fsyncs 1 and 2 (file, directory).
        tmp_path,
        backend,
        "full",
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
