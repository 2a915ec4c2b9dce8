"""``pickle.dumps(array, protocol=4)`` for a large numpy array, streamed without the copy.

numpy's protocol-4 reduce copies the whole array into a ``bytes`` object (``tobytes``)
before the pickler writes it. Here the pickler is given numpy's own reduce, but with a
zero-filled placeholder of the same length (``bytes(n)`` is calloc'd: no page of it is
touched); the C pickler hands payloads this large straight to ``write``, where the sink
swaps in the array's memory. The bytes written are those of ``pickle.dumps``; the tests
compare them for many dtypes and shapes.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

from jobpersist._codec import EnvelopeWriter

# Far above the C pickler's 64 KiB frame size: payloads this big bypass the frame buffer
# and reach write() as the object itself.
_MIN_BYTES = 1 << 20


def array_type() -> type | None:
    """``numpy.ndarray`` if numpy is imported (only then can a value be an array)."""
    np = sys.modules.get("numpy")
    return getattr(np, "ndarray", None)


def is_streamable_array(value: Any) -> bool:
    """A plain, C-contiguous numpy array of plain data, big enough to be worth it."""
    np = sys.modules.get("numpy")
    return (
        np is not None
        and type(value) is np.ndarray
        and value.flags.c_contiguous
        and not value.dtype.hasobject
        and value.nbytes >= _MIN_BYTES
    )


class _ArrayPickler(pickle.Pickler):
    def __init__(self, file: Any, array: Any, reduced: tuple[Any, ...]) -> None:
        super().__init__(file, protocol=4)
        self._array = array
        self._reduced = reduced

    def reducer_override(self, obj: Any) -> Any:
        return self._reduced if obj is self._array else NotImplemented


class _SwappingSink:
    def __init__(self, writer: EnvelopeWriter, placeholder: bytes, raw: memoryview) -> None:
        self.writer = writer
        self.placeholder = placeholder
        self.raw = raw
        self.swapped = False

    def write(self, data: Any) -> int:
        if data is self.placeholder:
            self.swapped = True
            self.writer.write(self.raw)
            return len(self.placeholder)
        return self.writer.write(data)


def dump_array(writer: EnvelopeWriter, array: Any) -> None:
    """Writes ``pickle.dumps(array, protocol=4)`` into the open base64 value of ``writer``.

    ``array`` must satisfy ``is_streamable_array``.
    """
    placeholder = bytes(array.nbytes)
    flat = array.reshape(-1)
    # numpy's own reduce for an empty view gives the reconstructor and its arguments; the
    # state is numpy's too: (version, shape, dtype, is_fortran, data). A C-contiguous
    # array is not "fortran" for numpy, whatever its shape.
    func, args, state = flat[:0].__reduce__()
    reduced = (func, args, (state[0], array.shape, array.dtype, False, placeholder))
    sink = _SwappingSink(writer, placeholder, memoryview(flat.view("u1")))
    _ArrayPickler(sink, array, reduced).dump(array)
    if not sink.swapped:
        # The placeholder's zeros went into the stream: never let them reach a file.
        raise RuntimeError("internal error: the array's data was not written")
