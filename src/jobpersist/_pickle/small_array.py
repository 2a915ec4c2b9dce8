"""``pickle.dumps(array, protocol=4)`` of a small plain numpy array, from a template.

The pickle of a C-contiguous ``numpy.ndarray`` is the same for every array of one dtype
object and one shape but for the array's bytes: numpy's reduce names the same globals,
shape, dtype state and flag, and its data is one ``bytes`` payload. So the first array of
each (dtype, shape) is pickled by pickle itself, its data found in the pickle, and later
arrays of that kind are written as the bytes around it with their own data in between:
about 1.4 us where pickle takes 9 (it calls numpy's reduce and looks up three globals each
time). A variational loop checkpoints the same parameter array every iteration.

Only a value that *is* such an array is written this way: inside a container the pickle
depends on what came before (the memo).
"""

from __future__ import annotations

import pickle
from typing import Any

# The most (dtype, shape) kinds remembered per stream; beyond, they are forgotten at once.
MAX_KINDS = 64
#: numpy's dtype flags (NPY_ITEM_HASOBJECT, NPY_LIST_PICKLE) whose arrays numpy pickles as a
#: list of the items, not their bytes.
NOT_RAW = 0x01 | 0x02


class Templates:
    """The templates of one pickle stream, by (dtype, shape). One thread uses it."""

    __slots__ = ("_below", "_kinds", "_ndarray")

    def __init__(self, ndarray: Any, below: int) -> None:
        """Templates for arrays of type exactly ``ndarray`` smaller than ``below`` bytes
        (the larger ones stream: see jobpersist._pickle.dump)."""
        self._ndarray: Any = ndarray
        self._below = below
        # (id(dtype), shape) -> (dtype, head, tail), or (dtype, None, None) for a kind that
        # has no template (its data is not one unique payload of its pickle). Keyed by the
        # dtype's identity, since equal dtypes may pickle differently (metadata); the dtype is
        # kept, so that its id names no other dtype while the entry lives.
        self._kinds: dict[tuple[int, tuple[int, ...]], tuple[Any, bytes | None, bytes | None]]
        self._kinds = {}

    def pickle(self, value: Any) -> bytes | None:
        """``pickle.dumps(value, protocol=4)`` if ``value`` is a small C-contiguous plain
        array (made from a template when its kind has one), else None."""
        if type(value) is not self._ndarray:
            return None
        if value.nbytes >= self._below or not value.flags.c_contiguous:
            return None
        dtype = value.dtype
        key = (id(dtype), value.shape)
        kind = self._kinds.get(key)
        if kind is None:
            return self._learn(value, dtype, key)
        head, tail = kind[1], kind[2]
        if head is None or tail is None:
            return None
        data: bytes = value.tobytes()
        return head + data + tail

    def _learn(self, value: Any, dtype: Any, key: tuple[int, tuple[int, ...]]) -> bytes | None:
        """Pickles ``value`` with pickle and keeps its kind's template (or that it has none)."""
        if dtype.flags & NOT_RAW:
            pickled = None
            head = tail = None
        else:
            pickled = pickle.dumps(value, protocol=4)
            head, tail = _split(pickled, value.tobytes())
        if len(self._kinds) >= MAX_KINDS:
            self._kinds.clear()
        self._kinds[key] = (dtype, head, tail)
        return pickled


def _split(pickled: bytes, data: bytes) -> tuple[bytes | None, bytes | None]:
    """The bytes of ``pickled`` before and after its one payload of ``data``; (None, None)
    if ``data`` is not there exactly once, after a bytes opcode of its length."""
    size = len(data)
    if size < 256:
        opcode = pickle.SHORT_BINBYTES + size.to_bytes(1, "little")
    else:
        opcode = pickle.BINBYTES + size.to_bytes(4, "little")
    payload = opcode + data
    at = pickled.find(payload)
    if at < 0 or pickled.find(payload, at + 1) >= 0:
        return None, None
    start = at + len(opcode)
    return pickled[:start], pickled[start + size :]
