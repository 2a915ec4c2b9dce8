"""The native plaintext JSON encoder (rust/src/plaintext.rs) against the Python walker.

``EnvelopeWriter.write_json`` must write exactly ``_conversion.to_json_text(key, value)`` and
raise the same exception types, for every input.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import json
import math
import struct
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.backends import python_only_run

import jobpersist
from jobpersist import _codec
from jobpersist._codec.python import codec as _python_codec
from jobpersist._format import conversion as _conversion
from jobpersist._format.conversion import convert_subtree

if python_only_run():
    pytest.skip(
        "JOBPERSIST_BACKEND=python: the native encoder is not tested", allow_module_level=True
    )
# Otherwise a missing compiled module fails the run here, as the backend fixture's native leg
# does (never a silent skip).
from jobpersist import _native


# ------------------------------------------------------------------------------ helpers
def native_json(value: Any) -> bytes:
    """The native encoder's JSON text for ``value`` under key "k"."""
    return _native.encode_json("k", value, convert_subtree)


def _write(codec: Any, tmp: Path, key: Any, value: Any) -> bytes:
    path = tmp / f"out-{id(codec)}.json"
    writer = codec.open_writer(str(path), False)
    try:
        writer.write_json(key, value, convert_subtree)
    except BaseException:
        writer.abort()
        raise
    writer.commit()
    return path.read_bytes()


def _outcome(codec: Any, tmp: Path, key: Any, value: Any) -> bytes | type[BaseException]:
    try:
        return _write(codec, tmp, key, value)
    except (TypeError, ValueError, RuntimeError) as exc:
        return type(exc)


def assert_same(tmp: Path, value: Any, key: Any = "k") -> bytes | type[BaseException]:
    """Native and Python writers agree (bytes, or exception type); returns the outcome."""
    native = _outcome(_native, tmp, key, value)
    python = _outcome(_python_codec, tmp, key, value)
    assert native == python
    # encode_json is the same encoder, collected in memory.
    try:
        assert _native.encode_json(key, value, convert_subtree) == native
    except (TypeError, ValueError, RuntimeError) as exc:
        assert type(exc) is native
    return native


def nest(depth: int, kind: str, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        if kind == "list":
            value = [value]
        elif kind == "tuple":
            value = (value,)
        else:
            value = {"a": value}
    return value


# ------------------------------------------------------------------------------ types
class Color(enum.IntEnum):
    RED = 1
    HUGE = 10**30


class Mode(str, enum.Enum):
    FAST = "fa\u00dft"


class Ratio(float, enum.Enum):
    HALF = 0.5


class LoudInt(int):
    def __repr__(self) -> str:
        return "LoudInt!"


class LoudFloat(float):
    def __repr__(self) -> str:
        return "LoudFloat!"


class LoudStr(str):
    def __str__(self) -> str:
        return "LoudStr!"

    def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
        return b"LoudStr!"


@dataclasses.dataclass
class Point:
    x: float
    y: list[int]


class Plain(enum.Enum):
    ONE = {"one": 1}  # noqa: RUF012 - an enum whose value needs converting


Pair = collections.namedtuple("Pair", "a b")


class MyList(list):  # type: ignore[type-arg]
    pass


class MyDict(dict):  # type: ignore[type-arg]
    pass


# ------------------------------------------------------------------------------ strategies
BOUNDARY_FLOATS = [
    0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
    1.7976931348623157e308, 1e-4, 1e-5, 9.999999999999999e-5, 0.00010000000000000002,
    9.99999999999999e-6, 1e15, 1e16, 1e17, 9999999999999998.0, 1e16 + 2, 123456789012345.6,
    1234567890123456.8, 12345678901234567.0, 0.1, 1 / 3, math.pi, 1e22, 1e23, 2.0**63,
    float("nan"), float("inf"), float("-inf"),
]  # fmt: skip


def _from_bits(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


floats = st.one_of(
    st.floats(),
    st.sampled_from(BOUNDARY_FLOATS),
    st.sampled_from(BOUNDARY_FLOATS).map(lambda f: -f),
    st.integers(0, 2**64 - 1).map(_from_bits),
    st.integers(0, 2**52 - 1).map(_from_bits),  # subnormals
    st.builds(lambda m, e: m * 10.0**e, st.floats(1, 10), st.integers(-7, 18)),
)
ints = st.one_of(
    st.integers(),
    st.integers(-(2**64), 2**64),
    st.integers(-(10**80), 10**80),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 0, -1]),
)
# Every code point, lone surrogates included.
code_points = st.integers(0, 0x10FFFF).map(chr)
texts = st.one_of(st.text(), st.lists(code_points, max_size=8).map("".join))
scalars = st.one_of(
    floats,
    ints,
    texts,
    st.booleans(),
    st.none(),
    st.sampled_from([Color.RED, Color.HUGE, Mode.FAST, Ratio.HALF]),
    ints.map(LoudInt),
    floats.map(LoudFloat),
    texts.map(LoudStr),
)
keys = st.one_of(
    texts,
    floats,
    ints,
    st.booleans(),
    st.none(),
    st.sampled_from([Color.RED, Color.HUGE, Mode.FAST]),
    ints.map(LoudInt),
    floats.map(LoudFloat),
    texts.map(LoudStr),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=6),
    ),
    max_leaves=40,
)
top_keys = st.one_of(texts, ints, floats)


# ------------------------------------------------------------------------------ equality
@given(value=values, key=top_keys)
def test_json_values_match_python_and_json_dumps(tmp_path: Path, value: Any, key: Any) -> None:
    out = assert_same(tmp_path, value, key)
    assert out == json.dumps(value).encode("ascii")


@given(value=floats)
def test_floats(tmp_path: Path, value: float) -> None:
    out = assert_same(tmp_path, [value, {value: value}])
    assert out == json.dumps([value, {value: value}]).encode("ascii")


def test_float_vectors(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    values = BOUNDARY_FLOATS + [-f for f in BOUNDARY_FLOATS]
    values += [_from_bits(rng.getrandbits(64)) for _ in range(100_000)]
    values += [_from_bits(rng.getrandbits(52)) for _ in range(10_000)]
    values += [rng.random() * 10.0 ** rng.randint(-8, 20) for _ in range(100_000)]
    # Large enough to be streamed in several pieces.
    assert assert_same(tmp_path, values) == json.dumps(values).encode("ascii")


def test_special_floats(tmp_path: Path) -> None:
    value = [float("nan"), -float("nan"), float("inf"), -float("inf"), -0.0, 1e16, 1e-5]
    assert assert_same(tmp_path, value) == b"[NaN, NaN, Infinity, -Infinity, -0.0, 1e+16, 1e-05]"
    keyed = {float("nan"): 1, float("inf"): 2, -float("inf"): 3, 1e16: 4, True: 5, None: 6}
    assert assert_same(tmp_path, keyed) == (
        b'{"NaN": 1, "Infinity": 2, "-Infinity": 3, "1e+16": 4, "true": 5, "null": 6}'
    )


def test_scalar_subclasses_write_their_base_value(tmp_path: Path) -> None:
    value = {
        LoudInt(3): LoudInt(5),
        LoudFloat(0.5): LoudFloat(2.5),
        LoudStr("s"): LoudStr("x\ud800"),
        Color.HUGE: Color.RED,
        Mode.FAST: Mode.FAST,
        "r": Ratio.HALF,
        LoudInt(10**30): LoudInt(-(10**30)),
    }
    assert assert_same(tmp_path, value) == json.dumps(value).encode("ascii")


def test_converted_types(tmp_path: Path) -> None:
    value = {
        "set": {3, 1, 2},
        "frozenset": frozenset({"a"}),
        "deque": collections.deque([1, [2, {3}]]),
        "date": datetime.date(2024, 2, 29),
        "datetime": datetime.datetime(2024, 1, 1, 12, 30),
        "delta": datetime.timedelta(seconds=1.5),
        "decimal": [decimal.Decimal("1.5"), decimal.Decimal("10")],
        "uuid": uuid.UUID(int=5),
        "path": Path("/tmp/x"),
        "bytes": b"abc",
        "point": Point(1.0, [2, 3]),
        "enum": Plain.ONE,
        "pair": Pair(1, (2, 3)),
        "mylist": MyList([1, MyList([2])]),
        "mydict": MyDict(a=MyDict(b=1)),
        "ordered": collections.OrderedDict([("z", 1), ("a", 2)]),
        "tuple": (1, (2, 3), []),
        "empty": [[], {}, ()],
    }
    out = assert_same(tmp_path, value)
    assert isinstance(out, bytes)
    assert out == _conversion.to_json_text("k", value)


def test_streams_large_values(tmp_path: Path) -> None:
    value = {
        "s": ["x" * 1000] * 5000,
        "n": list(range(300_000)),
        "d": {str(i): i for i in range(10**5)},
    }
    assert assert_same(tmp_path, value) == json.dumps(value).encode("ascii")


# ------------------------------------------------------------------------------ errors
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["list", "tuple", "dict"])
def test_very_deep_nesting_is_value_error(tmp_path: Path, kind: str) -> None:
    assert assert_same(tmp_path, nest(100_000, kind)) is ValueError
    with pytest.raises(ValueError, match="nested"):
        native_json(nest(100_000, kind))


def test_depth_limit_matches_max_depth(tmp_path: Path) -> None:
    # The Rust encoder hardcodes the limit (rust/src/plaintext.rs MAX_DEPTH).
    assert _conversion.MAX_DEPTH == 512
    assert native_json(nest(512, "list")) == b"[" * 512 + b"1" + b"]" * 512
    with pytest.raises(ValueError, match=r"deeper than 512 levels at \['k'\]\[0\]\[0\]"):
        native_json(nest(513, "list"))
    with pytest.raises(ValueError):
        native_json(nest(512, "list", leaf=[]))
    # Converted objects count as levels too, as in the Python walker.
    with pytest.raises(ValueError):
        native_json(nest(512, "list", leaf={1}))
    # The Python walker reaches the limit without any recursion headroom.
    assert assert_same(tmp_path, nest(512, "dict")) == b'{"a": ' * 512 + b"1" + b"}" * 512
    assert assert_same(tmp_path, nest(513, "dict")) is ValueError
    assert (
        assert_same(tmp_path, nest(500, "list", leaf=MyList([1]))) == b"[" * 501 + b"1" + b"]" * 501
    )


def test_circular_references(tmp_path: Path) -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.raises(ValueError, match=r"Circular reference detected at \['k'\]\[1\]"):
        native_json(looped)
    assert assert_same(tmp_path, looped) is ValueError

    inner: dict[str, Any] = {}
    outer = {"a": [inner]}
    inner["back"] = outer
    with pytest.raises(
        ValueError, match=r"Circular reference detected at \['k'\]\['a'\]\[0\]\['back'\]"
    ):
        native_json(outer)
    assert assert_same(tmp_path, outer) is ValueError

    # Through a converted container, and deep enough for the set-based id tracking.
    deep: list[Any] = []
    node = deep
    for _ in range(100):
        child: list[Any] = []
        node.append(child)
        node = child
    node.append(MyList([deep]))
    assert assert_same(tmp_path, deep) is ValueError
    node[0] = deep
    assert assert_same(tmp_path, deep) is ValueError

    # Shared (not circular) containers are fine.
    shared = [1, 2]
    assert assert_same(tmp_path, {"a": shared, "b": [shared, shared]}) == (
        b'{"a": [1, 2], "b": [[1, 2], [1, 2]]}'
    )


@pytest.mark.parametrize("bad", [(1, 2), b"bytes", frozenset(), 1j, decimal.Decimal(1), Color])
def test_unsupported_key_is_type_error(tmp_path: Path, bad: Any) -> None:
    value = {"ok": 1, "inner": [0, {"x": 1, bad: 2}]}
    assert assert_same(tmp_path, value) is TypeError
    with pytest.raises(TypeError, match=r"at \['k'\]\['inner'\]\[1\]: keys must be"):
        native_json(value)


def test_unconvertible_values_are_type_errors(tmp_path: Path) -> None:
    for value in ([object()], {"a": (x for x in range(3))}, {"a": 1j}, [decimal.Decimal("NaN")]):
        assert assert_same(tmp_path, value) is TypeError


def test_huge_int_errors_follow_conversion_errors(tmp_path: Path) -> None:
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    if not limit:
        pytest.skip("no int digit limit")
    huge = 10 ** (limit + 10)
    assert assert_same(tmp_path, [huge]) is ValueError
    assert assert_same(tmp_path, {huge: 1}) is ValueError
    # json.dumps fails only after the conversion, whose TypeError wins.
    assert assert_same(tmp_path, [huge, {(1,): 2}]) is TypeError
    assert assert_same(tmp_path, [LoudInt(huge), object()]) is TypeError


def test_mutation_during_conversion_is_detected(tmp_path: Path) -> None:
    parent: dict[str, Any] = {}

    class Grower(list):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            parent[f"new{len(parent)}"] = 1
            return super().__iter__()

    parent["a"] = Grower([1])
    assert assert_same(tmp_path, parent) is RuntimeError


# ------------------------------------------------------------------------------ end to end
@pytest.fixture
def checkpoint_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "job")
    monkeypatch.setenv("JOBPERSIST_FSYNC", "0")
    return tmp_path


def _save_with(backend: str, data: dict[str, Any], suffix: str) -> None:
    previous = _codec.BACKEND
    _codec.use(backend)
    try:
        jobpersist.save_job_checkpoint(data, checkpoint_file_suffix=suffix)
    finally:
        _codec.use(previous)


def test_save_job_checkpoint_files_identical(checkpoint_dir: Path) -> None:
    data = {
        "params": [i / 7 for i in range(50_000)] + [float("nan"), -0.0, 1e-5, 1e16],
        "loss": 0.5,
        "step": 10,
        "meta": {"name": "r\u00e9sum\u00e9 \U0001f600", "tags": ("a", "b"), 1: None},
    }
    _save_with("native", data, "n")
    _save_with("python", data, "p")
    native = (checkpoint_dir / "job_n.json").read_bytes()
    assert native == (checkpoint_dir / "job_p.json").read_bytes()

    try:
        from braket.jobs.data_persistence import save_job_checkpoint as reference
    except ImportError:  # pragma: no cover - the reference is a test dependency
        return
    reference(data, checkpoint_file_suffix="r")
    assert native == (checkpoint_dir / "job_r.json").read_bytes()


def test_numpy_array_in_plaintext_is_type_error(checkpoint_dir: Path, backend_name: str) -> None:
    np = pytest.importorskip("numpy")
    with pytest.raises(TypeError, match=r"\['weights'\]"):
        _save_with(backend_name, {"weights": np.zeros(3)}, backend_name)
    with pytest.raises(TypeError, match=r"\['nested'\]\['w'\]\[1\]"):
        _save_with(backend_name, {"nested": {"w": [1, np.zeros(3)]}}, backend_name)
    assert not list(checkpoint_dir.iterdir())
