"""Memory that stands in for an array's data and holds no pages (twin of ``pages.rs``)."""

from __future__ import annotations

import functools
import mmap
from typing import Any


@functools.cache
def _native_calls() -> tuple[Any, Any, Any] | None:
    """CPython's ``PyBytes_FromStringAndSize``, libc's ``madvise`` and a function giving a
    ``bytes``' data address, where ctypes reaches them."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    try:
        import ctypes

        new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (ImportError, OSError, AttributeError):
        return None
    new_bytes.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    new_bytes.restype = ctypes.py_object
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int

    def address(data: bytes) -> int:
        # A c_char_p made from bytes points into them.
        return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0

    return new_bytes, madvise, address


def placeholder(size: int) -> bytes:
    """A new ``bytes`` of ``size`` that holds no memory (zeros where ctypes is missing): left
    uninitialised, with the whole pages inside it given back to the system, as the native
    codec's (see ``jobpersist._pickle.dump``)."""
    calls = _native_calls()
    if calls is None:
        return bytes(size)
    new_bytes, madvise, address = calls
    made: bytes = new_bytes(None, size)
    start = address(made)
    if not start:
        return made
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    end = (start + size) // mmap.PAGESIZE * mmap.PAGESIZE
    if end > first:
        # Only whole pages inside the data: nothing else lives there.
        madvise(first, end - first, mmap.MADV_DONTNEED)
    return made
