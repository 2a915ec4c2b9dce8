"""Large arrays anywhere in a pickled value stream from their memory, and the
bytes stay exactly those of ``pickle.dumps(value, protocol=4)``."""

from __future__ import annotations

import base64
import copyreg
import dataclasses
import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.jobenv import child_env
from support.memory import peak_extra_memory
from support.reference import Twin

import jobpersist
from jobpersist._pickle import dump as _array_pickle
from jobpersist._pickle.dump import PickleStream

pnp = pytest.importorskip("pennylane.numpy")

RNG = np.random.default_rng(12)
# Big enough to stream (128 KiB or more).
N = 17_000  # float64 items: 136,000 bytes


class RecordingWriter:
    """An envelope writer's ``write``, keeping every piece (and what kind it was)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.views = 0

    def write(self, data: Any) -> int:
        if isinstance(data, memoryview):
            self.views += 1
        self.parts.append(bytes(data))
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


def stream_dump(value: Any, **kwargs: Any) -> tuple[bytes, PickleStream, RecordingWriter]:
    writer = RecordingWriter()
    stream = PickleStream(writer, **kwargs)  # type: ignore[arg-type]
    stream.dump(value)
    return writer.getvalue(), stream, writer


@dataclasses.dataclass
class Holder:
    weights: Any
    extra: Any = None


class Plain:
    def __init__(self, a: Any, b: Any) -> None:
        self.a = a
        self.b = b


class Stamped(np.ndarray):
    """A subclass whose reduce adds state numpy's does not: it must not stream."""

    def __reduce__(self) -> Any:
        func, args, state = cast(tuple[Any, Any, Any], super().__reduce__())
        return func, args, (*state, float(np.asarray(self).sum()))

    def __setstate__(self, state: Any) -> None:
        super().__setstate__(state[:-1])


class Registered(np.ndarray):
    """A subclass pickled through copyreg: pickle's way wins."""


def _reduce_registered(obj: Any) -> Any:
    return (np.asarray, (np.asarray(obj).copy(),))


@pytest.fixture(autouse=True)
def _registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(copyreg.dispatch_table, Registered, _reduce_registered)


BIG = RNG.random(N)
BIG2 = RNG.random(2 * N)
F_ORDER = np.asfortranarray(RNG.random((120, 360)))
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)  # numpy on np.matrix
    MATRIX = np.asmatrix(RNG.random((150, 150)))
DTYPES = [
    "i1", "u1", "i2", "u2", "<i4", ">i4", "u4", "<i8", ">i8", "u8",
    "f2", "<f4", ">f4", "<f8", ">f8", "c8", "<c16", ">c16", "?", "M8[ns]", "m8[s]", "S7",
    "U3", "V12",
]  # fmt: skip


def _typed(dtype: str) -> np.ndarray:
    raw = RNG.integers(0, 256, size=160_000, dtype=np.uint8)
    itemsize = np.dtype(dtype).itemsize
    return raw[: raw.size // itemsize * itemsize].view(dtype)


# (name, value, how many arrays stream)
CASES: list[tuple[str, Any, int]] = [
    ("top level", BIG, 1),
    ("nested dicts", {"state": {f"w{i}": RNG.random(N) for i in range(4)}}, 4),
    ("list of arrays", [RNG.random(N) for _ in range(5)], 5),
    ("tuple and list", ([BIG], (RNG.random(N), 3, "x")), 2),
    ("same array twice", {"a": BIG, "b": [BIG, BIG]}, 1),
    ("array and its views", [BIG2, BIG2[1:], BIG2[::2], BIG2.reshape(2, -1)], 4),
    ("dataclass state", Holder(BIG, {"m": RNG.random(N)}), 2),
    ("object state", Plain(F_ORDER, [BIG]), 2),
    ("fortran", F_ORDER, 1),
    ("transposed fortran", F_ORDER.T, 1),
    ("non-contiguous fortran", F_ORDER[:, ::2], 1),
    ("strided", RNG.random(3 * N)[::3], 1),
    ("negative strides", RNG.random(N)[::-1], 1),
    ("broadcast", np.broadcast_to(RNG.random(N), (3, N)), 1),
    ("3d permuted", RNG.random((30, 40, 50)).transpose(1, 2, 0), 1),
    ("0-d structured", np.zeros((), dtype=[("a", "<f8", (N,))]), 1),
    ("0-d small", np.array(3.5), 0),
    ("empty", np.zeros((0, N)), 0),
    ("small and big", [RNG.random(10), BIG, np.arange(5), {"s": RNG.random(N)}], 2),
    ("objects", np.array([1, "a", None] * 10_000, dtype=object), 0),
    ("objects beside", [np.array([{"k": 1}] * 20_000, dtype=object), BIG], 1),
    ("structured", np.zeros(N, dtype=[("a", "<i4"), ("b", ">f8")]), 1),
    ("matrix", MATRIX, 1),
    ("recarray", np.rec.array(np.zeros(N, dtype=[("a", "<i8")])), 1),
    ("masked (own reduce)", np.ma.masked_array(BIG, mask=BIG > 0.5), 0),
    ("stamped (unknown reduce)", RNG.random(N).view(Stamped), 0),
    # Pickled as registered: the plain copy its reducer returns streams.
    ("copyreg registered", RNG.random(N).view(Registered), 1),
    ("tensor requires_grad", pnp.tensor(RNG.random(N), requires_grad=True), 1),
    ("tensor no grad", pnp.tensor(RNG.random((180, 100)), requires_grad=False), 1),
    (
        "tensors in a dict",
        {
            "params": [pnp.tensor(RNG.random(N), requires_grad=i % 2 == 0) for i in range(3)],
            "opt": {"m": BIG},
        },
        4,
    ),
    ("tensor fortran", pnp.tensor(np.asfortranarray(RNG.random((200, 90)))), 1),
    *((f"dtype {d}", {"x": [_typed(d)]}, 1) for d in DTYPES),
    ("bool", RNG.random(160_000) > 0.5, 1),
    # One value, several dtypes and layouts: each dtype's form is checked once, then reused.
    (
        "dtypes mixed",
        [BIG, BIG.astype(">f8"), BIG2.astype("f4"), F_ORDER, BIG2.astype("<i4"), BIG, BIG2[::2]],
        6,
    ),
    ("float16 2d", RNG.random((400, 200)).astype(np.float16), 1),
]


@pytest.mark.parametrize(("name", "value", "streamed"), CASES, ids=[c[0] for c in CASES])
def test_stream_writes_pickle_dumps(name: str, value: Any, streamed: int) -> None:
    data, stream, writer = stream_dump(value)
    assert data == pickle.dumps(value, protocol=4)
    # Every array big enough went through the placeholder path, written from its memory.
    assert stream.swapped == streamed
    assert writer.views >= streamed


@pytest.mark.usefixtures("backend")
def test_saved_files_hold_pickle_dumps(job_env: Any) -> None:
    data = {name: value for name, value, _ in CASES}
    jobpersist.save_job_checkpoint(data, data_format="pickled_v4")
    stored = json.loads(job_env.checkpoint_file().read_bytes())["dataDictionary"]
    for name, value in data.items():
        assert base64.decodebytes(stored[name].encode()) == pickle.dumps(value, protocol=4), name
    loaded = jobpersist.load_job_checkpoint(allow_pickle=True)
    assert type(loaded["tensor requires_grad"]) is type(data["tensor requires_grad"])
    assert loaded["tensor requires_grad"].requires_grad is True
    assert loaded["tensor no grad"].requires_grad is False
    assert np.array_equal(
        loaded["nested dicts"]["state"]["w3"], data["nested dicts"]["state"]["w3"]
    )
    assert np.array_equal(loaded["fortran"], F_ORDER) and loaded["fortran"].flags.f_contiguous


@pytest.mark.usefixtures("backend")
def test_files_equal_the_reference(twin: Twin) -> None:
    # The shapes of the issue, scaled down; real sizes (>= 1 MiB) among them.
    data = {
        "state": {f"w{i}": RNG.random(1 << 17) for i in range(4)},
        "params": [RNG.random(1 << 14) for _ in range(8)],
        "tensor": pnp.tensor(RNG.random((512, 512)), requires_grad=True),
        "mixed": [BIG, BIG, {"small": np.arange(3), "f": F_ORDER}, "text", 1.5],
    }
    twin.step(lambda api: api.save_job_checkpoint(data, "", api.Format.PICKLED_V4))


@pytest.mark.usefixtures("backend")
def test_background_saves_write_the_same_file(job_env: Any) -> None:
    data = {"state": {"w": RNG.random(1 << 17), "t": pnp.tensor(RNG.random(N))}, "v": [BIG, BIG]}
    jobpersist.save_job_checkpoint(data, "sync", data_format="pickled_v4")
    jobpersist.save_job_checkpoint_async(data, "async", data_format="pickled_v4").result()
    assert (
        job_env.checkpoint_file("async").read_bytes()
        == job_env.checkpoint_file("sync").read_bytes()
    )


def test_small_arrays_do_not_stream() -> None:
    value = [RNG.random(128) for _ in range(50)]
    data, stream, writer = stream_dump(value)
    assert data == pickle.dumps(value, protocol=4)
    assert stream.swapped == 0 and writer.views == 0
    assert not stream.redirected


def test_stream_is_reusable_and_memo_is_per_value() -> None:
    writer = RecordingWriter()
    stream = PickleStream(writer)  # type: ignore[arg-type]
    expected = b""
    for value in ([BIG, BIG], {"k": BIG}, (1, 2), [RNG.random(N)], "text"):
        stream.dump(value)
        expected += pickle.dumps(value, protocol=4)
        assert not stream.redirected
    assert writer.getvalue() == expected
    assert stream.swapped == 3


def test_instance_level_reduce_is_respected() -> None:
    tensor = pnp.tensor(RNG.random(N), requires_grad=True)
    tensor.__reduce_ex__ = lambda protocol: (list, ([1, 2],))  # type: ignore[method-assign]
    data, stream, _ = stream_dump([tensor])
    assert data == pickle.dumps([tensor], protocol=4)
    assert stream.swapped == 0


def test_requires_grad_set_after_creation() -> None:
    tensor = pnp.tensor(RNG.random(N), requires_grad=False)
    tensor.requires_grad = True
    data, stream, _ = stream_dump({"t": tensor, "again": tensor})
    assert data == pickle.dumps({"t": tensor, "again": tensor}, protocol=4)
    assert stream.swapped == 1
    assert pickle.loads(data)["t"].requires_grad is True


def test_without_numpy_the_pickler_has_no_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "numpy", None)
    data, stream, _ = stream_dump({"a": [1, 2.5, "x"], "b": (None, True)})
    assert data == pickle.dumps({"a": [1, 2.5, "x"], "b": (None, True)}, protocol=4)
    # Without numpy the pickler keeps copyreg's table: no hook at all.
    assert not hasattr(stream.pickler, "dispatch_table")


def test_placeholder_copied_into_a_frame_fails_the_dump() -> None:
    # Below the frame size the pickler copies the placeholder into a frame: never written.
    with pytest.raises(RuntimeError, match="not written"):
        stream_dump([RNG.random(100)], min_bytes=16)


def test_an_error_mid_value_resets_the_stream() -> None:
    class Boom:
        def __reduce__(self) -> Any:
            raise ValueError("boom")

    writer = RecordingWriter()
    stream = PickleStream(writer)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="boom"):
        stream.dump([BIG, Boom()])
    assert not stream.redirected
    before = len(writer.getvalue())
    stream.dump([BIG])
    assert writer.getvalue()[before:] == pickle.dumps([BIG], protocol=4)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = draw(st.sampled_from(["<f8", ">f4", "<i2", "u1", "c8", "?", "f2", ">u8"]))
    itemsize = np.dtype(dtype).itemsize
    big = draw(st.booleans())
    items = (131072 // itemsize + draw(st.integers(0, 3000))) if big else draw(st.integers(0, 40))
    rows = draw(st.sampled_from([1, 2, 3, 8]))
    base = RNG.integers(0, 256, size=(items // rows + 1) * rows * itemsize, dtype=np.uint8)
    array = base.view(dtype).reshape(rows, -1)
    layout = draw(st.sampled_from(["c", "f", "t", "step", "flip", "0d"]))
    if layout == "f":
        array = np.asfortranarray(array)
    elif layout == "t":
        array = array.T
    elif layout == "step":
        array = array[:, ::2]
    elif layout == "flip":
        array = array[::-1]
    elif layout == "0d":
        array = array[0, 0]
        array = np.asarray(array)
    if draw(st.booleans()):
        array = pnp.tensor(array, requires_grad=draw(st.booleans()))
    return array


values = st.recursive(
    arrays() | st.integers() | st.text(max_size=3) | st.none(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=6,
)


@given(st.lists(values, min_size=1, max_size=3), st.data())
def test_any_nesting_is_pickle_dumps(parts: list[Any], data: st.DataObject) -> None:
    value: Any = parts
    if len(parts) > 1 and data.draw(st.booleans()):
        value = [*parts, parts[0]]  # shared references: memo GETs
    out, _, _ = stream_dump(value)
    assert out == pickle.dumps(value, protocol=4)


@pytest.mark.slow
def test_nested_arrays_are_not_copied(tmp_path: Path, backend_name: str) -> None:
    # 96 MiB of arrays in a nested dict and a list (64 x 1 MiB): a copy of the payload, or
    # the placeholders' pages kept resident, would show in the peak.
    setup = """
        import numpy as np
        import jobpersist

        rng = np.random.default_rng(5)
        data = {
            "state": {f"w{i}": rng.random(1 << 20) for i in range(4)},
            "params": [rng.random(1 << 17) for _ in range(64)],
        }
    """
    action = 'jobpersist.save_job_checkpoint(data, data_format="pickled_v4")'
    extra = peak_extra_memory(backend_name, tmp_path, setup, action)
    assert extra < 16 << 20, f"peak extra {extra / (1 << 20):.0f} MiB for 96 MiB of arrays"


def test_arrays_from_the_threshold_on_stream() -> None:
    at = np.zeros(_array_pickle._MIN_BYTES, dtype=np.uint8)
    below = at[1:]
    assert stream_dump([below])[1].swapped == 0
    assert stream_dump([at])[1].swapped == 1
    # A threshold below the frame size is refused at dump time, not written (see above).
    assert _array_pickle._MIN_BYTES >= _array_pickle._FRAME_BYTES


_PLACEHOLDER_MEMORY = """
import os
from jobpersist import _codec

def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

size, count = 4 << 20, 16
# Memory the process used and freed, still resident: freeing an 8 MiB block raises glibc's
# mmap threshold, so the 4 MiB blocks come from the heap, and the 1 MiB block after them
# keeps the heap from shrinking when they are freed. The placeholders then take that
# memory; holding it, they would make the next allocation take fresh pages.
big = bytearray(8 << 20)
del big
churn = [b"\\x01" * size for _ in range(count)]
pin = b"\\x03" * (1 << 20)
del churn
before = resident()
held = [_codec.CODEC.placeholder(size) for _ in range(count)]
touched = b"\\x02" * (size * count)
grown = resident() - before
assert all(type(b) is bytes and len(b) == size for b in held)
assert len(touched) == size * count and len(pin) == 1 << 20
assert _codec.CODEC.placeholder(0) == b""
print(grown)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_placeholders_hold_no_memory(backend: str) -> None:
    # In a fresh interpreter: the heap's state decides where the placeholders land.
    out = subprocess.run(
        [sys.executable, "-c", _PLACEHOLDER_MEMORY],
        env=child_env(backend),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    grown = int(out.stdout.split()[-1])
    assert grown < 32 << 20, f"{grown >> 20} MiB more resident for 64 MiB of placeholders"
