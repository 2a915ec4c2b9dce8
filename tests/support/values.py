"""Comparing values: NaN-aware, -0.0-aware, type-aware, identity-blind."""

from __future__ import annotations

import dataclasses
import math
import pickle
from collections import deque
from typing import Any


def canon(value: Any, _active: frozenset[int] = frozenset()) -> Any:
    """A hashable, comparable form of ``value``; equal forms mean equal loads.

    NaN-aware (NaN equals NaN), -0.0-aware, type-aware, blind to object identity, and safe
    on cycles.
    """
    cls = type(value)
    if cls is float:
        return ("float", value.hex() if not math.isnan(value) else "nan")
    if cls is int:
        return ("int", hex(value))  # repr() refuses ints of more than 4300 digits
    if isinstance(value, (dict, list, tuple, deque, set, frozenset)):
        if id(value) in _active:
            return ("<cycle>",)
        active = _active | {id(value)}
        if isinstance(value, dict):
            items = tuple((canon(k, active), canon(v, active)) for k, v in value.items())
            return (cls.__qualname__, items)
        if isinstance(value, (set, frozenset)):
            return (cls.__qualname__, tuple(sorted(repr(canon(v, active)) for v in value)))
        return (cls.__qualname__, tuple(canon(v, active) for v in value))
    if all(hasattr(value, a) for a in ("dtype", "shape", "tobytes")):
        # numpy arrays and scalars, and their subclasses (PennyLane's tensor, whose
        # requires_grad must survive a round trip too).
        return (
            "array",
            cls.__module__,
            cls.__qualname__,
            str(value.dtype),
            value.shape,
            value.tobytes(),
            getattr(value, "requires_grad", None),
        )
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            cls.__qualname__,
            tuple(
                (f.name, canon(getattr(value, f.name), _active)) for f in dataclasses.fields(value)
            ),
        )
    return (cls.__module__, cls.__qualname__, repr(value))


def pickle_stable(value: Any) -> bool:
    """Whether pickling the unpickled pickle of ``value`` gives the same bytes.

    The reference re-pickles old results on a merge, jobpersist copies them: both files are
    byte-identical only for values whose pickles survive a round trip.
    """
    try:
        first = pickle.dumps(value, protocol=4)
        return pickle.dumps(pickle.loads(first), protocol=4) == first
    except Exception:
        return True
