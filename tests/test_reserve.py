"""Block reservation: a large save allocates its file's blocks before writing them
(``fallocate`` keeping the size) and gives back the rest at the commit, so ext4 has no delayed
allocation to flush inside the rename (``auto_da_alloc``). Best effort in both backends."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from support.files import temp_leftovers
from support.jobenv import JobEnv
from support.spares import set_spares

import jobpersist
from jobpersist._codec.python import atomic_file as _atomic

pytestmark = pytest.mark.usefixtures("backend")

BIG = 16 << 20


@pytest.fixture
def spy(backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[str]]]:
    """The reservations ("reserve") and trims ("trim") of the saves made in the test."""
    calls: list[str] = []
    if backend == "native":
        from jobpersist import _native

        _native._arm_faults(None, errno.EIO, False, False)

        def native_calls() -> list[str]:
            ops = _native._disarm_faults()[0]
            _native._arm_faults(None, errno.EIO, False, False)
            calls.extend(op for op in ops if op in ("reserve", "trim"))
            return calls

        try:
            yield native_calls
        finally:
            _native._disarm_faults()
        return
    fallocate, ftruncate = _atomic._fallocate, os.ftruncate

    def spy_fallocate(fd: int, offset: int, count: int) -> None:
        calls.append("reserve")
        fallocate(fd, offset, count)

    def spy_ftruncate(fd: int, length: int) -> None:
        calls.append("trim")
        ftruncate(fd, length)

    monkeypatch.setattr(_atomic, "_fallocate", spy_fallocate)
    monkeypatch.setattr(os, "ftruncate", spy_ftruncate)
    yield lambda: calls


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fallocate is Linux's")
def test_the_python_fallback_reaches_fallocate() -> None:
    # Otherwise its reservations would silently never happen.
    assert _atomic._libc_fallocate() is not None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda: np.arange(BIG // 8, dtype=np.float64), id="array"),
        pytest.param(lambda: {"state": [np.ones(BIG // 32) for _ in range(4)]}, id="nested"),
        pytest.param(lambda: b"\x07" * BIG, id="bytes"),
    ],
)
def test_a_large_save_reserves_then_trims(
    job_env: JobEnv, spy: Callable[[], list[str]], value: Callable[[], object]
) -> None:
    data = {"w": value()}
    jobpersist.save_job_checkpoint(data, "", "pickled_v4")
    calls = spy()
    assert "reserve" in calls, calls
    assert calls.count("trim") == 1 and calls[-1] == "trim", calls
    path = job_env.checkpoint_path
    # Only the content's blocks stay (plus the filesystem's rounding).
    assert allocated(path) < path.stat().st_size + (256 << 10)
    loaded = jobpersist.load_job_checkpoint(allow_pickle=True)
    assert pickle_equal(loaded, data)
    assert temp_leftovers(job_env.checkpoint_dir) == []


@pytest.mark.slow
def test_many_large_values_reserve_ahead(job_env: JobEnv, spy: Callable[[], list[str]]) -> None:
    # 48 arrays of 1 MiB, each announced on its own: the reservations run ahead of them by as
    # much as is written, so there are a few, not one per array.
    data = {"params": [np.full(1 << 17, float(i)) for i in range(48)]}
    jobpersist.save_job_checkpoint(data, "", "pickled_v4")
    calls = spy()
    assert 2 <= calls.count("reserve") <= 10, calls
    assert calls[-1] == "trim", calls
    path = job_env.checkpoint_path
    assert allocated(path) < path.stat().st_size + (256 << 10)
    assert pickle_equal(jobpersist.load_job_checkpoint(allow_pickle=True), data)


def test_a_small_save_reserves_nothing(job_env: JobEnv, spy: Callable[[], list[str]]) -> None:
    jobpersist.save_job_checkpoint({"w": np.ones(1000), "n": 1}, "", "pickled_v4")
    jobpersist.save_job_checkpoint({"w": [0.5] * 1000}, "", "plaintext")
    assert spy() == []


def test_refused_reservations_change_nothing_but_the_time(
    job_env: JobEnv, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {"w": np.arange(BIG // 8, dtype=np.float64)}
    jobpersist.save_job_checkpoint(data, "", "pickled_v4")
    expected = job_env.checkpoint_path.read_bytes()
    if backend == "native":
        from jobpersist import _native

        # Every operation of the save passes but the reservation, refused as NFS would. (Each
        # save creates its own file: one taking a spare would skip some operations.)
        set_spares(backend, "off")
        ops = save_ops(lambda: jobpersist.save_job_checkpoint(data, "", "pickled_v4"))
        _native._arm_faults(ops.index("reserve") + 1, errno.EOPNOTSUPP, False, False)
        try:
            jobpersist.save_job_checkpoint(data, "", "pickled_v4")
        finally:
            _, failed, *_ = _native._disarm_faults()
            set_spares(backend, "where slow")
        assert failed == "reserve"
    else:

        def refuse(fd: int, offset: int, count: int) -> None:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

        monkeypatch.setattr(_atomic, "_fallocate", refuse)
        jobpersist.save_job_checkpoint(data, "", "pickled_v4")
    assert job_env.checkpoint_path.read_bytes() == expected
    assert temp_leftovers(job_env.checkpoint_dir) == []


def save_ops(save: Callable[[], None]) -> list[str]:
    from jobpersist import _native

    _native._arm_faults(None, errno.EIO, False, False)
    try:
        save()
    finally:
        ops: list[str] = _native._disarm_faults()[0]
    return ops


def pickle_equal(a: object, b: object) -> bool:
    import pickle

    return pickle.dumps(a, protocol=4) == pickle.dumps(b, protocol=4)
