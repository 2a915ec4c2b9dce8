"""Large numpy arrays are pickled without numpy's copy, into the bytes pickle.dumps writes
(nested values: tests/test_nested_arrays.py)."""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any

import numpy as np
import pytest

import jobpersist
from jobpersist._pickle import dump as _array_pickle

RNG = np.random.default_rng(7)
ARRAYS = {
    "float64_1d": RNG.random(300_000),
    "float32_2d": RNG.random((600, 700)).astype(np.float32),
    "big_endian_int": np.arange(200_000, dtype=">i8"),
    "float64_3d": RNG.random((40, 60, 70)),
    "datetime": np.zeros(1 << 18, dtype="M8[s]"),
    "structured": np.zeros(100_000, dtype=[("a", "<i4"), ("b", "<f8")]),
    "complex": np.ones(100_000, dtype=np.complex128),
    "bool": np.arange(2_000_000) % 3 == 0,
    "row_and_column": RNG.random((1, 200_000)),
    "fortran": np.asfortranarray(RNG.random((500, 400))),
    "strided": RNG.random(600_000)[::2],
    "matrix_subclass": np.asmatrix(RNG.random((400, 400))),
    # These take numpy's own path (small, objects).
    "small": RNG.random(10),
    "objects": np.array([1, "a", None] * 50_000, dtype=object),
}


def stored_pickle(path: Any, key: str) -> bytes:
    text = json.loads(path.read_bytes())["dataDictionary"][key]
    return base64.decodebytes(text.encode())


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("name", list(ARRAYS))
def test_bytes_equal_pickle_dumps(job_env: Any, name: str) -> None:
    array = ARRAYS[name]
    jobpersist.save_job_checkpoint({"x": array, "y": [array]}, data_format="pickled_v4")
    path = job_env.checkpoint_file()
    assert stored_pickle(path, "x") == pickle.dumps(array, protocol=4)
    assert stored_pickle(path, "y") == pickle.dumps([array], protocol=4)
    loaded = jobpersist.load_job_checkpoint(allow_pickle=True)
    assert np.array_equal(loaded["x"], array)
    assert type(loaded["x"]) is type(array)


class _Recorder:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)


def test_large_arrays_of_plain_data_are_streamed() -> None:
    streamed = set()
    for name, array in ARRAYS.items():
        recorder = _Recorder()
        stream = _array_pickle.PickleStream(recorder)  # type: ignore[arg-type]
        stream.dump(array)
        assert b"".join(recorder.parts) == pickle.dumps(array, protocol=4), name
        if stream.swapped:
            streamed.add(name)
    assert streamed == set(ARRAYS) - {"small", "objects"}


@pytest.mark.usefixtures("backend")
def test_a_payload_the_pickler_did_not_hand_over_fails_the_save(
    job_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Below the pickler's frame size the placeholder is copied into a frame: the save must
    # refuse rather than write its zeros.
    jobpersist.save_job_checkpoint({"x": 1}, data_format="pickled_v4")
    before = job_env.checkpoint_file().read_bytes()
    monkeypatch.setattr(_array_pickle, "_MIN_BYTES", 16)
    with pytest.raises(RuntimeError, match="not written"):
        jobpersist.save_job_checkpoint({"x": [RNG.random(100)]}, data_format="pickled_v4")
    assert job_env.checkpoint_file().read_bytes() == before
