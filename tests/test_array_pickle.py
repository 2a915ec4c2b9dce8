"""Large numpy arrays are pickled without numpy's copy, into the bytes pickle.dumps writes
(nested values: tests/test_nested_arrays.py)."""

from __future__ import annotations

import base64
import copyreg
import json
import pickle
from typing import Any

import numpy as np
import pytest

import jobpersist
from jobpersist._pickle import dump as _array_pickle
from jobpersist._pickle import small_array

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


def test_a_thread_reuses_its_pickle_stream_while_it_fits(job_env: Any) -> None:
    def save_and_check(value: Any) -> None:
        jobpersist.save_job_checkpoint({"v": value}, data_format="pickled_v4")
        assert stored_pickle(job_env.checkpoint_file(), "v") == pickle.dumps(value, protocol=4)

    save_and_check(RNG.random(24))
    spare = _array_pickle._SPARE.stream
    save_and_check(RNG.random(300_000))
    assert _array_pickle._SPARE.stream is spare  # the same stream, and the same bytes

    # An array type made after the stream (module-level, so that pickle finds it).
    later = type("LaterArray", (np.ndarray,), {"__module__": __name__})
    globals()["LaterArray"] = later
    save_and_check(RNG.random(300_000).view(later))
    assert _array_pickle._SPARE.stream is not spare
    spare = _array_pickle._SPARE.stream

    # The type's reduce replaced after the stream was made: pickled as the type now says.
    def replaced_reduce(self: Any) -> Any:
        return (np.asarray, (np.asarray(self).tolist()[:3],))

    setattr(later, "__reduce__", replaced_reduce)  # noqa: B010 (a method, replaced)
    save_and_check(RNG.random(300_000).view(later))

    copyreg.pickle(Registered, lambda r: (Registered, (r.n + 1,)))
    try:
        save_and_check(Registered(1))  # as copyreg says, whatever the stream saw before
        assert _array_pickle._SPARE.stream is not spare
    finally:
        del copyreg.dispatch_table[Registered]


class Registered:
    """Registered with copyreg by a test, after a stream was made."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Registered) and other.n == self.n

    __hash__ = None  # type: ignore[assignment]


class SavesWhilePickled:
    """Pickling it saves another checkpoint: a save inside a save, in one thread."""

    def __reduce__(self) -> Any:
        jobpersist.save_job_checkpoint({"inner": RNG.random(4)}, "inner", "pickled_v4")
        return (int, (5,))


def test_a_save_made_while_pickling_has_its_own_stream(job_env: Any) -> None:
    jobpersist.save_job_checkpoint({"a": RNG.random(4)}, data_format="pickled_v4")
    jobpersist.save_job_checkpoint({"a": SavesWhilePickled()}, data_format="pickled_v4")
    assert jobpersist.load_job_checkpoint(allow_pickle=True) == {"a": 5}
    inner = jobpersist.load_job_checkpoint(checkpoint_file_suffix="inner", allow_pickle=True)
    assert list(inner) == ["inner"]


def _with_metadata() -> Any:
    return np.dtype(np.float64, metadata={"unit": "rad"})


# Small arrays saved as values of their own: two arrays of each kind (dtype and shape), the
# second written from the first's template where the kind has one.
SMALL_KINDS = {
    "float64_24": lambda r: r.random(24),
    "float32_2d": lambda r: r.random((3, 5)).astype(np.float32),
    "big_endian": lambda r: (r.random(9) * 100).astype(">i8"),
    "complex": lambda r: r.random(6) + 1j,
    "bool": lambda r: r.random(40) > 0.5,
    "datetime": lambda r: (r.random(5) * 1e9).astype("M8[s]"),
    "structured": lambda r: np.array(
        [(int(x * 10), x) for x in r.random(4)], dtype=[("a", "<i4"), ("b", "<f8")]
    ),
    "zero_d": lambda r: np.array(r.random()),
    "empty": lambda r: np.empty(0),
    "one_byte": lambda r: np.array([int(r.random() * 255)], dtype=np.uint8),
    "fortran": lambda r: np.asfortranarray(r.random((4, 3))),
    "strided": lambda r: r.random(30)[::3],
    "objects": lambda r: np.array([1, "a", r.random()], dtype=object),
    "matrix": lambda r: np.asmatrix(r.random((2, 2))),
    "metadata": lambda r: r.random(24).astype(_with_metadata()),
    "outside_a_frame": lambda r: r.random(10_000),  # 80 KB: pickle writes it unframed
}


@pytest.mark.parametrize("kind", SMALL_KINDS)
def test_a_small_array_value_is_pickled_as_pickle_does(job_env: Any, kind: str) -> None:
    rng = np.random.default_rng(11)
    make = SMALL_KINDS[kind]
    # The plain float64 kind first: the metadata kind must not borrow its template.
    for value in (rng.random(24), make(rng), make(rng), make(rng)):
        jobpersist.save_job_checkpoint({"v": value, "n": 1}, data_format="pickled_v4")
        assert stored_pickle(job_env.checkpoint_file(), "v") == pickle.dumps(value, protocol=4)


def test_a_small_array_kind_seen_before_skips_the_pickler(monkeypatch: pytest.MonkeyPatch) -> None:
    templates = small_array.Templates(np.ndarray, 128 * 1024)
    first, second = RNG.random(24), RNG.random(24)
    expected = pickle.dumps(second, protocol=4)
    assert templates.pickle(first) == pickle.dumps(first, protocol=4)
    monkeypatch.setattr(pickle, "dumps", None)  # a call would raise TypeError
    assert templates.pickle(second) == expected
    # Not a plain small C-contiguous array: left to the pickler.
    assert templates.pickle(np.asfortranarray(RNG.random((3, 4)))) is None
    assert templates.pickle(RNG.random(20_000)) is None  # 160 KB: streamed
    assert templates.pickle([1.0, 2.0]) is None
