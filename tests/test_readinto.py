"""``ValueReader.readinto`` with any buffer a caller may pass, not only the unpickler's.

The native reader writes the caller's memory only with the GIL held, through a buffer export
it holds for the whole call: writable, C-contiguous buffers of any item type are filled
(bytearray, memoryview slices, numpy arrays); read-only and non-contiguous ones are refused
(``BufferError``) and left untouched; a buffer another thread tries to resize meanwhile is
never resized under the reader.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any

import numpy as np
import pytest
from support.jobenv import JobEnv

import jobpersist
from jobpersist import _codec

F = jobpersist.PersistedJobDataFormat
PAYLOAD_SIZE = 3 << 20  # more than one of the reader's 1 MiB pieces


@pytest.fixture
def payload() -> bytes:
    return np.random.default_rng(5).bytes(PAYLOAD_SIZE)


def reader(job_env: JobEnv, data: bytes) -> tuple[Any, bytes]:
    """A fresh reader over the pickle of ``data``, saved as a checkpoint; the pickle."""
    jobpersist.save_job_checkpoint({"v": data}, data_format=F.PICKLED_V4)
    file = _codec.CODEC.read_file(str(job_env.checkpoint_path))
    scanned = file.scan_pickled()
    assert scanned is not None
    reader = file.value_reader(*scanned[1][0])
    expected = pickle.dumps(data, protocol=4)
    return reader, expected


def refused(backend: str) -> tuple[type[BaseException], ...]:
    # The pure-Python reader goes through memoryview, which says TypeError for read-only.
    return (BufferError,) if backend == "native" else (BufferError, TypeError)


def test_bytearray_in_pieces(backend: str, job_env: JobEnv, payload: bytes) -> None:
    r, expected = reader(job_env, payload)
    got = bytearray()
    for size in (0, 1, 7, 65_536, 1 << 20, (1 << 20) + 5):
        buf = bytearray(size)
        n = r.readinto(buf)
        assert n == size
        got += buf
    rest = bytearray(len(expected))  # larger than what is left: filled up to the end
    n = r.readinto(rest)
    got += rest[:n]
    assert bytes(got) == expected
    assert r.readinto(bytearray(10)) == 0


def test_memoryview_slice_writes_only_its_window(
    backend: str, job_env: JobEnv, payload: bytes
) -> None:
    r, expected = reader(job_env, payload)
    buf = bytearray(b"\xaa" * (2 << 20))
    window = memoryview(buf)[100 : 100 + (1 << 20) + 3]
    assert r.readinto(window) == len(window)
    assert buf[100 : 100 + len(window)] == expected[: len(window)]
    assert buf[:100] == b"\xaa" * 100
    assert buf[100 + len(window) :] == b"\xaa" * (len(buf) - 100 - len(window))


@pytest.mark.parametrize("dtype", ["float64", "int8", "uint16"])
def test_numpy_arrays_of_any_item_type(
    backend: str, job_env: JobEnv, payload: bytes, dtype: str
) -> None:
    r, expected = reader(job_env, payload)
    array = np.zeros((256, 1024), dtype=dtype)  # two dimensions, C-contiguous
    assert r.readinto(array) == array.nbytes
    assert array.tobytes() == expected[: array.nbytes]


def test_read_only_and_strided_buffers_are_refused(
    backend: str, job_env: JobEnv, payload: bytes
) -> None:
    r, expected = reader(job_env, payload)
    frozen = np.zeros(1000, dtype=np.uint8)
    frozen.flags.writeable = False
    strided = np.zeros(2000, dtype=np.uint8)
    for buffer in (
        bytes(1000),
        memoryview(bytearray(1000)).toreadonly(),
        frozen,
        strided[::2],
    ):
        with pytest.raises(refused(backend)):
            r.readinto(buffer)
    assert not strided.any(), "a refused buffer was written"
    with pytest.raises(TypeError):
        r.readinto([0] * 10)
    # Nothing was consumed by the refusals.
    buf = bytearray(len(expected))
    assert r.readinto(buf) == len(expected)
    assert buf == expected


def test_buffer_resized_by_another_thread(backend: str, job_env: JobEnv, payload: bytes) -> None:
    # The export held through the call makes every resize attempt fail (BufferError) while
    # the reader works (the native one with the GIL released); none may land under it.
    r, expected = reader(job_env, payload)
    buf = bytearray(len(expected) - 10)
    done = threading.Event()
    running = threading.Event()
    outcomes: list[str] = []

    def resize() -> None:
        while not done.is_set():
            try:
                buf.extend(b"xyz")
                del buf[-3:]
                outcomes.append("resized")
            except BufferError:
                outcomes.append("refused")
            running.set()

    thread = threading.Thread(target=resize)
    thread.start()
    assert running.wait(30), "the resizing thread never ran"
    try:
        n = r.readinto(buf)
    finally:
        done.set()
        thread.join()
    assert n >= len(expected) - 10  # the length the call saw, filled
    assert buf[:n] == expected[:n]


def test_unpickling_through_readinto(backend: str, job_env: JobEnv) -> None:
    value = {"a": np.arange(300_000, dtype=np.float64), "b": bytearray(b"q" * 200_000)}
    jobpersist.save_job_checkpoint({"k": value}, data_format=F.PICKLED_V4)
    file = _codec.CODEC.read_file(str(job_env.checkpoint_path))
    scanned = file.scan_pickled()
    assert scanned is not None
    loaded = pickle.Unpickler(file.value_reader(*scanned[1][0])).load()
    assert (loaded["a"] == value["a"]).all() and loaded["b"] == value["b"]
