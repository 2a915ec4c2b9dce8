"""The reference's conversion of values for plaintext JSON, and of top-level keys.

The reference persists through a pydantic v1 model: its ``.dict()`` rebuilds containers, then
``json.dumps(default=pydantic_encoder)`` converts what JSON cannot hold. ``convert_subtree``
does both in one walk, so ``json.dumps`` of its result gives the reference's bytes, while
naming the key path of a value nothing converts and refusing cycles with a ``ValueError``.

Nothing here recurses on the data: the walk keeps its path on an explicit stack, and
``to_json_text`` hands ``json.dumps`` only subtrees a few levels deep. Values nested up to
``MAX_DEPTH`` convert the same wherever the caller's stack stands, in any thread, and the
interpreter's recursion limit is never touched.
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
from collections.abc import Callable, Generator
from dataclasses import asdict, is_dataclass
from decimal import Decimal
from enum import Enum
from pathlib import Path
from types import GeneratorType
from typing import Any

from jobpersist._format.schema import MAX_DEPTH

__all__ = [
    "MAX_DEPTH",
    "Convert",
    "coerce_key",
    "coerce_keys",
    "convert_default",
    "convert_subtree",
    "to_json_text",
]

# The reference never converts these: json.dumps writes them as they are.
_JSON_SCALARS = (str, int, float, bool, type(None))
# json.dumps turns keys of these types into strings by itself.
_JSON_KEY_TYPES = (str, int, float, bool, type(None))
# Containers the reference's ``.dict()`` rebuilds with ``type(v)(items)``.
_SEQUENCES = (list, tuple, set, frozenset, GeneratorType, deque)
# json.dumps recurses once per level (against the recursion limit up to Python 3.11): it is
# given subtrees at most this deep, and what is above them is laid out here.
_DUMPS_DEPTH = 32


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


# A step of the walk: a generator that yields the steps whose results it needs (each nested
# value it converts) and leaves its own result in ``_Walker.result``. ``_run`` drives them
# from an explicit stack, so nesting costs heap, not Python frames. (A step returns None,
# never a value: a generator's return value would cost a StopIteration each.)
_Step = Generator["_Step", None, None]


# Steps of the first levels run their nested steps themselves (``yield from``: no round trip
# through ``_run``), so this many generator frames at most are nested at once.
_NESTED_STEPS = 16


def _run(step: _Step) -> None:
    """Runs ``step`` and the steps it yields, depth first."""
    stack = [step]
    while stack:
        inner = next(stack[-1], None)
        if inner is None:
            stack.pop()
        else:
            stack.append(inner)


class _Walker:
    """Converts one value as the reference does, in its two phases.

    Phase one is pydantic's ``.dict()``: containers (sets, deques, tuple and list subclasses,
    models) are rebuilt with their own classes; other objects are kept. Phase two is
    ``json.dumps(default=pydantic_encoder)``: what JSON cannot hold is converted, and the
    result is encoded without any further rebuilding. Plain dicts, lists and tuples come out
    of phase one equal to what went in, so they skip it; ``fresh`` says phase one has not
    yet been applied to a value. ``stack`` holds the ids of the containers being walked.

    ``walk`` and ``rebuild`` put their result in ``result`` and return None, or return the
    step (see ``_run``) that will: where a recursive walk would call itself, a step yields
    the nested step, then reads ``result``, in the same order. ``deepest`` is the most
    containers ever on the path at once.
    """

    def __init__(self, path: list[Any], depth: int = 0) -> None:
        self.path = path
        self.stack: set[int] = set()
        self.base_depth = depth
        self.deepest = depth
        self.result: Any = None

    def fail(self, obj: Any, detail: str) -> TypeError:
        return TypeError(
            f"Value at {_path_text(self.path)} of type '{type(obj).__name__}' cannot be "
            f"persisted as plaintext JSON: {detail}. Use PersistedJobDataFormat.PICKLED_V4 "
            "for arbitrary Python objects."
        )

    def enter(self, obj: Any) -> None:
        if id(obj) in self.stack:
            raise ValueError(f"Circular reference detected at {_path_text(self.path)}")
        depth = self.base_depth + len(self.stack)
        if depth >= MAX_DEPTH:
            raise ValueError(
                f"Data nested deeper than {MAX_DEPTH} levels at {_path_text(self.path[:3])}... "
                "cannot be persisted as plaintext JSON."
            )
        self.stack.add(id(obj))
        if depth >= self.deepest:
            self.deepest = depth + 1

    def walk(self, obj: Any, fresh: bool = True) -> _Step | None:
        cls = type(obj)
        if cls is float or cls is int or cls is str or cls is bool or obj is None:
            self.result = obj
            return None
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
            self.result = obj
            return None
        return self.walk_default(obj)

    def walk_dict(self, obj: dict[Any, Any], fresh: bool) -> _Step:
        self.enter(obj)
        out: dict[Any, Any] = {}
        path = self.path
        for key, value in obj.items():
            if not isinstance(key, _JSON_KEY_TYPES):
                raise TypeError(
                    f"Key {key!r} at {_path_text(path)}: keys must be str, int, float, bool "
                    f"or None, not {type(key).__name__}"
                )
            cls = type(value)
            if cls is float or cls is int or cls is str or cls is bool or value is None:
                out[key] = value  # what walk() gives them, without the call
                continue
            path.append(key)
            step = self.walk(value, fresh)
            if step is not None:
                if len(self.stack) < _NESTED_STEPS:
                    yield from step
                else:
                    yield step
            out[key] = self.result
            path.pop()
        self.stack.discard(id(obj))
        self.result = out

    def walk_items(self, obj: Any, fresh: bool) -> _Step:
        self.enter(obj)
        path = self.path
        items = []
        for index, value in enumerate(obj):
            cls = type(value)
            if cls is float or cls is int or cls is str or cls is bool or value is None:
                items.append(value)
                continue
            path.append(index)
            step = self.walk(value, fresh)
            if step is not None:
                if len(self.stack) < _NESTED_STEPS:
                    yield from step
                else:
                    yield step
            items.append(self.result)
            path.pop()
        self.stack.discard(id(obj))
        self.result = items

    def rebuild(self, obj: Any) -> _Step | None:
        """Phase one (pydantic v1's ``_get_value``) for one object."""
        if _is_v1_model(obj):
            as_dict = obj.dict()
            # A custom-root model stands for its root value.
            self.result = as_dict["__root__"] if "__root__" in as_dict else as_dict
            return None
        if isinstance(obj, dict):
            return self.rebuild_dict(obj)
        if isinstance(obj, _SEQUENCES):
            if isinstance(obj, GeneratorType):
                # type(v)(...) is how pydantic rebuilds; generators refuse it.
                raise self.fail(obj, "generators cannot be persisted")
            return self.rebuild_items(obj)
        self.result = obj
        return None

    def rebuild_dict(self, obj: dict[Any, Any]) -> _Step:
        self.enter(obj)
        out = {}
        for k, v in obj.items():
            step = self.rebuild(v)
            if step is not None:
                yield step
            out[k] = self.result
        self.stack.discard(id(obj))
        self.result = out

    def rebuild_items(self, obj: Any) -> _Step:
        self.enter(obj)
        items = []
        for v in obj:
            step = self.rebuild(v)
            if step is not None:
                yield step
            items.append(self.result)
        cls = type(obj)
        try:
            out = cls(*items) if _is_namedtuple(cls) else cls(items)
        except Exception as exc:
            raise self.fail(obj, f"its type cannot be rebuilt from its items ({exc})") from exc
        self.stack.discard(id(obj))
        self.result = out

    def walk_rebuilt(self, obj: Any) -> _Step:
        step = self.rebuild(obj)
        if step is not None:
            yield step
        step = self.walk(self.result, fresh=False)
        if step is not None:
            yield step

    def walk_default(self, obj: Any) -> _Step:
        self.enter(obj)
        try:
            converted = convert_default(obj)
        except _Unconvertible:
            raise self.fail(obj, "no conversion to JSON exists for this type") from None
        except (TypeError, ValueError) as exc:
            raise self.fail(obj, f"its conversion failed ({type(exc).__name__}: {exc})") from exc
        step = self.walk(converted, fresh=False)
        if step is not None:
            yield step
        self.stack.discard(id(obj))


#: What a plaintext encoder calls for a value it does not write itself:
#: ``convert(path, depth, value)`` (``convert_subtree``).
Convert = Callable[[list[Any], int, Any], Any]


def convert_subtree(path: list[Any], depth: int, value: Any) -> Any:
    """Converts ``value``, found at ``path``, ``depth`` containers down, to what the
    reference's encoder writes: exact dicts and lists, and str, int, float, bool and None (or
    their subclasses, which json.dumps writes as their base type), ready for ``json.dumps``.

    The plaintext encoders take this function as their ``convert`` argument: the native one
    calls it for every object it does not write itself (containers of subclassed types,
    sets, datetimes, ...), so both backends convert alike. ``value`` has not been through
    phase one (see ``_Walker``); the result holds only exact dicts and lists, and scalars.

    Raises:
        TypeError: If a value or a nested key has no JSON form; the message names its path.
        ValueError: On a circular reference or nesting deeper than ``MAX_DEPTH``.
    """
    return _convert(path, depth, value)[0]


def _convert(path: list[Any], depth: int, value: Any) -> tuple[Any, int]:
    """``convert_subtree``, and how many container levels its result holds."""
    walker = _Walker(list(path), depth)
    try:
        step = walker.walk(value)
        if step is not None:
            _run(step)
    except RecursionError as exc:
        # Only code outside the walk recurses (a dataclass's asdict, a model's .dict()): too
        # deep for it is too deep to persist, the documented ValueError.
        raise ValueError(f"Data at {_path_text(path)} is nested too deeply to persist.") from exc
    return walker.result, walker.deepest - depth


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


def to_json_text(key: Any, value: Any, convert: Convert | None = None) -> bytes:
    """The JSON text the reference writes for ``value``, stored under top-level ``key``.

    Args:
        key (Any): The top-level key (the first step of the paths errors name).
        value (Any): The value.
        convert (Convert | None): The conversion to apply (``convert_subtree`` if None).

    Returns:
        bytes: ``json.dumps`` of the converted value, as ASCII.

    Raises:
        TypeError: If a value or a nested key has no JSON form; the message names its path.
        ValueError: On a circular reference or nesting deeper than ``MAX_DEPTH``.
    """
    if convert is None or convert is convert_subtree:
        jsonable, height = _convert([key], 0, value)
    else:
        jsonable, height = convert([key], 0, value), MAX_DEPTH
    if height <= _DUMPS_DEPTH:
        return json.dumps(jsonable).encode("ascii")
    return _dumps_deep(jsonable).encode("ascii")


def _heights(root: Any) -> dict[int, int]:
    """How many container levels each container of ``root`` holds (itself included), by id.

    ``root`` is a converted value: a tree of fresh exact dicts and lists, so ids are unique.
    """
    heights: dict[int, int] = {}
    pending: list[tuple[Any, bool]] = [(root, False)]
    while pending:
        node, children_done = pending.pop()
        children = node.values() if type(node) is dict else node
        if children_done:
            height = 0
            for child in children:
                if type(child) is dict or type(child) is list:
                    height = max(height, heights[id(child)])
            heights[id(node)] = height + 1
            continue
        pending.append((node, True))
        for child in children:
            if type(child) is dict or type(child) is list:
                pending.append((child, False))
    return heights


def _key_text(key: Any) -> str:
    """A dict key as json.dumps writes it (str, float, int, bool or None; its errors too)."""
    return json.dumps({key: None})[1:-7]  # '{' KEY ': null}'


def _dumps_deep(root: Any) -> str:
    """``json.dumps(root)`` for a converted value of any depth, from a loop: containers more
    than ``_DUMPS_DEPTH`` levels high are laid out here, the rest by json.dumps itself."""
    if type(root) is not dict and type(root) is not list:
        return json.dumps(root)
    heights = _heights(root)
    out: list[str] = []
    # Open containers: their remaining items, whether they are dicts, and whether an item
    # was written yet.
    open_: list[tuple[Any, bool, list[bool]]] = []

    def emit(value: Any) -> None:
        cls = type(value)
        if (cls is dict or cls is list) and heights[id(value)] > _DUMPS_DEPTH:
            is_dict = cls is dict
            out.append("{" if is_dict else "[")
            open_.append((iter(value.items() if is_dict else value), is_dict, [True]))
        else:
            out.append(json.dumps(value))

    emit(root)
    while open_:
        items, is_dict, first = open_[-1]
        item: Any = next(items, _END)
        if item is _END:
            out.append("}" if is_dict else "]")
            open_.pop()
            continue
        if first[0]:
            first[0] = False
        else:
            out.append(", ")
        if is_dict:
            key, item = item
            out.append(_key_text(key))
            out.append(": ")
        emit(item)
    return "".join(out)


_END = object()
