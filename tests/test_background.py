"""Background saves: snapshots, same bytes as the synchronous saves, order, supersede,
back-pressure, errors, and the drain at interpreter exit."""

from __future__ import annotations

import concurrent.futures
import datetime
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.jobenv import JobEnv, child_env
from support.memory import peak_extra_memory

import jobpersist
from jobpersist import background
from jobpersist._format.envelope import PreEncodedJson
from jobpersist.background import (
    SUPERSEDED,
    max_pending_bytes,
    save_job_checkpoint_async,
    save_job_result_async,
    wait_for_saves,
)

F = jobpersist.PersistedJobDataFormat
FORMATS = (F.PLAINTEXT, F.PICKLED_V4)


@pytest.fixture(autouse=True)
def _clean_writer() -> Iterator[None]:
    """Every test starts and ends with an idle writer and no pending failure."""
    yield
    background._WRITER.wait(30)
    with background._WRITER.cond:
        background._WRITER.failures.clear()


class Gate:
    """Wraps the writer's ``write_envelope``: records each write, and can hold them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.open = threading.Event()
        self.open.set()
        self.delay = delay
        self.started = threading.Event()
        self.writes: list[tuple[str, list[str]]] = []
        self.values: list[bytes] = []  # the first value's JSON text of each plaintext write
        original = background.write_envelope  # type: ignore[attr-defined]  # (imported)

        def write(path: str, entries: Any, data_format: Any, fsync: bool) -> None:
            entries = list(entries)
            self.started.set()
            self.open.wait(30)
            if self.delay:
                time.sleep(self.delay)
            self.writes.append((os.path.basename(path), [k for k, _ in entries]))
            if entries and isinstance(entries[0][1], PreEncodedJson):
                self.values.append(entries[0][1].text)
            original(path, entries, data_format, fsync)

        monkeypatch.setattr(background, "write_envelope", write)

    def hold(self) -> None:
        self.open.clear()
        self.started.clear()

    def release(self) -> None:
        self.open.set()


def sample(fmt: F) -> dict[str, Any]:
    data: dict[str, Any] = {
        "int": 3,
        "float": [0.1, -0.0, 1e300],
        "text": "h\u00e9llo \ud83d\ude00",
        "nested": {"a": [1, {"b": (2, 3)}], "s": {1, 2, 3}},
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9),
        7: "int key",
    }
    if fmt is F.PICKLED_V4:
        data["array"] = np.arange(10_000, dtype=np.float64).reshape(100, 100)
        data["complex"] = complex(1, 2)
    return data


# --------------------------------------------------------------------------------------------
# Same bytes as the synchronous saves
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_checkpoint_bytes_equal_sync(backend: str, job_env: JobEnv, fmt: F) -> None:
    data = sample(fmt)
    jobpersist.save_job_checkpoint(data, "sync", fmt)
    future = save_job_checkpoint_async(data, "async", fmt)
    assert future.result(30) == str(job_env.checkpoint_file("async"))
    assert job_env.checkpoint_file("async").read_bytes() == (
        job_env.checkpoint_file("sync").read_bytes()
    )


@pytest.mark.parametrize("fmt", [*FORMATS, None])
def test_result_bytes_equal_sync(
    backend: str, job_env: JobEnv, fmt: F | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    steps: list[tuple[dict[str, Any] | Any, F | None]] = [
        ({"a": 1, "b": [1, 2]}, fmt),
        ({"b": "replaced", "c": {"x": 1.5}}, fmt),
        ("not a dict", fmt),
        ({}, fmt),
    ]
    if fmt is not F.PLAINTEXT:
        # Plaintext first, then pickled: the rest must follow the pickled format.
        steps = [({"first": 1}, F.PLAINTEXT), ({"p": 2}, F.PICKLED_V4), *steps]
    for data, step_format in steps:
        jobpersist.save_job_result(data, step_format)
    expected = job_env.results_path.read_bytes()

    async_dir = tmp_path / "async-results"
    async_dir.mkdir()
    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(async_dir))
    futures = [save_job_result_async(data, step_format) for data, step_format in steps]
    wait_for_saves(30)
    assert [f.result() for f in futures] == [str(async_dir / "results.json")] * len(steps)
    assert (async_dir / "results.json").read_bytes() == expected


def test_result_none_format_follows_pickled_file(backend: str, job_env: JobEnv) -> None:
    jobpersist.save_job_result({"a": np.arange(3)}, F.PICKLED_V4)
    save_job_result_async({"b": {"x", "y"}}).result(30)
    loaded = jobpersist.load_job_result(allow_pickle=True)
    assert set(loaded) == {"a", "b"} and loaded["b"] == {"x", "y"}
    assert job_env.results_path.read_bytes().endswith(b'"dataFormat": "pickled_v4"}')


def test_result_plaintext_over_pickled_fails_on_future(backend: str, job_env: JobEnv) -> None:
    jobpersist.save_job_result({"a": 1}, F.PICKLED_V4)
    before = job_env.results_path.read_bytes()
    future = save_job_result_async({"b": 2}, F.PLAINTEXT)
    assert isinstance(future.exception(30), TypeError)
    assert job_env.results_path.read_bytes() == before


def test_result_file_turned_pickled_after_call(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    gate.hold()
    blocker = save_job_checkpoint_async({"x": 1})  # keeps the writer busy
    assert gate.started.wait(10)
    future = save_job_result_async({"b": 2})  # snapshotted as plaintext
    jobpersist.save_job_result({"a": 1}, F.PICKLED_V4)  # another writer, synchronously
    gate.release()
    blocker.result(30)
    exc = future.exception(30)
    assert isinstance(exc, TypeError) and "became pickled" in str(exc)


# --------------------------------------------------------------------------------------------
# Snapshots: validated and encoded in the caller
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_mutation_after_return_does_not_reach_file(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch, fmt: F
) -> None:
    gate = Gate(monkeypatch)
    gate.hold()
    data: dict[str, Any] = {"weights": [1.0, 2.0, 3.0], "step": 1}
    expected = {"weights": [1.0, 2.0, 3.0], "step": 1}
    future = save_job_checkpoint_async(data, "m", fmt)
    data["weights"].append(99.0)
    data["weights"][0] = -1.0
    data["step"] = 2
    data["new"] = "key"
    gate.release()
    future.result(30)
    loaded = jobpersist.load_job_checkpoint(checkpoint_file_suffix="m", allow_pickle=True)
    assert loaded == expected


def test_numpy_mutation_after_return(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    gate.hold()
    array = np.zeros(1000)
    future = save_job_checkpoint_async({"a": array}, data_format=F.PICKLED_V4)
    array[:] = 7.0
    gate.release()
    future.result(30)
    loaded = jobpersist.load_job_checkpoint(allow_pickle=True)
    assert not loaded["a"].any()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: save_job_checkpoint_async({}), ValueError),
        (lambda: save_job_checkpoint_async(None), ValueError),  # type: ignore[arg-type]
        (lambda: save_job_checkpoint_async({"a": 1}, data_format=None), ValueError),  # type: ignore[arg-type]
        (lambda: save_job_checkpoint_async({"a": 1}, "../escape"), ValueError),
        (lambda: save_job_checkpoint_async({"a": object()}), TypeError),
        (lambda: save_job_checkpoint_async({"a": lambda: 1}, data_format=F.PICKLED_V4), Exception),
        (lambda: save_job_checkpoint_async({object(): 1}), ValueError),
        (lambda: save_job_result_async({"a": object()}), TypeError),
        (lambda: save_job_result_async({"a": 1}, data_format=object()), ValueError),  # type: ignore[arg-type]
    ],
)
def test_invalid_calls_raise_in_caller(
    backend: str, job_env: JobEnv, call: Callable[[], Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call()
    wait_for_saves(30)
    assert list(job_env.checkpoint_dir.iterdir()) == []
    assert list(job_env.results_dir.iterdir()) == []


def test_same_errors_as_sync(backend: str, job_env: JobEnv) -> None:
    for data, suffix, fmt in [
        ({}, "", F.PLAINTEXT),
        ({"a": 1}, "a/b", F.PLAINTEXT),
        ({"a": {1, object()}}, "", F.PLAINTEXT),
        ({"a": 1}, "", None),
        ({"a": 1}, "", b"\xff"),
    ]:
        with pytest.raises(Exception) as sync_error:
            jobpersist.save_job_checkpoint(data, suffix, fmt)  # type: ignore[arg-type]
        with pytest.raises(Exception) as async_error:
            save_job_checkpoint_async(data, suffix, fmt)  # type: ignore[arg-type]
        assert type(async_error.value) is type(sync_error.value)
        assert str(async_error.value) == str(sync_error.value)


def test_path_captured_at_call_time(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gate = Gate(monkeypatch)
    gate.hold()
    future = save_job_checkpoint_async({"a": 1})
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "other")
    gate.release()
    assert future.result(30) == str(job_env.checkpoint_path)
    assert job_env.checkpoint_path.exists()


# --------------------------------------------------------------------------------------------
# Order and supersede
# --------------------------------------------------------------------------------------------
def test_saves_complete_in_call_order(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch, delay=0.002)
    futures = [save_job_checkpoint_async({"i": i}, f"s{i % 3}") for i in range(30)]
    wait_for_saves(30)
    written = [int(value) for value in gate.values]
    assert written == sorted(written), "saves were written out of call order"
    assert written[-3:] == [27, 28, 29]
    for s in range(3):
        assert jobpersist.load_job_checkpoint(checkpoint_file_suffix=f"s{s}") == {
            "i": max(i for i in range(30) if i % 3 == s)
        }
    results = [f.result() for f in futures]
    assert all(r == SUPERSEDED for i, r in enumerate(results) if i not in written)
    assert all(r != SUPERSEDED for i, r in enumerate(results) if i in written)


def test_results_merge_in_call_order(backend: str, job_env: JobEnv) -> None:
    for i in range(40):
        save_job_result_async({"last": i, f"k{i}": i})
    wait_for_saves(30)
    loaded = jobpersist.load_job_result()
    assert loaded["last"] == 39
    assert [k for k in loaded if k != "last"] == [f"k{i}" for i in range(40)]


def test_newer_save_supersedes_waiting_one(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    gate.hold()
    first = save_job_checkpoint_async({"v": 1})
    assert gate.started.wait(10)  # the first save is being written: it cannot be superseded
    second = save_job_checkpoint_async({"v": 2})
    other = save_job_checkpoint_async({"v": "other"}, "other")
    third = save_job_checkpoint_async({"v": 3})
    gate.release()
    assert first.result(30) == str(job_env.checkpoint_path)
    assert second.result(30) == SUPERSEDED
    assert third.result(30) == str(job_env.checkpoint_path)
    assert other.result(30) == str(job_env.checkpoint_file("other"))
    assert [name for name, _ in gate.writes] == [
        "test-job.json",
        "test-job_other.json",
        "test-job.json",
    ]
    assert jobpersist.load_job_checkpoint() == {"v": 3}


def test_superseded_future_shares_newer_failure(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gate = Gate(monkeypatch)
    gate.hold()
    save_job_checkpoint_async({"v": 0}, "x")
    assert gate.started.wait(10)
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(tmp_path / "missing"))
    older = save_job_checkpoint_async({"v": 1})
    newer = save_job_checkpoint_async({"v": 2})
    gate.release()
    error = newer.exception(30)
    assert isinstance(error, FileNotFoundError)
    assert older.exception(30) is error
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(job_env.checkpoint_dir))
    save_job_checkpoint_async({"v": 3}, "x").result(30)  # retrieved: not raised again


def test_cancelled_waiting_save_is_not_written(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    gate.hold()
    save_job_checkpoint_async({"v": 0}, "x")
    assert gate.started.wait(10)
    waiting = save_job_checkpoint_async({"v": 1})
    assert waiting.cancel()
    gate.release()
    wait_for_saves(30)
    assert not job_env.checkpoint_path.exists()


# --------------------------------------------------------------------------------------------
# Back-pressure
# --------------------------------------------------------------------------------------------
def test_max_pending_bytes_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBPERSIST_MAX_PENDING_BYTES", raising=False)
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert max_pending_bytes() == physical // 4
    for text, value in [("1000", 1000), ("4K", 4096), ("2MiB", 2 << 20), ("1g", 1 << 30)]:
        monkeypatch.setenv("JOBPERSIST_MAX_PENDING_BYTES", text)
        assert max_pending_bytes() == value
    monkeypatch.setenv("JOBPERSIST_MAX_PENDING_BYTES", "lots")
    with pytest.raises(ValueError, match="JOBPERSIST_MAX_PENDING_BYTES"):
        max_pending_bytes()


def test_back_pressure_blocks_until_room(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPERSIST_MAX_PENDING_BYTES", "6000")
    gate = Gate(monkeypatch)
    gate.hold()
    payload = b"x" * 4000
    first = save_job_checkpoint_async({"p": payload}, "one", F.PICKLED_V4)
    assert gate.started.wait(10)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(save_job_checkpoint_async, {"p": payload}, "two", F.PICKLED_V4)
        time.sleep(0.3)
        assert not call.done(), "the call should block while the first snapshot is pending"
        assert background._WRITER.pending_bytes <= 6000
        gate.release()
        second = call.result(30)
    assert first.result(30) and second.result(30)
    assert job_env.checkpoint_file("two").exists()


def test_snapshot_larger_than_limit_still_proceeds(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPERSIST_MAX_PENDING_BYTES", "100")
    future = save_job_checkpoint_async({"p": b"y" * 10_000}, data_format=F.PICKLED_V4)
    assert future.result(30) == str(job_env.checkpoint_path)
    # And a second one after it, once the first is written.
    save_job_checkpoint_async({"p": b"z" * 10_000}, data_format=F.PICKLED_V4).result(30)
    assert jobpersist.load_job_checkpoint(allow_pickle=True) == {"p": b"z" * 10_000}


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
def _failing_save(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> concurrent.futures.Future[str]:
    # The directory is gone by write time: the write fails in the background.
    gone = job_env.checkpoint_dir / "gone"
    gone.mkdir()
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(gone))
    gate = Gate(monkeypatch)
    gate.hold()
    future = save_job_checkpoint_async({"a": 1})
    gone.rmdir()
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(job_env.checkpoint_dir))
    gate.release()
    concurrent.futures.wait([future], 30)  # does not retrieve the error
    return future


def test_error_on_future(backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    future = _failing_save(job_env, monkeypatch)
    assert isinstance(future.exception(), FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        future.result()
    # Retrieved: neither the next call nor wait_for_saves raises it again.
    save_job_checkpoint_async({"b": 2}).result(30)
    wait_for_saves(30)


def test_unretrieved_error_raised_by_next_call(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_save(job_env, monkeypatch)
    with pytest.raises(FileNotFoundError):
        save_job_checkpoint_async({"b": 2})
    assert not job_env.checkpoint_path.exists(), "the raising call saves nothing"
    save_job_checkpoint_async({"b": 3}).result(30)  # raised once only
    wait_for_saves(30)
    assert jobpersist.load_job_checkpoint() == {"b": 3}


def test_unretrieved_error_raised_by_wait_for_saves(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_save(job_env, monkeypatch)
    with pytest.raises(FileNotFoundError):
        wait_for_saves(30)
    wait_for_saves(30)  # cleared


def test_unretrieved_error_raised_by_result_save(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_save(job_env, monkeypatch)
    with pytest.raises(FileNotFoundError):
        save_job_result_async({"a": 1})


def test_wait_for_saves_timeout(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    gate.hold()
    save_job_checkpoint_async({"a": 1})
    with pytest.raises(TimeoutError):
        wait_for_saves(0.2)
    gate.release()
    wait_for_saves(30)


def test_save_from_done_callback_does_not_deadlock(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBPERSIST_MAX_PENDING_BYTES", "1")
    chained: list[concurrent.futures.Future[str]] = []
    first = save_job_checkpoint_async({"a": 1}, "first")
    first.add_done_callback(
        lambda _f: chained.append(save_job_checkpoint_async({"b": 2}, "chained"))
    )
    first.result(30)
    deadline = time.monotonic() + 10
    while not chained and time.monotonic() < deadline:
        time.sleep(0.01)
    chained[0].result(30)
    assert job_env.checkpoint_file("chained").exists()


# --------------------------------------------------------------------------------------------
# Interpreter exit
# --------------------------------------------------------------------------------------------
def test_atexit_drains_pending_saves(backend_name: str, job_env: JobEnv, tmp_path: Path) -> None:

    script = textwrap.dedent(
        """
        import time
        import numpy as np
        from jobpersist import background, PersistedJobDataFormat as F
        import jobpersist

        original = background.write_envelope  # type: ignore[attr-defined]  # (imported)
        def slow(*args):
            time.sleep(0.5)  # the interpreter reaches its exit while this save waits
            original(*args)
        background.write_envelope = slow

        data = {"a": np.arange(200_000, dtype=np.float64), "b": [1, 2, 3]}
        jobpersist.save_job_checkpoint(data, "sync", F.PICKLED_V4)
        background.save_job_checkpoint_async(data, "async", F.PICKLED_V4)
        background.save_job_result_async({"r": 1})
        print("returned")
        """
    )
    env = child_env(
        backend_name,
        AMZN_BRAKET_CHECKPOINT_DIR=str(job_env.checkpoint_dir),
        AMZN_BRAKET_JOB_NAME=job_env.job_name,
        AMZN_BRAKET_JOB_RESULTS_DIR=str(job_env.results_dir),
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "returned"
    assert job_env.checkpoint_file("async").read_bytes() == (
        job_env.checkpoint_file("sync").read_bytes()
    )
    assert jobpersist.load_job_result() == {"r": 1}


def test_atexit_reports_unretrieved_failure(job_env: JobEnv, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from jobpersist import background
        background.save_job_checkpoint_async({"a": 1})
        """
    )
    env = child_env(
        None,
        AMZN_BRAKET_CHECKPOINT_DIR=str(tmp_path / "does-not-exist"),
        AMZN_BRAKET_JOB_NAME="j",
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert "a background save failed" in proc.stderr


def test_exported_from_package() -> None:
    for name in ("save_job_checkpoint_async", "save_job_result_async", "wait_for_saves"):
        assert getattr(jobpersist, name) is getattr(background, name)
        assert name in jobpersist.__all__


@pytest.mark.slow
def test_a_background_save_copies_the_data_once(tmp_path: Path, backend_name: str) -> None:
    # The snapshot is one copy of the array's data; the writer encodes its pieces as they are.
    # Joining them (as this code once did) would take a second copy: 2x the payload.
    setup = """
        import numpy as np
        import jobpersist

        data = {"w": np.random.default_rng(3).random(12 << 20), "n": 1}  # 96 MiB
    """
    action = 'jobpersist.save_job_checkpoint_async(data, data_format="pickled_v4").result()'
    extra = peak_extra_memory(backend_name, tmp_path, setup, action)
    assert extra < (96 << 20) * 1.2, f"peak extra {extra / (1 << 20):.0f} MiB for 96 MiB"
