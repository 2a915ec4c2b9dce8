"""``pickle.dumps(value, protocol=4)``, written with every large numpy array's data streamed
from the array's own memory, wherever the array sits in the value.

numpy's protocol-4 reduce copies an array's whole data into a ``bytes`` object (``tobytes``)
before the pickler writes it: a 4 GiB optimizer state would need 4 GiB more to be saved.
Here one C pickler per file pickles every value, with a hook that hands it, for each array
of 128 KiB or more (``numpy.ndarray``, or a subclass whose reduce is known to follow
numpy's, PennyLane's tensor included), the reduce numpy would return but with a
placeholder of the same length in place of the data (a ``bytes`` that holds no memory: see
``_placeholder``). The C pickler hands payloads of 64 KiB or more to its file's ``write``
as they are; there each placeholder, known by identity, is replaced by the array's memory.
The bytes written are those of ``pickle.dumps``:

* the hook is the pickler's ``dispatch_table`` (copyreg's, plus the array types), which the
  C pickler consults only after its memo: an array met twice is written once and then
  referenced, exactly as ``pickle.dumps`` does;
* the reduce is numpy's own, computed on an empty view of the array (same type, same
  attributes), with the shape, the Fortran flag and the data put back;
* the C pickler consults the table for none of ``None``, ``bool``, ``int``, ``float``,
  ``bytes``, ``str``, ``dict``, ``set``, ``frozenset``, ``list``, ``tuple``: plain values
  pay nothing. (A ``reducer_override`` would be looked up by every ``dump()`` and called
  for every other object: measurably slower for many small values.)

numpy writes a C-contiguous array's memory as it lies, and a Fortran-contiguous one's too
(flagged ``is_fortran``): both are written without a copy. Any other layout is written in C
order through bounded copies (slabs of at most ``_PIECE`` bytes), never one whole copy.
Arrays of objects, which numpy pickles as lists, are left to numpy.
"""

from __future__ import annotations

import _thread
import copyreg
import functools
import pickle
import sys
from collections.abc import Callable, Iterator
from typing import Any

from jobpersist import _codec
from jobpersist._codec import Buffer, EnvelopeWriter
from jobpersist._pickle.small_array import NOT_RAW, Templates

# The C pickler's frame size (FRAME_SIZE_TARGET in Modules/_pickle.c): a payload at least
# this long skips the frame buffer and reaches write() as the object itself. The placeholder
# must.
_FRAME_BYTES = 64 * 1024
# Arrays this big or bigger stream. Not smaller: a placeholder costs a few system calls and
# the writer copies a buffer it cannot keep, about what numpy's copy of 128 KiB costs
# (measured: 2,000 arrays of 80 KB saved 16% slower streamed, 1,200 of 128 KiB 4% faster).
# Tests lower it to check that a placeholder copied into a frame is caught: below
# _FRAME_BYTES no save can succeed with an array that size.
_MIN_BYTES = 2 * _FRAME_BYTES
# Largest copy of a non-contiguous array's data held at a time.
_PIECE = 4 << 20
# Subclasses overriding ``__reduce__`` whose reduce is numpy's with extra state appended,
# taken from attributes that numpy carries to every view (``__array_finalize__``): the
# extra state of an empty view is the array's. Known by name, since no test on the empty
# view can tell that a reduce does not look at the data.
_KNOWN_REDUCERS = frozenset(
    {
        # pennylane.numpy.tensor: numpy's state + (requires_grad,).
        ("pennylane.numpy.tensor", "tensor.__reduce__", 1),
    }
)


class PickleStream:
    """Pickles values one after another into an envelope writer's open base64 values.

    ``dump(value)`` writes exactly ``pickle.dumps(value, protocol=4)``; big arrays' data is
    written from their memory (see the module's docstring). Every pickled value of a save goes
    through it. One stream per file, used by one thread; after an error, by nobody.

    The pickler writes through ``functools.partial(writer.write)``: a C call, so a value
    without a large array costs what it would cost writing to the writer itself. When the
    hook hands the pickler the first placeholder of a value, the partial is pointed (by its
    ``__setstate__``) at a Python function that swaps placeholders for arrays' data, until
    ``finish()`` points it back. What was written before the switch is the start of the
    same pickle: the order of the writes is kept.

    Attributes:
        pickler: The C pickler (protocol 4).
        redirected: Non-empty while the pickler writes through the swapping function.
        swapped: The number of placeholders replaced by an array's data so far.
    """

    def __init__(self, writer: EnvelopeWriter, min_bytes: int | None = None) -> None:
        self.swapped = 0
        self.redirected: list[bool] = []
        self._write = writer.write
        self._target = functools.partial(writer.write)
        # id(placeholder) -> (placeholder, array); holding the placeholder keeps its id
        # unique until it is swapped.
        self._pending: dict[int, tuple[bytes, Any]] = {}
        self.pickler = pickle.Pickler(_File(self._target), protocol=4)
        np = sys.modules.get("numpy")
        # What the table below was made from (see ``fits``).
        self._np: Any = np
        self._copyreg = dict(copyreg.dispatch_table)
        self._subclasses = _subclasses(np.ndarray) if np is not None else []
        self._types = _array_types(np.ndarray, self._subclasses) if np is not None else {}
        self._min_bytes = _MIN_BYTES if min_bytes is None else min_bytes
        self._templates: Templates | None = None
        if np is None:
            return  # no array can exist: no hook
        if np.ndarray not in self._copyreg:
            # (A reduce registered for arrays may make any pickle of them: no templates.)
            self._templates = Templates(np.ndarray, self._min_bytes)
        self._reconstruct = np.ndarray.__reduce__(np.empty(0))[0]
        # A pickler's own dispatch table replaces copyreg's: it starts as a copy of it.
        table = dict(self._copyreg)
        for cls, extra in self._types.items():
            # A type registered with copyreg stays pickled as registered.
            table.setdefault(cls, self._make_reducer(cls, extra))
        self.pickler.dispatch_table = table

    def fits(self) -> bool:
        """Whether the dispatch table still is the one a new stream would make: numpy, the
        classes below ``numpy.ndarray``, copyreg's table and the streaming threshold
        unchanged since this stream was made. (A class whose reduce was replaced since needs
        no check here: ``_reduce_array`` takes a subclass's reduce only where it is numpy's,
        asked anew for each array. Checking every class's reduce here would cost each
        save 2 us more.)"""
        np = sys.modules.get("numpy")
        return (
            self._min_bytes == _MIN_BYTES
            and np is self._np
            and self._copyreg == copyreg.dispatch_table
            and (np is None or self._subclasses == _subclasses(np.ndarray))
        )

    def rebind(self, writer: EnvelopeWriter) -> None:
        """Points the stream, finished without an error, at another writer."""
        self.swapped = 0
        self._write = writer.write
        _point(self._target, writer.write)

    def dump(self, value: Any) -> None:
        """Writes ``pickle.dumps(value, protocol=4)``.

        Raises:
            RuntimeError: If an array's placeholder did not reach ``write`` by itself
                (nothing of the file must then be kept: its zeros may be in it).
            Exception: What pickling the value raises.
        """
        if self._templates is not None:
            # A small array saved as a value of its own: pickled from a template.
            pickled = self._templates.pickle(value)
            if pickled is not None:
                self._write(pickled)
                return
        pickler = self.pickler
        try:
            pickler.dump(value)
        finally:
            # (After a failed finish() the stream is dropped, its memo with it.)
            if self.redirected:
                self.finish()
            pickler.clear_memo()

    def finish(self) -> None:
        """Points the pickler back at the writer, after a value that redirected it.

        Raises:
            RuntimeError: If a placeholder was not swapped (see ``dump``).
        """
        _point(self._target, self._write)
        self.redirected.clear()
        if self._pending:
            self._pending.clear()
            raise RuntimeError("internal error: an array's data was not written")

    def _swapping_write(self, data: Any) -> Any:
        entry = self._pending.pop(id(data), None) if self._pending else None
        if entry is None:
            return self._write(data)
        self.swapped += 1
        for chunk in _array_data(self._np, entry[1]):
            self._write(chunk)
        return len(data)

    def _make_reducer(self, cls: type, extra: int) -> Callable[[Any], Any]:
        """The dispatch table's function for arrays of exactly type ``cls``: what pickle
        would get from ``__reduce_ex__(4)``, with a placeholder for a large array's data."""
        ndarray = self._np.ndarray
        min_bytes = self._min_bytes
        reduce_array = self._reduce_array
        if cls is ndarray:
            # dtype -> (function, arguments' marker, version): numpy's reduce of a plain
            # array, checked once per dtype (see _plain_form), then built here directly.
            forms: dict[Any, Any] = {}
            plain_form = self._plain_form
            stand_in = self._stand_in

            def reduce_plain(obj: Any) -> Any:
                if obj.nbytes < min_bytes:
                    # What ndarray.__reduce_ex__(4) returns, one lookup sooner.
                    return obj.__reduce__()
                dtype = obj.dtype
                form = forms.get(dtype, _UNSEEN)
                if form is _UNSEEN:
                    form = plain_form(obj, dtype, forms)
                if form is None:
                    return reduce_array(obj, cls, 0)
                func, marker, version = form
                # New tuples, as numpy makes (a tuple met twice is memoized): the shape by
                # attribute lookup, as numpy takes it; the array's own dtype object.
                zero = 0
                return (
                    func,
                    (cls, (zero,), marker),
                    (version, obj.shape, dtype, _fortran(obj.flags), stand_in(obj)),
                )

            return reduce_plain

        def reduce_subclass(obj: Any) -> Any:
            if ndarray.nbytes.__get__(obj) < min_bytes or any(
                # pickle looks the reduce up on the instance: one of its own is used.
                name in getattr(obj, "__dict__", ())
                for name in _REDUCE_NAMES
            ):
                return obj.__reduce_ex__(4)
            return reduce_array(obj, cls, extra)

        return reduce_subclass

    def _reduce_array(self, obj: Any, cls: type, extra: int) -> Any:
        ndarray = self._np.ndarray
        dtype = ndarray.dtype.__get__(obj)
        if dtype.flags & NOT_RAW:
            return obj.__reduce_ex__(4)
        try:
            # An empty view of the same type: numpy's reduce of it costs nothing and is the
            # array's, but for the shape, the Fortran flag and the data.
            empty = _empty_view(ndarray, obj)
            reduced = empty.__reduce_ex__(4)
            numpy_form = self._numpy_form(reduced, cls, empty, extra)
        except Exception:
            numpy_form = False
        if not numpy_form:
            return obj.__reduce_ex__(4)  # pickle's own way, whatever it does
        state = reduced[2]
        # numpy takes the shape by attribute lookup, as here; the dtype is the array's own
        # object (the memo references it by identity).
        fortran = _fortran(ndarray.flags.__get__(obj))
        new_state = (state[0], obj.shape, dtype, fortran, self._stand_in(obj), *state[5:])
        return (reduced[0], reduced[1], new_state)

    def _stand_in(self, obj: Any) -> bytes:
        """A placeholder for ``obj``'s data (an ndarray of any type), which the writes swap
        for its memory."""
        ndarray = self._np.ndarray
        placeholder = _placeholder(ndarray.nbytes.__get__(obj))
        self._pending[id(placeholder)] = (placeholder, ndarray.view(obj, ndarray))
        if not self.redirected:
            self.redirected.append(True)
            _point(self._target, self._swapping_write)
        return placeholder

    def _plain_form(
        self, obj: Any, dtype: Any, forms: dict[Any, Any]
    ) -> tuple[Any, bytes, int] | None:
        """numpy's reduce of a plain ndarray of ``dtype``, as ``(function, marker,
        version)``, or None if it is not numpy's usual form (such arrays take
        ``_reduce_array``); recorded in ``forms`` either way.

        Built from two reduces of an empty array, which must have the usual form and make
        new tuples each time but share the marker object (pickle memoizes by identity)."""
        forms[dtype] = None
        if dtype.flags & NOT_RAW:
            return None
        ndarray = self._np.ndarray
        try:
            empty = _empty_view(ndarray, obj)
            first, second = empty.__reduce_ex__(4), empty.__reduce_ex__(4)
            usual = (
                self._numpy_form(first, ndarray, empty, 0)
                and self._numpy_form(second, ndarray, empty, 0)
                and first[1] is not second[1]
                and first[1][1] is not second[1][1]
                and first[1][2] is second[1][2]
            )
        except Exception:
            usual = False
        if not usual:
            return None
        form = (first[0], first[1][2], first[2][0])
        forms[dtype] = form
        return form

    def _numpy_form(self, reduced: Any, cls: type, empty: Any, extra: int) -> bool:
        """Whether ``reduced`` is numpy's reduce of the empty view ``empty`` of type ``cls``
        (plus ``extra`` state items): ``(_reconstruct, (cls, (0,), b"b"),
        (version, shape, dtype, is_fortran, data, *extra))``."""
        if type(reduced) is not tuple or len(reduced) != 3:
            return False
        func, args, state = reduced
        return (
            func is self._reconstruct
            and type(args) is tuple
            and len(args) == 3
            and args[0] is cls
            and type(args[1]) is tuple
            and args[1] == (0,)
            and type(args[2]) is bytes
            and args[2] == b"b"
            and type(state) is tuple
            and len(state) == 5 + extra
            and type(state[0]) is int
            and type(state[1]) is tuple
            and state[1] == empty.shape
            and state[2] is empty.dtype
            and state[3] is False
            and type(state[4]) is bytes
            and not state[4]
        )


_REDUCE_NAMES = ("__reduce__", "__reduce_ex__")
# A dtype not looked at yet (None records one whose arrays are not reduced the usual way).
_UNSEEN = object()


def _subclasses(ndarray: type) -> list[type]:
    """Every class below ``ndarray``, in a fixed order (a new one changes the list)."""
    found: list[type] = []
    stack: list[type] = [ndarray]
    while stack:
        subclasses: list[type] = stack.pop().__subclasses__()
        if subclasses:
            found += subclasses
            stack += subclasses
    return found


def _array_types(ndarray: type, subclasses: list[type]) -> dict[type, int]:
    """``ndarray`` and those of its ``subclasses`` that pickle by numpy's reduce, each with
    the number of state items its reduce appends to numpy's."""
    found = {ndarray: 0}
    for cls in subclasses:
        extra = _reduce_extra(cls, ndarray)
        if extra is not None:
            found[cls] = extra
    return found


def _reduce_extra(cls: type, ndarray: type) -> int | None:
    if getattr(cls, "__reduce_ex__", None) is not ndarray.__reduce_ex__:
        return None
    reducer = getattr(cls, "__reduce__", None)
    if reducer is ndarray.__reduce__:
        return 0
    for module, qualname, extra in _KNOWN_REDUCERS:
        if (
            getattr(reducer, "__module__", None) == module
            and getattr(reducer, "__qualname__", None) == qualname
        ):
            return extra
    return None


def _empty_view(ndarray: Any, obj: Any) -> Any:
    """An empty view of ``obj`` of the same type (a 0-d array is viewed as 1-d first)."""
    source = obj if ndarray.ndim.__get__(obj) else ndarray.reshape(obj, 1)
    return ndarray.__getitem__(source, slice(0, 0))


def _fortran(flags: Any) -> bool:
    """numpy's ``is_fortran`` for an array's ``flags``: Fortran-contiguous and not
    C-contiguous."""
    return bool(flags.f_contiguous and not flags.c_contiguous)


def _placeholder(size: int) -> bytes:
    """A new ``bytes`` of ``size`` whose contents are never read.

    The pickler's memo keeps every placeholder until the value is done, so they must hold no
    memory: the codec's are left uninitialised (no page touched), and the whole pages inside
    them are given back to the system, since the allocator may place them in memory the
    process freed but still holds (a value of 256 arrays of 1 MiB once held 256 MiB of
    zeros; without the giving back, the fallback's own buffers then needed fresh pages). A
    placeholder smaller than a frame is copied into one, and the dump then fails (see
    ``PickleStream.finish``): that one is zeros, so no stale memory is ever copied.
    """
    if size < _FRAME_BYTES:
        return bytes(size)
    return _codec.CODEC.placeholder(size)


# The PickleStream each thread's last save finished with, for its next save: making one
# (its pickler and dispatch table) costs 30 us, most of a small pickled save's own work. A
# _thread._local, not threading's: importing jobpersist stays light.
_SPARE = _thread._local()


def open_stream(writer: EnvelopeWriter) -> PickleStream:
    """A ``PickleStream`` writing into ``writer``: the thread's spare one if it still fits
    (see ``PickleStream.fits``), else a new one. Give it back with ``close_stream`` once a
    file is written without an error."""
    spare: PickleStream | None = getattr(_SPARE, "stream", None)
    if spare is not None:
        _SPARE.stream = None  # taken: a save made while pickling makes its own
        if spare.fits():
            spare.rebind(writer)
            return spare
    return PickleStream(writer)


def close_stream(stream: PickleStream) -> None:
    """Keeps ``stream``, whose file was written without an error, for the thread's next
    save. (After an error, a stream may be half-way through a value: it is dropped.)"""
    if not stream.redirected and not stream._pending:
        _SPARE.stream = stream


def _point(target: functools.partial[Any], write: Callable[[Any], Any]) -> None:
    """Makes ``target`` call ``write``: a partial's ``__setstate__`` replaces its function
    (and its vectorcall), and the C pickler holds the partial itself."""
    target.__setstate__((write, (), None, None))  # type: ignore[attr-defined]


class _File:
    """The pickler's file: its ``write`` is the stream's switchable partial."""

    __slots__ = ("write",)

    def __init__(self, write: Callable[[Any], Any]) -> None:
        self.write = write


def _array_data(np: Any, array: Any) -> Iterator[Buffer]:
    """The bytes numpy's pickle holds for ``array`` (a plain ndarray), as buffers over its
    memory, or bounded copies when it is not contiguous."""
    flags = array.flags
    if flags.c_contiguous or flags.f_contiguous:
        # The memory as it lies: C order, or Fortran order with numpy's is_fortran flag.
        yield memoryview(array.ravel(order="K").view(np.uint8))
        return
    # C order, item by item as numpy does; copied as raw items, so that a structured dtype's
    # padding is the array's own bytes (numpy's typed copy leaves it undefined).
    raw = array.view(np.dtype((np.void, array.dtype.itemsize)))
    for piece in _c_order_slabs(np, raw):
        yield memoryview(piece.reshape(-1).view(np.uint8))


def _c_order_slabs(np: Any, array: Any) -> Iterator[Any]:
    """C-contiguous copies of ``array`` (ndim >= 1) that together hold its items in C
    order, each at most ``_PIECE`` bytes (or one item, if bigger)."""
    rows = len(array)
    row_bytes = array.nbytes // rows if rows else 0
    if row_bytes > _PIECE and array.ndim > 1:
        for row in array:
            yield from _c_order_slabs(np, row)
        return
    step = max(1, _PIECE // row_bytes) if row_bytes else rows or 1
    for start in range(0, rows, step):
        yield np.ascontiguousarray(array[start : start + step])


class _Pieces(list[bytes]):
    """A file for ``pickle.Pickler``: keeps the pieces written, without joining them.

    The C pickler hands a large ``bytes`` payload (a numpy array's data) to ``write`` as it
    is, instead of copying it into its buffer as ``pickle.dumps`` does: the snapshot then
    costs one copy of the data, not two. The writer thread encodes the pieces one after the
    other; they are never joined.
    """

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.append(data if type(data) is bytes else bytes(data))
        return len(data)


def dumps_in_pieces(value: Any) -> list[bytes]:
    """``pickle.dumps(value, protocol=4)``, as pieces (the same bytes once joined): a
    background save's snapshot, a copy of the value taken before the call returns."""
    chunks = _Pieces()
    pickle.Pickler(chunks, protocol=4).dump(value)
    return chunks
