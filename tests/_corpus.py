"""Values for the differential tests: a hand-written corpus and hypothesis strategies.

Types are defined here, at module level, so that pickles of them load anywhere.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import uuid
from collections import OrderedDict, deque, namedtuple
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum, IntEnum, IntFlag
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from braket.schema_common import BraketSchemaHeader
from hypothesis import strategies as st
from pydantic import v1 as pydantic_v1
from pydantic.v1.color import Color as PydanticColor
from pydantic.v1.networks import NameEmail


class Color(Enum):
    RED = "red"
    GREEN = 2
    BLUE = (1, 2)


class Level(IntEnum):
    LOW = 1
    HIGH = 2


class Mode(str, Enum):
    FAST = "fast"
    SLOW = "slow"


Point = namedtuple("Point", "x y")


@dataclass
class Record:
    a: int
    b: list = field(default_factory=list)
    c: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Frozen:
    x: int
    y: str = "y"


class MyStr(str):
    pass


class MyList(list):
    pass


class MyFloat(float):
    pass


class ReprInt(int):
    def __repr__(self) -> str:
        return "REPR"

    def __str__(self) -> str:
        return "STR"


class ReprFloat(float):
    def __repr__(self) -> str:
        return "REPR"


class StrStr(str):
    def __str__(self) -> str:
        return "STR"


class Perm(IntFlag):
    R = 4
    W = 2


UTC = datetime.timezone.utc
PLUS_5_30 = datetime.timezone(datetime.timedelta(hours=5, minutes=30))

FLOATS = [
    float("nan"),
    float("inf"),
    float("-inf"),
    -0.0,
    0.0,
    5e-324,
    2.2250738585072014e-308,
    1e-310,
    1e16,
    1e-5,
    0.0001,
    1e22,
    1.7976931348623157e308,
    0.1,
    1 / 3,
    123456789.0,
    -1.5,
]
HUGE_INTS = [2**63 - 1, -(2**63), 2**64, -(2**64) - 1, 2**1000, 10**100, -(10**300)]
STRINGS = [
    "",
    "plain",
    "h\u00e9llo w\u00f6rld",
    "\u65e5\u672c\u8a9e",
    "\U0001f600\U0001f680",
    "\ud800",
    "\udfff",
    "a\udc80b",
    "\ud83d",
    "\x00\x01\x1f\x7f",
    "\u2028\u2029",
    '"\\/\b\f\n\r\t',
    "</script>",
]
KEY_STRINGS = [s for s in STRINGS if s] + ["", "NaN", "1", "true", "null"]

# (name, value): values both formats can hold.
PLAINTEXT_CORPUS: list[tuple[str, Any]] = [
    ("scalars", [None, True, False, 0, 1, -1, "s"]),
    ("nested", {"a": [1, 2.5, {"b": (3, [4, None])}], "c": True, "d": {"e": {"f": []}}}),
    ("empty_containers", [{}, [], (), "", set(), frozenset()]),
    ("floats", FLOATS),
    ("float_values_dict", {str(i): f for i, f in enumerate(FLOATS)}),
    ("huge_ints", HUGE_INTS),
    ("strings", STRINGS),
    ("string_keys", {s: i for i, s in enumerate(KEY_STRINGS)}),
    ("long_string", "x" * 100_000 + "\u00e9" * 1000),
    ("int_keys", {1: "a", -5: "b", 2**70: "c"}),
    ("float_keys", {2.5: "a", float("nan"): "b", float("inf"): "c", float("-inf"): "d"}),
    ("neg_zero_key", {-0.0: "z"}),
    ("bool_keys", {True: "t", False: "f"}),
    ("none_key", {None: "n"}),
    ("mixed_keys", {"1": "str", 2: "int", 3.5: "float", None: "none", False: "bool"}),
    ("colliding_nested_keys", {1: "int one", "1": "str one"}),
    ("int_enum_key", {Level.HIGH: "high"}),
    ("str_enum_key", {Mode.FAST: "fast"}),
    ("set_ints", {3, 1, 2, 100, -7}),
    ("set_strings", {"b", "a", "c", "\u00e9"}),
    ("frozenset_floats", frozenset({1.5, 2.5, float("inf")})),
    ("set_mixed_scalars", {1, "a", 2.5, None}),
    ("datetime", datetime.datetime(2024, 1, 2, 3, 4, 5, 678)),
    ("datetime_tz", datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("datetime_tz_offset", datetime.datetime(1999, 12, 31, 23, 59, 59, 999999, PLUS_5_30)),
    ("date", datetime.date(2020, 2, 29)),
    ("time", datetime.time(1, 2, 3, 4)),
    ("time_tz", datetime.time(23, 0, tzinfo=UTC)),
    ("timedelta", datetime.timedelta(days=1, seconds=5, microseconds=7)),
    ("timedelta_negative", datetime.timedelta(days=-3, microseconds=1)),
    ("decimal_integral", Decimal("10")),
    ("decimal_exponent", Decimal("1E+3")),
    ("decimal_fraction", Decimal("1.50")),
    ("decimal_negative_small", Decimal("-0.001")),
    ("decimal_huge", Decimal("123456789012345678901234567890")),
    ("decimal_list", [Decimal("0"), Decimal("-0"), Decimal("2.5E-10")]),
    ("enum", [Color.RED, Color.GREEN, Color.BLUE]),
    ("int_enum", [Level.LOW, Level.HIGH]),
    ("str_enum", [Mode.FAST, Mode.SLOW]),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("uuid_list", [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]),
    ("path", Path("/tmp/some dir/file.txt")),
    ("bytes", b"abc"),
    ("bytes_utf8", "h\u00e9 \U0001f600".encode()),
    ("dataclass", Record(1, [2, (3, Decimal("4.5"))], {"k": datetime.date(2000, 1, 1)})),
    ("frozen_dataclass", Frozen(3)),
    ("nested_dataclass", Record(1, [Record(2)], {"r": Frozen(4, "z")})),
    ("deque", deque([1, 2, (3, 4)])),
    ("deque_maxlen", deque([1, 2, 3], maxlen=2)),
    ("namedtuple", Point(1, 2)),
    ("namedtuple_nested", Point(datetime.date(2021, 5, 6), [Point(1, 2)])),
    ("ipv4", ipaddress.IPv4Address("192.168.0.1")),
    ("ipv6_network", ipaddress.IPv6Network("2001:db8::/32")),
    ("ipv4_interface", ipaddress.IPv4Interface("10.0.0.1/8")),
    ("pattern", re.compile(r"a+b\d")),
    ("ordered_dict", OrderedDict([("z", 1), ("a", 2)])),
    ("str_subclass", MyStr("sub")),
    ("list_subclass", MyList([1, MyStr("x")])),
    ("float_subclass", MyFloat(2.5)),
    ("subclasses_with_own_repr", [ReprInt(5), ReprFloat(1.5), StrStr("s"), Perm.R | Perm.W]),
    ("subclass_keys", {ReprInt(5): 1, ReprFloat(2.5): 2, StrStr("k"): 3, Perm.R | Perm.W: 4}),
    ("numpy_float64", np.float64(1.25)),
    ("numpy_float64_nan", np.float64("nan")),
    (
        "mixed_everything",
        {
            "when": [datetime.datetime(2020, 1, 1), datetime.timedelta(seconds=1.5)],
            "ids": [uuid.UUID(int=5)],
            "money": Decimal("3.14"),
            "mode": Mode.SLOW,
            "level": Level.LOW,
            "raw": b"bytes",
            "where": Path("rel/path"),
        },
    ),
]


class Model(pydantic_v1.BaseModel):
    a: int
    b: list


class RootModel(pydantic_v1.BaseModel):
    __root__: list


# (name, value): pydantic v1 objects, which the reference's encoder (pydantic's own) writes:
# models as their ``.dict()``, and pydantic's types through its ENCODERS_BY_TYPE.
PYDANTIC_CORPUS: list[tuple[str, Any]] = [
    ("braket_schema_header", BraketSchemaHeader(name="braket.x", version="1")),
    ("model", Model(a=1, b=[(1, 2), "x"])),
    ("nested_model", {"m": [Model(a=2, b=[])]}),
    ("secret_str", pydantic_v1.SecretStr("hidden")),
    ("secret_bytes", pydantic_v1.SecretBytes(b"hidden")),
    ("color", PydanticColor("red")),
    ("name_email", NameEmail("Ann", "ann@example.com")),
    # As pydantic's .dict() of a custom-root model, which the reference's .dict() unwraps.
    ("custom_root_model", RootModel(__root__=[1, (2, 3)])),
    ("model_in_dataclass", Record(1, [Model(a=3, b=[])])),
    ("model_in_tuple_in_set", {(1, "x")}),
]

# (name, value): sets whose items the reference writes through its encoder (tuples stay
# tuples while its ``.dict()`` rebuilds the set; enums, dates, ... are converted only when
# json.dumps meets them, after ``list(the_set)`` fixed the order).
SET_ITEMS_CORPUS: list[tuple[str, Any]] = [
    ("set_of_tuples", {(1, 2), (3, 4), ("a", None)}),
    ("frozenset_of_tuples", frozenset({(1, 2)})),
    ("set_of_frozensets", {frozenset({1}), frozenset({2, 3})}),
    ("set_of_namedtuples", {Point(1, 2), Point(3, 4)}),
    ("set_of_frozen_dataclasses", {Frozen(1), Frozen(2, "b")}),
    ("set_of_enums", {Color.RED, Color.GREEN, Mode.FAST, Mode.SLOW}),
    ("set_of_dates", {datetime.date(2020, 1, d) for d in range(1, 20)}),
    ("set_of_uuids", {uuid.UUID(int=i * 7919) for i in range(20)}),
    ("set_of_paths", {Path(f"/p{i}") for i in range(20)}),
    ("set_of_bytes", {f"b{i}".encode() for i in range(20)}),
    ("dataclass_holding_set_of_tuples", Record(1, [{(1, 2)}])),
]

# (name, value): values that only the pickled format holds (the reference's plaintext fails
# on them too).
PICKLE_ONLY_CORPUS: list[tuple[str, Any]] = [
    ("numpy_array", np.arange(12, dtype=np.float64).reshape(3, 4) / 7),
    ("numpy_big_array", np.arange(300_000, dtype=np.int64)),
    ("numpy_int_scalar", np.int64(7)),
    ("numpy_complex", np.array([1 + 2j, float("nan")])),
    ("complex", complex(1, -2)),
    ("object_key_dict", {(1, 2): "tuple key"}),
    ("pure_path", PurePosixPath("/a/b")),
    ("bytes_not_utf8", b"\xff\xfe\x00"),
    ("decimal_nan", Decimal("NaN")),
    ("decimal_inf", Decimal("-Infinity")),
    ("range", range(5)),
    ("bytearray", bytearray(b"ab")),
    ("cyclic_list", None),  # built below
    ("shared_refs", None),  # built below
    ("big_bytes", bytes(range(256)) * 2000),
]


def _cyclic() -> list[Any]:
    cyclic: list[Any] = [1, 2]
    cyclic.append(cyclic)
    return cyclic


def _shared() -> dict[str, Any]:
    inner = ["shared", "value"]
    return {"a": inner, "b": inner, "c": [inner, inner]}


PICKLE_ONLY_CORPUS = [
    (name, _cyclic() if name == "cyclic_list" else _shared() if name == "shared_refs" else v)
    for name, v in PICKLE_ONLY_CORPUS
]

# Top-level keys of other types, as the reference's schema coerces them to str.
TOP_LEVEL_KEY_CORPUS: list[tuple[str, dict[Any, Any]]] = [
    ("int", {1: "a", -20: "b", 2**80: "c"}),
    ("float", {2.5: "a", float("nan"): "b", float("-inf"): "c", -0.0: "d", 1e16: "e"}),
    ("bool", {True: "t", False: "f"}),
    ("decimal", {Decimal("1.50"): "a", Decimal("1E+3"): "b", Decimal("NaN"): "c"}),
    ("str_enum", {Mode.FAST: "a", Mode.SLOW: "b"}),
    ("int_enum", {Level.HIGH: "h"}),
    ("bytes", {b"bk": "b"}),
    ("str_subclass", {MyStr("sub"): 1}),
    ("subclasses_with_own_repr", {ReprInt(5): 1, ReprFloat(2.5): 2, StrStr("k"): 3}),
    ("int_flag", {Perm.R | Perm.W: 1}),
    ("colliding", {1: "int", "1": "str", 2.0: "float", "2.0": "str float"}),
    ("astral_and_surrogate", {"\U0001f600": 1, "\ud800": 2, "\x00": 3}),
]


# --------------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------------
def texts(max_size: int = 12) -> st.SearchStrategy[str]:
    """Unicode text including astral characters and lone surrogates."""
    return st.text(
        st.one_of(
            st.characters(),
            st.characters(categories=["Cs"]),
            st.sampled_from('aé\x00"\\/\n'),
        ),
        max_size=max_size,
    )


floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.sampled_from(FLOATS),
)
ints = st.one_of(st.integers(), st.integers(min_value=-(2**200), max_value=2**200))
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts())
# Keys json.dumps accepts in nested dicts.
nested_keys = st.one_of(texts(8), st.integers(-1000, 2**70), floats, st.booleans(), st.none())
# Items whose conversion is the identity (sets of converted items are a separate case).
hashable_plain = st.one_of(
    st.none(), st.booleans(), st.integers(-50, 50), texts(4), st.floats(allow_nan=False)
)
# Hashable items the reference converts only after it rebuilt the set (tuples stay tuples
# while the set is rebuilt; enums, dates, ... hash differently from what they become).
hashable_items = st.one_of(
    hashable_plain,
    st.tuples(hashable_plain, hashable_plain),
    st.frozensets(hashable_plain, max_size=3),
    st.sampled_from([Color.RED, Color.GREEN, Level.LOW, Level.HIGH, Mode.FAST, Mode.SLOW]),
    st.dates(),
    st.uuids(),
    st.builds(Frozen, st.integers(-5, 5), texts(3)),
    st.builds(Point, hashable_plain, hashable_plain),
    st.text(max_size=4).map(str.encode),
)

special = st.one_of(
    st.datetimes(timezones=st.one_of(st.none(), st.just(UTC))),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.decimals(min_value=-(10**20), max_value=10**20, allow_nan=False, allow_infinity=False),
    st.sampled_from([Color.RED, Color.GREEN, Level.LOW, Level.HIGH, Mode.FAST, Mode.SLOW]),
    st.uuids(),
    st.builds(Path, st.text("abc/", max_size=8)),
    st.text(max_size=6).map(str.encode),
    st.builds(Frozen, st.integers(-5, 5), texts(3)),
)


def values() -> st.SearchStrategy[Any]:
    """Nested values of everything the plaintext format holds."""
    leaves = st.one_of(scalars, special)

    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.lists(children, max_size=5),
            st.lists(children, max_size=4).map(tuple),
            st.dictionaries(nested_keys, children, max_size=5),
            st.sets(hashable_items, max_size=6),
            st.frozensets(hashable_items, max_size=5),
            st.dictionaries(nested_keys, children, max_size=3).map(OrderedDict),
            st.lists(children, max_size=3).map(MyList),
            st.builds(Model, a=st.integers(), b=st.lists(children, max_size=3)),
            st.lists(children, max_size=4).map(deque),
            st.tuples(children, children).map(lambda t: Point(*t)),
            st.builds(Record, st.integers(), st.lists(children, max_size=3)),
        )

    return st.recursive(leaves, extend, max_leaves=20)


top_keys = st.one_of(
    texts(10),
    st.integers(-100, 2**70),
    st.floats(allow_nan=True),
    st.booleans(),
    st.sampled_from([Mode.FAST, Mode.SLOW, Level.HIGH, Decimal("1.5"), Decimal("2E+1")]),
)
data_dicts = st.dictionaries(top_keys, values(), min_size=1, max_size=5)
formats = st.sampled_from(["plaintext", "pickled_v4", "enum_plain", "enum_pickled"])


def fmt_for(api: Any, name: str | None) -> Any:
    """The format argument for one implementation.

    jobpersist gets plain strings or its own enum; the reference always gets its enum (its
    error message for plaintext over pickled results needs ``.value``, which plain strings
    lack, so it would raise AttributeError where it means TypeError).
    """
    if name is None:
        return None
    plain = name in ("plaintext", "enum_plain")
    if name.startswith("enum_") or api.name == "reference":
        return api.Format.PLAINTEXT if plain else api.Format.PICKLED_V4
    return name
