"""Safe mode (``allow_pickle="safe"``) loads what ``pickle.loads`` loads, for the plain data
it allows: round trips driven by hypothesis, numpy 1.x pickles and PennyLane tensors
(committed fixtures), files of ours and of the reference on both backends, and the
``allow_pickle`` / ``JOBPERSIST_ALLOW_PICKLE`` settings."""

from __future__ import annotations

import collections
import datetime as dt
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _safe_corpus import Trickle
from hypothesis import given
from hypothesis import strategies as st
from support.backends import pennylane_available
from support.jobenv import JobEnv, environ
from support.values import canon

import jobpersist
from jobpersist import UnsafePickleError
from jobpersist._pickle.policy import PICKLE_DISABLED_MESSAGE
from jobpersist._pickle.safe import safe_load_stream, safe_loads

F = jobpersist.PersistedJobDataFormat
FIXTURES = Path(__file__).parent / "fixtures" / "safe"
CODES = ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "f16"]
CODES += ["c8", "c16", "c32"]


def same_as_pickle(value: Any, protocol: int = 4) -> Any:
    data = pickle.dumps(value, protocol=protocol)
    ours, theirs = safe_loads("k", data), pickle.loads(data)
    assert type(ours) is type(theirs)
    assert canon(ours) == canon(theirs)
    streamed = safe_load_stream("k", Trickle(data), len(data))
    assert type(streamed) is type(theirs)
    assert canon(streamed) == canon(theirs)
    return ours


# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------
@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    code = draw(st.sampled_from(CODES))
    order = draw(st.sampled_from("<>")) if np.dtype(code).itemsize > 1 else "|"
    dtype = np.dtype(code).newbyteorder(order)
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    raw = draw(
        st.binary(
            min_size=dtype.itemsize * int(np.prod(shape)),
            max_size=dtype.itemsize * int(np.prod(shape)),
        )
    )
    array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if draw(st.booleans()):
        array = np.asfortranarray(array)
    return array


def scalars(array: np.ndarray) -> Any:
    return array.reshape(-1)[0] if array.size else array.dtype.type(0)


hashable = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.complex_numbers(),
    st.dates(),
    st.times(timezones=st.none() | st.just(dt.timezone.utc)),
    st.datetimes(
        timezones=st.none()
        | st.builds(dt.timezone, st.timedeltas(dt.timedelta(hours=-23), dt.timedelta(hours=23)))
    ),
    st.timedeltas(),
)
leaves = hashable | arrays() | arrays().map(scalars) | st.binary(max_size=8).map(bytearray)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=5), inner, max_size=4),
        st.dictionaries(st.text(max_size=5), inner, max_size=4).map(collections.OrderedDict),
        st.lists(inner, max_size=4).map(collections.deque),
        st.tuples(st.lists(inner, max_size=4), st.integers(0, 5)).map(
            lambda t: collections.deque(*t)
        ),
        st.sets(hashable, max_size=4),
        st.frozensets(hashable, max_size=4),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=4).map(collections.Counter),
    ),
    max_leaves=12,
)


@given(values)
def test_round_trip_equals_pickle(value: Any) -> None:
    same_as_pickle(value)


@given(arrays())
def test_arrays_equal_pickle(array: np.ndarray) -> None:
    ours = same_as_pickle(array)
    theirs = pickle.loads(pickle.dumps(array, protocol=4))
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert ours.flags.writeable and ours.flags.f_contiguous == theirs.flags.f_contiguous
    assert ours.flags.c_contiguous == theirs.flags.c_contiguous
    same_as_pickle(scalars(array))


def test_shared_dtype_through_the_memo() -> None:
    # The second array's dtype is a BINGET of the first's: BUILD's byte order must reach it.
    dtype = np.dtype(">f8")
    same_as_pickle([np.arange(3, dtype=dtype), np.arange(4, dtype=dtype), dtype])
    shared = np.arange(3.0)
    ours = same_as_pickle([shared, shared])
    assert ours[0] is ours[1]


@pytest.mark.parametrize("n", [2, 3, 999, 1000, 1025, 5000, 20_000])
def test_runs_of_numbers(n: int) -> None:
    # Runs of one number opcode are decoded in batches; in a stream they are cut wherever
    # the buffer in hand ends.
    rng = np.random.default_rng(n)
    value = [
        rng.random(n).tolist(),
        list(range(n)),  # BININT1, then BININT2, then BININT
        (-rng.integers(0, 2**31, n)).tolist(),
        [7] * n,
        [1.5, 3, 200, 70_000, -1] * (n // 5 + 1),
    ]
    ours = same_as_pickle(value)
    data = pickle.dumps(value, protocol=4)
    streamed = safe_load_stream("k", io.BytesIO(data), len(data))
    assert canon(streamed) == canon(ours)


def test_big_array_in_memory() -> None:
    same_as_pickle({"w": np.random.default_rng(0).random((300, 400)), "i": np.arange(10**5)})


@pytest.mark.pennylane
@given(arrays(), st.booleans())
def test_pennylane_tensors(array: np.ndarray, requires_grad: bool) -> None:
    import pennylane.numpy as pnp

    ours = same_as_pickle(pnp.tensor(array, requires_grad=requires_grad))
    assert ours.requires_grad is requires_grad


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.pkl")))
def test_fixtures(name: str) -> None:
    expected = json.loads((FIXTURES / "expected.json").read_text())[name]
    data = (FIXTURES / name).read_bytes()
    if expected["type"].startswith("pennylane") and not pennylane_available():
        with pytest.raises(pickle.UnpicklingError, match="pennylane"):
            safe_loads("k", data)
        return
    value = safe_loads("k", data)
    assert f"{type(value).__module__}.{type(value).__qualname__}" == expected["type"]
    array = np.asarray(value)
    assert array.dtype.str == expected["dtype"] and list(array.shape) == expected["shape"]
    assert array.tobytes(order="A").hex() == expected["data"]
    assert bool(array.flags.f_contiguous and not array.flags.c_contiguous) == expected["fortran"]
    assert getattr(value, "requires_grad", None) == expected["requires_grad"]


def test_numpy1_paths_match_numpy2() -> None:
    for value in (np.arange(5.0), np.float64(1.5), np.asfortranarray(np.eye(3, dtype="<c8"))):
        data = pickle.dumps(value, protocol=4)
        old = data.replace(b"\x8c\x16numpy._core.multiarray", b"\x8c\x15numpy.core.multiarray")
        assert old != data
        old = b"\x80\x04" + old[11:]  # frame lengths changed: drop the frame
        assert canon(safe_loads("k", old)) == canon(pickle.loads(data))


@given(arrays())
def test_protocol5_arrays(array: np.ndarray) -> None:
    # Protocol 5 writes numpy arrays as _frombuffer(bytearray, dtype, shape, order).
    ours = same_as_pickle(array, protocol=5)
    assert ours.flags.writeable


def test_nesting_limit() -> None:
    from jobpersist._pickle.safe import MAX_DEPTH

    deep: list[Any] = []
    for _ in range(150):  # the pickler and canon() spend several frames per level
        deep = [deep, {"k": (1,)}]
    same_as_pickle(deep)
    at_limit = b"\x80\x04N" + b"\x85" * MAX_DEPTH + b"."  # tuples MAX_DEPTH deep
    value, levels = safe_loads("k", at_limit), 0
    while value is not None:
        value, levels = value[0], levels + 1
    assert levels == MAX_DEPTH
    beyond = b"\x80\x04N" + b"\x85" * (MAX_DEPTH + 1) + b"."
    assert pickle.loads(beyond)
    with pytest.raises(UnsafePickleError, match="nests containers"):
        safe_loads("k", beyond)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_builtin_values_across_protocols(protocol: int) -> None:
    value: dict[str, Any] = {
        "a": [1, 2.5, "x", None, True],
        "t": (1, (2, 3)),
        "s": {1, 2},
        "f": frozenset({3}),
    }
    value["big"] = 2**100
    same_as_pickle(value, protocol)


# --------------------------------------------------------------------------------------------
# Files, both backends, the reference's files
# --------------------------------------------------------------------------------------------
CHECKPOINT = {
    "weights": np.random.default_rng(1).random(200_000),  # over 1 MiB of base64: streamed
    "blob": bytes(range(256)) * 6000,  # streamed plain bytes
    "mixed": [np.arange(150_000, dtype="<i8"), bytearray(b"x" * 1_300_000), "tail"],
    "small": np.arange(6, dtype=">i2").reshape(2, 3),
    "step": 7,
    "when": dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc),
    "history": collections.deque([0.5, 0.25], maxlen=10),
    "loss": np.float64(0.125),
}


def test_load_safe_equals_full(backend: str, job_env: JobEnv) -> None:
    jobpersist.save_job_checkpoint(CHECKPOINT, data_format=F.PICKLED_V4)
    jobpersist.save_job_result(CHECKPOINT, data_format=F.PICKLED_V4)
    for load in (jobpersist.load_job_checkpoint, jobpersist.load_job_result):
        assert canon(load(allow_pickle="safe")) == canon(load(allow_pickle=True))
    with environ(JOBPERSIST_ALLOW_PICKLE="safe"):
        full = jobpersist.load_job_checkpoint(allow_pickle=True)
        assert canon(jobpersist.load_job_checkpoint()) == canon(full)
        with pytest.raises(RuntimeError):  # an explicit False is never overridden
            jobpersist.load_job_checkpoint(allow_pickle=False)


def test_reference_files_load_alike(backend: str, job_env: JobEnv) -> None:
    from braket.jobs import data_persistence as reference

    reference.save_job_checkpoint(
        CHECKPOINT, data_format=reference.PersistedJobDataFormat.PICKLED_V4
    )
    ours = jobpersist.load_job_checkpoint(allow_pickle="safe")
    assert canon(ours) == canon(reference.load_job_checkpoint(allow_pickle=True))


def test_refusal_from_file(backend: str, job_env: JobEnv) -> None:
    jobpersist.save_job_checkpoint({"ok": 1, "path": Path("/tmp")}, data_format=F.PICKLED_V4)
    with pytest.raises(UnsafePickleError) as info:
        jobpersist.load_job_checkpoint(allow_pickle="safe")
    path_type = type(Path("/tmp"))  # pathlib._local.PosixPath from Python 3.13 on
    assert "'path'" in str(info.value)
    assert f"{path_type.__module__}.{path_type.__qualname__}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_deserialize_values_safe() -> None:
    data = jobpersist.serialize_values({"a": np.arange(3)}, F.PICKLED_V4)
    out = jobpersist.deserialize_values(data, F.PICKLED_V4, allow_pickle="safe")
    assert canon(out) == canon({"a": np.arange(3)})


# --------------------------------------------------------------------------------------------
# allow_pickle and JOBPERSIST_ALLOW_PICKLE
# --------------------------------------------------------------------------------------------
def test_allow_pickle_values(job_env: JobEnv) -> None:
    jobpersist.save_job_checkpoint({"a": 1}, data_format=F.PICKLED_V4)
    with environ(JOBPERSIST_ALLOW_PICKLE=None):
        for falsy in (False, 0, None, ""):
            if falsy == "":
                continue  # a string: only "safe" is a mode
            with pytest.raises(RuntimeError) as info:
                jobpersist.load_job_checkpoint(allow_pickle=falsy)  # type: ignore[arg-type]
            assert str(info.value) == PICKLE_DISABLED_MESSAGE
        with pytest.raises(RuntimeError):
            jobpersist.load_job_checkpoint()
        for truthy in (True, 1, [1]):
            assert jobpersist.load_job_checkpoint(allow_pickle=truthy) == {"a": 1}  # type: ignore[arg-type]
        for bad in ("yes", "Safe", "", "true"):
            with pytest.raises(ValueError, match="not a mode"):
                jobpersist.load_job_checkpoint(allow_pickle=bad)  # type: ignore[arg-type]
    for setting, outcome in (("safe", {"a": 1}), ("", RuntimeError), ("false", RuntimeError)):
        with environ(JOBPERSIST_ALLOW_PICKLE=setting):
            if outcome is RuntimeError:
                with pytest.raises(RuntimeError):
                    jobpersist.load_job_checkpoint()
            else:
                assert jobpersist.load_job_checkpoint() == outcome
                assert jobpersist.load_job_result() == {}
    for setting in ("true", "1", "unsafe"):
        with environ(JOBPERSIST_ALLOW_PICKLE=setting):
            with pytest.raises(ValueError, match="JOBPERSIST_ALLOW_PICKLE"):
                jobpersist.load_job_checkpoint()
            assert jobpersist.load_job_checkpoint(allow_pickle=True) == {"a": 1}


def test_default_reads_as_false() -> None:
    import inspect

    default = inspect.signature(jobpersist.load_job_checkpoint).parameters["allow_pickle"].default
    assert default == False and not default and repr(default) == "False"  # noqa: E712
