"""The reference's conversion of values for plaintext JSON, and of top-level keys.

The reference persists through a pydantic v1 model: its ``.dict()`` rebuilds containers, then
``json.dumps(default=pydantic_encoder)`` converts what JSON cannot hold. ``to_json_native``
does both in one walk, so ``json.dumps`` of its result gives the reference's bytes, while
naming the key path of a value nothing converts and refusing cycles with a ``ValueError``.
"""

from __future__ import annotations

import datetime
import importlib
import ipaddress
import json
import re
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from types import GeneratorType
from typing import Any

# The reference never converts these: json.dumps writes them as they are.
_JSON_SCALARS = (str, int, float, bool, type(None))
# json.dumps turns keys of these types into strings by itself.
_JSON_KEY_TYPES = (str, int, float, bool, type(None))
# Containers the reference's ``.dict()`` rebuilds with ``type(v)(items)``.
_SEQUENCES = (list, tuple, set, frozenset, GeneratorType, deque)

# Nesting deeper than this is refused (by both backends) well before Python's recursion
# limit; the reference itself fails near 495 levels.
MAX_DEPTH = 512


def _decimal(value: Decimal) -> int | float:
    # As pydantic: an exponent >= 0 means an integral value. NaN's exponent is the string 'n',
    # and comparing it raises the reference's TypeError too.
    if value.as_tuple().exponent >= 0:  # type: ignore[operator]
        return int(value)
    return float(value)


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    bytes: lambda o: o.decode(),
    datetime.date: lambda o: o.isoformat(),
    datetime.datetime: lambda o: o.isoformat(),
    datetime.time: lambda o: o.isoformat(),
    datetime.timedelta: lambda td: td.total_seconds(),
    Decimal: _decimal,
    Enum: lambda o: o.value,
    frozenset: list,
    deque: list,
    GeneratorType: list,
    ipaddress.IPv4Address: str,
    ipaddress.IPv4Interface: str,
    ipaddress.IPv4Network: str,
    ipaddress.IPv6Address: str,
    ipaddress.IPv6Interface: str,
    ipaddress.IPv6Network: str,
    Path: str,
    re.Pattern: lambda o: o.pattern,
    set: list,
    uuid.UUID: str,
}


class _Unconvertible(TypeError):
    pass


def convert_default(obj: Any) -> Any:
    """One step of the reference's ``pydantic_encoder``: what ``obj`` is written as.

    Raises:
        TypeError: If the reference has no conversion for ``type(obj)``.
    """
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    for base in type(obj).__mro__[:-1]:
        encoder = _ENCODERS.get(base)
        if encoder is not None:
            return encoder(obj)
    if "pydantic" in sys.modules:
        # pydantic v1 models and types (the reference's own schema classes among them) are
        # converted by pydantic's encoder, as the reference does. Without pydantic imported,
        # no such object can exist.
        encoder = _pydantic_v1_encoder()
        if encoder is not None:
            try:
                return encoder(obj)
            except TypeError:
                pass
    raise _Unconvertible(f"Object of type '{type(obj).__name__}' is not JSON serializable")


def _pydantic_v1_encoder() -> Callable[[Any], Any] | None:
    for name in ("pydantic.v1.json", "pydantic.json"):  # pydantic 2.x, then 1.x
        try:
            encoder: Callable[[Any], Any] = importlib.import_module(name).pydantic_encoder
        except (ImportError, AttributeError):
            continue
        return encoder
    return None


def _path_text(path: list[Any]) -> str:
    return "".join(f"[{p!r}]" for p in path)


def _is_namedtuple(cls: type) -> bool:
    return issubclass(cls, tuple) and hasattr(cls, "_fields")


def _is_v1_model(obj: Any) -> bool:
    if "pydantic" not in sys.modules:
        return False
    for name in ("pydantic.v1", "pydantic"):  # pydantic 2.x, then 1.x
        try:
            model: type = importlib.import_module(name).BaseModel
        except (ImportError, AttributeError):
            continue
        return isinstance(obj, model)
    return False


class _Walker:
    """Converts one value as the reference does, in its two phases.

    Phase one is pydantic's ``.dict()``: containers (sets, deques, tuple and list subclasses,
    models) are rebuilt with their own classes; other objects are kept. Phase two is
    ``json.dumps(default=pydantic_encoder)``: what JSON cannot hold is converted, and the
    result is encoded without any further rebuilding. Plain dicts, lists and tuples come out
    of phase one equal to what went in, so they skip it; ``fresh`` says phase one has not
    yet been applied to a value. ``stack`` holds the ids of the containers being walked.
    """

    def __init__(self, path: list[Any], depth: int = 0) -> None:
        self.path = path
        self.stack: set[int] = set()
        self.base_depth = depth

    def fail(self, obj: Any, detail: str) -> TypeError:
        return TypeError(
            f"Value at {_path_text(self.path)} of type '{type(obj).__name__}' cannot be "
            f"persisted as plaintext JSON: {detail}. Use PersistedJobDataFormat.PICKLED_V4 "
            "for arbitrary Python objects."
        )

    def enter(self, obj: Any) -> None:
        if id(obj) in self.stack:
            raise ValueError(f"Circular reference detected at {_path_text(self.path)}")
        if self.base_depth + len(self.stack) >= MAX_DEPTH:
            raise ValueError(
                f"Data nested deeper than {MAX_DEPTH} levels at {_path_text(self.path[:3])}... "
                "cannot be persisted as plaintext JSON."
            )
        self.stack.add(id(obj))

    def walk(self, obj: Any, fresh: bool = True) -> Any:
        cls = type(obj)
        if cls is float or cls is int or cls is str or cls is bool or obj is None:
            return obj
        if isinstance(obj, dict):
            return self.walk_dict(obj, fresh)
        if cls is list or cls is tuple:
            return self.walk_items(obj, fresh)
        if fresh and (isinstance(obj, _SEQUENCES) or _is_v1_model(obj)):
            return self.walk_rebuilt(obj)
        if isinstance(obj, (list, tuple)):
            return self.walk_items(obj, fresh)
        if isinstance(obj, _JSON_SCALARS):
            # Subclasses (IntEnum, str enums, ...): json.dumps writes their base value.
            return obj
        return self.walk_default(obj)

    def walk_dict(self, obj: dict[Any, Any], fresh: bool) -> dict[Any, Any]:
        self.enter(obj)
        out: dict[Any, Any] = {}
        path = self.path
        for key, value in obj.items():
            if not isinstance(key, _JSON_KEY_TYPES):
                raise TypeError(
                    f"Key {key!r} at {_path_text(path)}: keys must be str, int, float, bool "
                    f"or None, not {type(key).__name__}"
                )
            path.append(key)
            out[key] = self.walk(value, fresh)
            path.pop()
        self.stack.discard(id(obj))
        return out

    def walk_items(self, obj: Any, fresh: bool) -> list[Any]:
        self.enter(obj)
        path = self.path
        items = []
        for index, value in enumerate(obj):
            path.append(index)
            items.append(self.walk(value, fresh))
            path.pop()
        self.stack.discard(id(obj))
        return items

    def rebuild(self, obj: Any) -> Any:
        """Phase one (pydantic v1's ``_get_value``) for one object."""
        if _is_v1_model(obj):
            as_dict = obj.dict()
            # A custom-root model stands for its root value.
            return as_dict["__root__"] if "__root__" in as_dict else as_dict
        out: Any
        if isinstance(obj, dict):
            self.enter(obj)
            out = {k: self.rebuild(v) for k, v in obj.items()}
        elif isinstance(obj, _SEQUENCES):
            if isinstance(obj, GeneratorType):
                # type(v)(...) is how pydantic rebuilds; generators refuse it.
                raise self.fail(obj, "generators cannot be persisted")
            self.enter(obj)
            items = [self.rebuild(v) for v in obj]
            cls = type(obj)
            try:
                out = cls(*items) if _is_namedtuple(cls) else cls(items)
            except Exception as exc:
                raise self.fail(obj, f"its type cannot be rebuilt from its items ({exc})") from exc
        else:
            return obj
        self.stack.discard(id(obj))
        return out

    def walk_rebuilt(self, obj: Any) -> Any:
        return self.walk(self.rebuild(obj), fresh=False)

    def walk_default(self, obj: Any) -> Any:
        self.enter(obj)
        try:
            converted = convert_default(obj)
        except _Unconvertible:
            raise self.fail(obj, "no conversion to JSON exists for this type") from None
        except (TypeError, ValueError) as exc:
            raise self.fail(obj, f"its conversion failed ({type(exc).__name__}: {exc})") from exc
        result = self.walk(converted, fresh=False)
        self.stack.discard(id(obj))
        return result


# Frames the walker (or json.dumps) may need per level of nesting, at most.
_FRAMES_PER_LEVEL = 4


@contextmanager
def _recursion_headroom() -> Iterator[None]:
    """Room on Python's stack for ``MAX_DEPTH`` levels, wherever the caller stands.

    Without it the limit where conversion fails would depend on the caller's own stack depth,
    and the Python backend would refuse depths that the native one (and the reference) write.
    """
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(old + _FRAMES_PER_LEVEL * MAX_DEPTH)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def to_json_native(key: Any, value: Any) -> Any:
    """Converts ``value`` (stored under ``key``) to what the reference's encoder writes.

    Returns:
        Any: Built of exact dicts and lists, and of str, int, float, bool and None (or their
        subclasses, which json.dumps writes as their base type), ready for ``json.dumps``.

    Raises:
        TypeError: If a value or a nested key has no JSON form; the message names its path.
        ValueError: On a circular reference or nesting deeper than ``MAX_DEPTH``.
    """
    return convert_subtree([key], 0, value)


def convert_subtree(path: list[Any], depth: int, value: Any) -> Any:
    """``to_json_native`` for a value found at ``path``, ``depth`` containers down.

    The native encoder calls this for every object it does not write itself (containers
    of subclassed types, sets, datetimes, ...), so both backends convert alike. ``value``
    has not been through phase one (see ``_Walker``); the result holds only exact dicts and
    lists, and scalars.
    """
    try:
        with _recursion_headroom():
            return _Walker(list(path), depth).walk(value)
    except RecursionError as exc:
        raise ValueError(f"Data at {_path_text(path)} is nested too deeply to persist.") from exc


def coerce_key(key: Any) -> str:
    """A top-level key as the reference's schema validation coerces it to ``str``.

    Raises:
        ValueError: If the reference's validation refuses the key (as its ValidationError).
    """
    if isinstance(key, str):
        return key.value if isinstance(key, Enum) else key
    if isinstance(key, (float, int, Decimal)):
        return str(key)
    if isinstance(key, (bytes, bytearray)):
        try:
            return key.decode()
        except UnicodeDecodeError as exc:
            raise ValueError(f"Key {key!r} is not valid UTF-8.") from exc
    raise ValueError(f"Key {key!r} of type '{type(key).__name__}' cannot be coerced to str.")


def coerce_keys(data: dict[Any, Any]) -> dict[str, Any]:
    """The mapping with every key coerced as ``coerce_key`` does; a later duplicate wins."""
    if set(map(type, data)) <= {str}:  # in C: cheap for many keys
        return data
    return {coerce_key(k): v for k, v in data.items()}


def to_json_text(key: Any, value: Any) -> bytes:
    """The JSON text the reference writes for ``value``, stored under top-level ``key``.

    Raises:
        TypeError: If a value or a nested key has no JSON form; the message names its path.
        ValueError: On a circular reference or nesting deeper than ``MAX_DEPTH``.
    """
    native = to_json_native(key, value)
    try:
        with _recursion_headroom():
            return json.dumps(native).encode("ascii")
    except RecursionError as exc:
        raise ValueError(f"Data under key {key!r} is nested too deeply to persist.") from exc
