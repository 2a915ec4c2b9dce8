"""Safe mode (``allow_pickle="safe"``): an unpickler that builds plain data and nothing else.

The opcode stream is interpreted here, not by ``pickle.Unpickler``: only data opcodes are
accepted, a global is looked up by name in ``ALLOWED_GLOBALS`` before anything is imported,
and it is never called as such. Each allowed global stands for one constructor that checks
its arguments (numpy arrays: numeric dtypes only, shape x itemsize == data length; ``REDUCE``
and ``BUILD`` only in the shapes ``pickle`` writes for these types) and builds the value
itself. Whatever else a stream asks for is refused with ``UnsafePickleError``.

Resources stay bounded by the input: the interpreter does not recurse, an allocation is
checked against the bytes the input can still hold (array data is read straight into the
array's memory), the memo is a dict (a huge index costs one entry) with at most one entry
per input byte, marks nest at most ``MAX_MARKS`` deep and the result's containers at most
``MAX_DEPTH``.

The interpreter reads opcodes one after the other, as ``pickle.loads`` does (FRAME is a
buffering hint): the commonest opcodes of plain data are handled in its loop, every other
one by a small handler in a table indexed by the opcode byte. What a damaged stream causes
(stack underflow, a missing mark, a memo miss, truncation, an argument its constructor
rejects) is checked where it happens and raised as ``pickle.UnpicklingError``; a refusal is
an ``UnsafePickleError`` with its reason; anything else is a bug here and surfaces as
``SafeLoaderBug``, never as either of them.

A pickle none of whose bytes is an opcode that can name a global, call, build or grow the
memo at will (``_NOT_PLAIN_DATA``) holds data opcodes only, whatever its arguments: it is
handed to ``pickle.loads``, which builds the same value faster.
"""

from __future__ import annotations

import collections
import datetime
import functools
import importlib
import math
import pickle
import re
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from jobpersist._pickle.allowlist import (
    ALLOWED_GLOBALS,
)
from jobpersist._pickle.allowlist import (
    DTYPE as _DTYPE,
)
from jobpersist._pickle.allowlist import (
    FROMBUFFER as _FROMBUFFER,
)
from jobpersist._pickle.allowlist import (
    KINDS as _KINDS,
)
from jobpersist._pickle.allowlist import (
    NDARRAY as _NDARRAY,
)
from jobpersist._pickle.allowlist import (
    RECONSTRUCT as _RECONSTRUCT,
)
from jobpersist._pickle.allowlist import (
    SCALAR as _SCALAR,
)
from jobpersist._pickle.allowlist import (
    TENSOR as _TENSOR,
)

__all__ = [
    "ALLOWED_GLOBALS",
    "SafeLoaderBug",
    "UnsafePickleError",
    "safe_load_stream",
    "safe_loads",
]


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle that safe mode (``allow_pickle="safe"``) refuses to load.

    Raised before the refused global is imported or anything it names is called. It is a
    ``pickle.UnpicklingError`` and, like every other file that cannot be loaded, a
    ``ValueError``. The message names the key and what was refused.
    """


class SafeLoaderBug(RuntimeError):
    """A failure inside the safe unpickler itself, not a property of the file.

    Damaged input is a ``pickle.UnpicklingError`` and a refusal an ``UnsafePickleError``;
    anything else the interpreter raises is a bug in it, reported as this error (chained to
    the original exception) so that it is never mistaken for a damaged or hostile file.
    """


# ----------------------------------------------------------------------------------------
# What a stream may name, and the internal objects that stand for it while it is built.
# ----------------------------------------------------------------------------------------
class _Global:
    """An allowed global on the stack: never the callable itself, only its name."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def qualified(self) -> str:
        return f"{self.module}.{self.name}"


class _PendingDtype:
    """``numpy.dtype(code)`` as REDUCE made it, waiting for BUILD's byte order."""

    __slots__ = ("base", "built", "keys")

    def __init__(self, base: Any) -> None:
        self.base = base
        self.keys: list[int] = []  # memo keys holding this object, updated by BUILD
        self.built = False  # BUILD runs once: a second reference to it stays refused


class _PendingArray:
    """``_reconstruct(cls, (0,), b'b')``, waiting for BUILD's shape, dtype and data."""

    __slots__ = ("built", "keys", "prepared", "tensor")

    def __init__(self, tensor: bool) -> None:
        self.tensor = tensor
        self.keys: list[int] = []
        self.prepared: Any = None  # the uint8 buffer its data was read into, if any
        self.built = False


class _Prepared:
    """Array data read straight into the array's memory (stands for the bytes)."""

    __slots__ = ("buffer",)

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer


_INTERNAL = (_Global, _PendingDtype, _PendingArray, _Prepared)
_PENDING = (_PendingDtype, _PendingArray)

_TOKENS = {key: _Global(*key) for key in _KINDS}
_KIND_OF = {id(token): _KINDS[key] for key, token in _TOKENS.items()}
# Protocol 0-2 pickles name the builtins module as Python 2 did (pickle's fix_imports).
for (_module, _name), _token in list(_TOKENS.items()):
    if _module == "builtins":
        _TOKENS[("__builtin__", _name)] = _token
del _module, _name, _token

ALLOWED_DESCRIPTION = (
    "plain data only: None, bool, int, float, complex, str, bytes, bytearray, tuple, list, "
    "dict, set, frozenset, collections.OrderedDict/Counter/deque, datetime "
    "date/time/datetime/timedelta/timezone, numpy arrays and scalars of bool, int, uint, "
    "float and complex dtypes, and pennylane.numpy.tensor"
)

MAX_MARKS = 10_000  # nesting of MARK; Python's pickler cannot write more than ~1000
# Nesting of the result's containers: what CPython's pickler writes under the default
# recursion limit (and what a recursive consumer of the result can walk).
MAX_DEPTH = 1000
MAX_DIMS = 64  # numpy's NPY_MAXDIMS (2.x; 1.x has 32)
_DIRECT_AT = 1 << 12  # array data at least this big is read into the array's own memory
_CHUNK = 1 << 16  # what a stream reads ahead of the opcode it needs


class _Refusal(Exception):
    """Internal: the stream asks for something safe mode does not do."""

    def __init__(self, detail: str, global_name: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.global_name = global_name


class _Malformed(Exception):
    """Internal: the stream is damaged (as ``pickle.loads`` would fail on it). Raised
    ``from`` the exception a damaged argument made a builder raise, if any."""


def _underflow() -> _Malformed:
    return _Malformed("unpickling stack underflow")


def _rejected(exc: Exception) -> _Malformed:
    """A damaged argument: what decoding or building it raised (raise it ``from exc``)."""
    return _Malformed(f"{type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------------------
# Lazy imports, done only for a global already found on the allow-list.
# ----------------------------------------------------------------------------------------
class _Numpy(NamedTuple):
    """What the constructors use of numpy, imported once."""

    np: Any
    scalar: Any
    frombuffer: Any
    dtype_codes: frozenset[str]
    setstate_swaps: bool  # numpy's __setstate__ turns other-endian data into native order


@functools.cache
def _load_numpy() -> _Numpy:
    np = importlib.import_module("numpy")
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
        numeric = importlib.import_module("numpy._core.numeric")
    except ImportError:  # numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
        numeric = importlib.import_module("numpy.core.numeric")
    codes = set()
    for kind in "biufc":
        for size in (1, 2, 4, 8, 10, 12, 16, 20, 24, 32):
            code = f"{kind}{size}"
            try:
                dt = np.dtype(code)
            except TypeError:
                continue
            if dt.kind == kind and dt.itemsize == size:
                codes.add(code)
    probe = np.empty(0, np.uint8)
    probe.__setstate__((1, (1,), np.dtype(">i4"), False, b"\x00\x00\x00\x01"))
    return _Numpy(
        np, multiarray.scalar, numeric._frombuffer, frozenset(codes), probe.dtype.isnative
    )


@functools.cache
def _load_tensor() -> Any:
    _load_numpy()
    return importlib.import_module("pennylane.numpy.tensor").tensor


def _resolve(module: str, name: str) -> _Global:
    """The token of an allowed global; refuses any other before importing anything."""
    token = _TOKENS.get((module, name))
    if token is None:
        raise _Refusal(f"it imports {module}.{name}", f"{module}.{name}")
    try:
        if token.module.startswith("numpy"):
            _load_numpy()
        elif token.module.startswith("pennylane"):
            _load_tensor()
    except ImportError as exc:
        raise _Malformed(
            f"it needs {token.qualified}, which cannot be imported here "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    return token


# ----------------------------------------------------------------------------------------
# The constructors: each checks its arguments and builds the value itself.
# ----------------------------------------------------------------------------------------
def _describe(value: Any, depth: int = 0) -> str:
    """A short, safe description of an argument for a message (never a long repr)."""
    if value is None or type(value) in (bool, int, float):
        text = repr(value)
        return text if len(text) <= 40 else type(value).__name__
    if type(value) in (str, bytes):
        return repr(value) if len(value) <= 40 else f"{type(value).__name__} of {len(value)}"
    if type(value) is tuple and depth < 2:
        return (
            "("
            + ", ".join(_describe(v, depth + 1) for v in value[:8])
            + (", ..." if len(value) > 8 else "")
            + ")"
        )
    if isinstance(value, _Global):
        return value.qualified
    if isinstance(value, _INTERNAL):
        return "an unfinished numpy object"
    return type(value).__name__


def _bad_args(token: _Global, args: Any) -> _Refusal:
    return _Refusal(
        f"it calls {token.qualified} with arguments safe mode does not accept: {_describe(args)}"
    )


_NUMBER = (int, float, bool)
# What a checked call builds from its arguments: the callable and the arguments to pass.
_Call = tuple[Callable[..., Any], tuple[Any, ...]]


def _reduce(token: _Global, args: Any) -> Any:
    """REDUCE of an allowed global: its check accepts the arguments or the call is refused;
    what the builder then raises on accepted types is a damaged argument."""
    if type(args) is not tuple:
        raise _Malformed("REDUCE arguments are not a tuple")
    call = _CHECKS[_KIND_OF[id(token)]](args)
    if call is None:
        raise _bad_args(token, args)
    build, build_args = call
    try:
        return build(*build_args)
    except (ValueError, OverflowError, TypeError) as exc:
        raise _rejected(exc) from exc


def _check_reconstruct(args: tuple[Any, ...]) -> _Call | None:
    if (
        len(args) == 3
        and args[0].__class__ is _Global
        and _KIND_OF[id(args[0])] in (_NDARRAY, _TENSOR)
        and type(args[1]) is tuple
        and len(args[1]) == 1
        and type(args[1][0]) is int
        and args[1][0] == 0
        and type(args[2]) is bytes
        and args[2] == b"b"
    ):
        return _PendingArray, (_KIND_OF[id(args[0])] == _TENSOR,)
    return None


def _check_dtype_call(args: tuple[Any, ...]) -> _Call | None:
    numpy = _load_numpy()
    if (
        len(args) == 3
        and type(args[0]) is str
        and args[0] in numpy.dtype_codes
        and type(args[1]) is bool
        and type(args[2]) is bool
    ):
        return _PendingDtype, (numpy.np.dtype(args[0]),)
    return None


def _check_scalar(args: tuple[Any, ...]) -> _Call | None:
    numpy = _load_numpy()
    if (
        len(args) == 2
        and isinstance(args[0], numpy.np.dtype)
        and type(args[1]) is bytes
        and len(args[1]) == args[0].itemsize
    ):
        _check_dtype(args[0])
        return numpy.scalar, args
    return None


def _check_frombuffer(args: tuple[Any, ...]) -> _Call | None:
    n = len(args)
    if (
        4 <= n <= 5
        and type(args[0]) in (bytes, bytearray)
        and type(args[3]) is str
        and args[3] in ("C", "F", "K")
        and (n == 4 or args[4] is None or _is_permutation(args[4], args[2]))
    ):
        *_checked, nbytes = _array_nbytes((1, args[2], args[1], False))
        if len(args[0]) == nbytes:
            return _load_numpy().frombuffer, args
    return None


def _check_deque(args: tuple[Any, ...]) -> _Call | None:
    n = len(args)
    if (
        n <= 2
        and (n == 0 or type(args[0]) in (list, tuple))
        and (n < 2 or args[1] is None or (type(args[1]) is int and args[1] >= 0))
    ):
        return collections.deque, args
    return None


def _check_moment(kind: str) -> Callable[[tuple[Any, ...]], _Call | None]:
    """datetime's date, time and datetime: the pickled bytes, and a timezone but for dates."""
    size = {"date": 4, "time": 6, "datetime": 10}[kind]
    build = getattr(datetime, kind)

    def check(args: tuple[Any, ...]) -> _Call | None:
        n = len(args)
        if (
            1 <= n <= 2
            and type(args[0]) is bytes
            and len(args[0]) == size
            and (n == 1 or type(args[1]) is datetime.timezone)
            and not (kind == "date" and n == 2)
        ):
            return build, args
        return None

    return check


def _accept(
    build: Callable[..., Any], accepts: Callable[[tuple[Any, ...]], bool]
) -> Callable[[tuple[Any, ...]], _Call | None]:
    """The check of a builtin constructor whose argument rule fits one expression."""
    return lambda args: (build, args) if accepts(args) else None


_CHECKS: dict[str, Callable[[tuple[Any, ...]], _Call | None]] = {
    _RECONSTRUCT: _check_reconstruct,
    _DTYPE: _check_dtype_call,
    _SCALAR: _check_scalar,
    _FROMBUFFER: _check_frombuffer,
    _NDARRAY: lambda args: None,
    _TENSOR: lambda args: None,
    "complex": _accept(complex, lambda a: len(a) <= 2 and all(type(x) in _NUMBER for x in a)),
    "set": _accept(set, lambda a: len(a) == 0 or (len(a) == 1 and type(a[0]) in (list, tuple))),
    "frozenset": _accept(
        frozenset, lambda a: len(a) == 0 or (len(a) == 1 and type(a[0]) in (list, tuple))
    ),
    "bytearray": _accept(bytearray, lambda a: len(a) == 0 or (len(a) == 1 and type(a[0]) is bytes)),
    "OrderedDict": _accept(collections.OrderedDict, lambda a: len(a) == 0),
    "Counter": _accept(
        collections.Counter, lambda a: len(a) == 0 or (len(a) == 1 and type(a[0]) is dict)
    ),
    "deque": _check_deque,
    "date": _check_moment("date"),
    "time": _check_moment("time"),
    "datetime": _check_moment("datetime"),
    "timedelta": _accept(
        datetime.timedelta, lambda a: len(a) <= 3 and all(type(x) is int for x in a)
    ),
    "timezone": _accept(
        datetime.timezone,
        lambda a: (
            1 <= len(a) <= 2
            and type(a[0]) is datetime.timedelta
            and (len(a) == 1 or type(a[1]) is str)
        ),
    ),
}


def _is_permutation(axes: Any, shape: Any) -> bool:
    return (
        type(axes) is tuple
        and type(shape) is tuple
        and all(type(a) is int for a in axes)
        and sorted(axes) == list(range(len(shape)))
    )


def _check_dtype(dt: Any) -> None:
    # Every dtype on the stack was built by _build_dtype; checked again where it is used.
    if dt.kind not in "biufc" or dt.fields is not None or dt.subdtype is not None:
        raise _Refusal(f"it uses the numpy dtype {dt}, which safe mode does not load")


def _build_dtype(pending: _PendingDtype, state: Any) -> Any:
    base = pending.base
    if (
        type(state) is tuple
        and len(state) in (8, 9)
        and type(state[0]) is int
        and state[0] == 3
        and type(state[1]) is str
        and state[2] is None
        and state[3] is None
        and state[4] is None
        and type(state[5]) is int
        and state[5] == -1
        and type(state[6]) is int
        and state[6] == -1
        and type(state[7]) is int
        and state[7] == base.flags
        and (len(state) == 8 or state[8] is None)
    ):
        order = state[1]
        if base.itemsize == 1 and order == "|":
            return base
        if base.itemsize > 1 and order in ("<", ">", "="):
            return base.newbyteorder(order)
    raise _Refusal(f"it sets the state of numpy.dtype({base.str[1:]!r}) to {_describe(state)}")


def _array_nbytes(items: list[Any] | tuple[Any, ...]) -> tuple[tuple[int, ...], Any, bool, int]:
    """Checks an array state's (version, shape, dtype, is_fortran): shape, dtype, order and
    the data length they require."""
    version, shape, dtype, fortran = items
    if not (
        type(version) is int
        and version == 1
        and type(shape) is tuple
        and len(shape) <= MAX_DIMS
        and all(type(d) is int and 0 <= d < 1 << 62 for d in shape)
        and isinstance(dtype, _load_numpy().np.dtype)
        and type(fortran) is bool
    ):
        raise _Refusal(f"it sets the state of a numpy array to {_describe(tuple(items))}")
    _check_dtype(dtype)
    return shape, dtype, fortran, math.prod(shape) * dtype.itemsize


def _build_array(pending: _PendingArray, state: Any) -> Any:
    size = 6 if pending.tensor else 5
    if type(state) is not tuple or len(state) != size:
        raise _Refusal(f"it sets the state of a numpy array to {_describe(state)}")
    shape, dtype, fortran, nbytes = _array_nbytes(state[:4])
    data = state[4]
    if data.__class__ is _Prepared and data.buffer is pending.prepared:
        buffer = data.buffer
    elif type(data) is bytes and len(data) == nbytes:
        buffer = bytearray(data)
    else:
        raise _Refusal(
            f"its numpy array data ({_describe(data)}) does not match the shape {shape} "
            f"and dtype {dtype}"
        )
    numpy = _load_numpy()
    try:
        array = numpy.np.ndarray(shape, dtype, buffer=buffer, order="F" if fortran else "C")
    except ValueError as exc:  # e.g. a zero-length shape whose other dimensions are huge
        raise _rejected(exc) from exc
    if numpy.setstate_swaps and not dtype.isnative:
        array.byteswap(inplace=True)
        array = array.view(dtype.newbyteorder("="))
    if pending.tensor:
        requires_grad = state[5]
        if type(requires_grad) is not bool:
            raise _Refusal(f"it sets requires_grad of a pennylane tensor to {_describe(state[5])}")
        array = array.view(_load_tensor())
        array.requires_grad = requires_grad
    return array


_SEQUENCES = frozenset({list, tuple, set, frozenset, collections.deque})
_MAPPINGS = frozenset({dict, collections.OrderedDict, collections.Counter})
_CONTAINERS = _SEQUENCES | _MAPPINGS
_INTERNAL_SET = frozenset(_INTERNAL)
_NESTED = _CONTAINERS | _INTERNAL_SET


def _check_result(value: Any) -> None:
    """Refuses a result nested deeper than ``MAX_DEPTH``, or holding a global or an
    unfinished numpy object as a value (which ``pickle.loads`` would return as the class
    itself or as a half-built object). Iterative: the walk itself cannot overflow."""
    todo = [(value, 1)]
    seen: set[int] = set()
    containers = _CONTAINERS
    internal = _INTERNAL_SET
    while todo:
        item, depth = todo.pop()
        cls = item.__class__
        if cls in internal:
            raise _Refusal(f"it returns {_describe(item)} as a value")
        if cls not in containers or id(item) in seen:
            continue
        if depth > MAX_DEPTH:
            raise _Refusal(f"it nests containers more than {MAX_DEPTH} deep")
        seen.add(id(item))
        depth += 1
        items = (*item.keys(), *item.values()) if cls in _MAPPINGS else item
        if _NESTED.isdisjoint(map(type, items)):
            continue  # only leaves (the common case: numbers, strings, arrays), at C speed
        todo += [(x, depth) for x in items if x.__class__ in containers or x.__class__ in internal]


# ----------------------------------------------------------------------------------------
# The interpreter
# ----------------------------------------------------------------------------------------
_REFUSED_OPCODES = {
    0x32: "DUP",
    0x50: "PERSID",
    0x51: "BINPERSID",
    0x53: "STRING",
    0x69: "INST",
    0x6F: "OBJ",
    0x81: "NEWOBJ",
    0x82: "EXT1",
    0x83: "EXT2",
    0x84: "EXT4",
    0x92: "NEWOBJ_EX",
    0x97: "NEXT_BUFFER",
    0x98: "READONLY_BUFFER",
}

_unpack_B = struct.Struct("<B").unpack_from
_unpack_i = struct.Struct("<i").unpack_from
_unpack_I = struct.Struct("<I").unpack_from
_unpack_H = struct.Struct("<H").unpack_from
_unpack_Q = struct.Struct("<Q").unpack_from
_unpack_d = struct.Struct(">d").unpack_from


class _Source:
    """Where more bytes come from once the buffer in hand is used up. What the reader
    raises is about the file's bytes: ``passthrough`` (its own errors, OSError, MemoryError)
    passes as it is, anything else makes the stream a damaged one."""

    __slots__ = ("base", "limit", "passthrough", "reader")

    def __init__(
        self, reader: Any, limit: int, passthrough: tuple[type[Exception], ...] = ()
    ) -> None:
        self.reader = reader
        self.limit = limit  # upper bound of the stream's total length
        self.base = 0  # stream offset of the buffer in hand
        self.passthrough = passthrough

    def more(self, data: bytes, pos: int, need: int) -> bytes:
        """A buffer holding ``data[pos:]`` and more, at least ``need`` bytes in all."""
        rest = data[pos:]
        want = need - len(rest)
        if self.reader is None or self.base + pos + need > self.limit:
            raise _Malformed("the pickle data was truncated")
        parts = [rest]
        got = 0
        while got < want:
            chunk = self._call(self.reader.read, max(want - got, _CHUNK))
            if not chunk:
                raise _Malformed("the pickle data was truncated")
            parts.append(chunk)
            got += len(chunk)
        self.base += pos
        return b"".join(parts)

    def read_into(self, buffer: Any, data: bytes, pos: int) -> tuple[bytes, int]:
        """Fills ``buffer`` from the buffer in hand (``data[pos:]``) and then from the reader
        itself; returns the buffer in hand and position after."""
        view = memoryview(buffer)
        n = len(buffer)
        have = min(n, len(data) - pos)
        view[:have] = memoryview(data)[pos : pos + have]
        pos += have
        filled = have
        while filled < n:
            got = None if self.reader is None else self._call(self.reader.readinto, view[filled:])
            if not got:
                raise _Malformed("the pickle data was truncated")
            filled += got
        if have < n:  # the buffer in hand was used up, and the reader read past it
            self.base += pos + (filled - have)
            return b"", 0
        return data, pos

    def _call(self, method: Callable[[Any], Any], argument: Any) -> Any:
        try:
            return method(argument)
        except self.passthrough:
            raise
        except Exception as exc:
            raise _rejected(exc) from exc

    def remaining(self, pos: int) -> int:
        return self.limit - self.base - pos


class _Loader:
    """One load: the stack, the marks, the memo and the buffer in hand (``data``, which
    only ``refill`` and ``read_into`` replace). The loop in ``run`` handles the commonest
    opcodes of plain data itself and hands every other one to its handler in
    ``_HANDLERS``: ``handler(loader, data, pos)`` with ``pos`` just after the opcode, which
    returns the position after its arguments in ``loader.data``."""

    __slots__ = ("data", "marks", "memo", "named", "source", "stack")

    def __init__(self, data: bytes, source: _Source) -> None:
        self.data = data
        self.source = source
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.named = False  # a global was resolved: the result is checked for internal objects

    def run(self) -> Any:
        data = self.data
        stack = self.stack
        push = stack.append
        pop = stack.pop
        memo = self.memo
        marks = self.marks
        handlers = _HANDLERS
        widths, unpackers, constants = _NUMBER_WIDTHS, _NUMBER_UNPACKERS, _CONSTANTS
        pos = _after_header(data)
        end = len(data)
        value: Any
        while True:
            if pos >= end:
                data, pos = self.refill(data, pos, 1)
                end = len(data)
            op = data[pos]
            pos += 1
            # The commonest opcodes of plain data, when their arguments are in hand; the
            # handlers in ``_HANDLERS`` do the rest (and read what is not in hand).
            if op == 0x8C and pos < end and pos + (n := data[pos] + 1) <= end:  # SHORT_BINUNICODE
                try:
                    value = data[pos + 1 : pos + n].decode("utf-8", "surrogatepass")
                except UnicodeDecodeError as exc:
                    raise _rejected(exc) from exc
                push(value)
                pos += n
                if pos < end and data[pos] == 0x94:  # MEMOIZE, as the pickler writes after it
                    memo[len(memo)] = value
                    pos += 1
            elif (width := widths[op]) and pos + width <= end:  # BININT, BININT1/2, BINFLOAT
                if pos + 2 * width + 1 < end and data[pos + width] == op:
                    pos = _run(data, pos, end, op, stack)  # a run of them, as lists hold
                else:
                    push(data[pos] if width == 1 else unpackers[op](data, pos)[0])
                    pos += width
            elif (value := constants[op]) is not _NO_VALUE:  # NONE, NEWTRUE, NEWFALSE, EMPTY_TUPLE
                push(value)
            elif op == 0x87 and len(stack) > 2:  # TUPLE3
                c = pop()
                b = pop()
                value = stack[-1] = (stack[-1], b, c)
                if pos < end and data[pos] == 0x94:  # MEMOIZE
                    memo[len(memo)] = value
                    pos += 1
            elif op == 0x5D or op == 0x7D:  # EMPTY_LIST, EMPTY_DICT
                value = [] if op == 0x5D else {}
                push(value)
                if pos < end and data[pos] == 0x94:  # MEMOIZE
                    memo[len(memo)] = value
                    pos += 1
            elif op == 0x28 and len(marks) < MAX_MARKS:  # MARK
                marks.append(len(stack))
            elif (
                op == 0x65  # APPENDS to a list (else its handler says what is wrong)
                and marks
                and 0 < (k := marks[-1]) <= len(stack)
                and stack[k - 1].__class__ is list
            ):
                marks.pop()
                stack[k - 1].extend(stack[k:])
                del stack[k:]
            elif op == 0x2E:  # STOP
                return self.stop()
            else:
                pos = handlers[op](self, data, pos)
                if self.data is not data:
                    data = self.data
                    end = len(data)

    def refill(self, data: bytes, pos: int, need: int) -> tuple[bytes, int]:
        """The buffer refill: a new buffer in hand that holds ``data[pos:]`` and at least
        ``need`` bytes in all, and its position 0 (``pos`` in ``data``)."""
        self.data = data = self.source.more(data, pos, need)
        return data, 0

    def read_into(self, buffer: Any, data: bytes, pos: int) -> int:
        """``buffer`` filled from the stream at ``pos``; the position after it."""
        self.data, pos = self.source.read_into(buffer, data, pos)
        return pos

    def line(self, data: bytes, pos: int, limit: int, overlong: str) -> tuple[bytes, int]:
        """The text from ``pos`` to the next newline, and the position after the newline;
        ``overlong`` when more than ``limit`` bytes hold none."""
        while True:
            newline = data.find(b"\n", pos)
            if newline >= 0:
                return data[pos:newline], newline + 1
            if len(data) - pos > limit:
                raise _Malformed(overlong)
            data, pos = self.refill(data, pos, len(data) - pos + 1)

    def pop(self) -> Any:
        try:
            return self.stack.pop()
        except IndexError:
            raise _underflow() from None

    def top(self) -> Any:
        try:
            return self.stack[-1]
        except IndexError:
            raise _underflow() from None

    def pop_mark(self) -> list[Any]:
        """The items above the last mark, taken off the stack with the mark."""
        try:
            k = self.marks.pop()
        except IndexError:
            raise _Malformed("could not find MARK") from None
        stack = self.stack
        items = stack[k:]
        del stack[k:]
        return items

    def put(self, key: int) -> None:
        value = self.top()
        self.memo[key] = value
        if value.__class__ in _PENDING:
            value.keys.append(key)

    def get(self, key: int) -> None:
        try:
            self.stack.append(self.memo[key])
        except KeyError:
            raise _Malformed(f"Memo value not found at index {key}") from None

    def stop(self) -> Any:
        value = self.pop()
        if self.named or self.source.limit > MAX_DEPTH:
            _check_result(value)  # fewer bytes cannot nest deeper than MAX_DEPTH
        return value


def _after_header(data: bytes) -> int:
    """Where the opcodes after PROTO and FRAME start, when the buffer in hand opens with
    them (as every pickle does); 0 otherwise."""
    end = len(data)
    if end >= 2 and data[0] == 0x80:
        if data[1] > pickle.HIGHEST_PROTOCOL:
            raise _Malformed(f"unsupported pickle protocol: {data[1]}")
        return 11 if end >= 11 and data[2] == 0x95 else 2
    return 0


# Runs of one fixed-size number opcode (lists of floats or ints, as APPENDS batches write
# them) are decoded by one struct call: opcode byte -> (argument format, stride).
_RUNS = {0x47: (">", "d", 9), 0x4A: ("<", "i", 5), 0x4B: ("<", "B", 2), 0x4D: ("<", "H", 3)}
_RUN_MAX = 1024  # opcodes per call (pickle's batches hold 1000)


@functools.cache
def _run_struct(op: int, count: int) -> struct.Struct:
    order, code, _stride = _RUNS[op]
    return struct.Struct(order + code + ("x" + code) * (count - 1))


def _run(data: bytes, pos: int, end: int, op: int, stack: list[Any]) -> int:
    """Pushes the numbers of the run of ``op`` opcodes whose first argument is at ``pos``
    (the run ends where another opcode, or the buffer in hand, does); returns the position
    after the run's last argument."""
    stride = _RUNS[op][2]
    first = pos + stride - 1  # the second opcode of the run
    more = min(_RUN_MAX, (end - first) // stride)  # opcodes whose argument is in hand
    ops = data[first : first + stride * more : stride]
    count = 1 + len(ops) - len(ops.lstrip(bytes([op])))
    stack.extend(_run_struct(op, count).unpack_from(data, pos))
    return pos + stride * count - 1


def _direct_target(stack: list[Any], marks: list[int], n: int) -> _PendingArray | None:
    """The array whose data the bytes about to be read are, when the stack shows numpy's
    pattern: ``_reconstruct(...)``, MARK, version, shape, dtype, is_fortran."""
    if not marks:
        return None
    k = marks[-1]
    if len(stack) - k != 4 or k < 1:
        return None
    target = stack[k - 1]
    if target.__class__ is not _PendingArray or target.prepared is not None or target.built:
        return None
    _shape, _dtype, _fortran, nbytes = _array_nbytes(stack[k:])
    if nbytes != n:
        raise _Refusal(
            f"its numpy array data ({n} bytes) does not match the shape {_shape} and dtype {_dtype}"
        )
    target.prepared = _load_numpy().np.empty(n, "uint8")
    return target


# ----------------------------------------------------------------------------------------
# The opcode handlers: handler(loader, data, pos) -> the position after the arguments.
# ----------------------------------------------------------------------------------------
_Handler = Callable[[_Loader, bytes, int], int]


def _push_constant(value: Any) -> _Handler:
    """NONE, NEWTRUE, NEWFALSE, EMPTY_TUPLE: the same (immutable) value every time."""

    def handler(loader: _Loader, data: bytes, pos: int) -> int:
        loader.stack.append(value)
        return pos

    return handler


def _push_empty(make: Callable[[], Any]) -> _Handler:
    """EMPTY_LIST, EMPTY_DICT, EMPTY_SET: a new container, memoized if MEMOIZE follows."""

    def handler(loader: _Loader, data: bytes, pos: int) -> int:
        value = make()
        loader.stack.append(value)
        if pos < len(data) and data[pos] == 0x94:  # MEMOIZE
            memo = loader.memo
            memo[len(memo)] = value
            pos += 1
        return pos

    return handler


def _op_number(loader: _Loader, data: bytes, pos: int) -> int:
    """BININT, BININT1, BININT2, BINFLOAT (and runs of them)."""
    op = data[pos - 1]
    width, unpack = _NUMBERS[op]
    if pos + width > len(data):
        data, pos = loader.refill(data, pos, width)
    if pos + 2 * width + 1 < len(data) and data[pos + width] == op:
        return _run(data, pos, len(data), op, loader.stack)
    loader.stack.append(unpack(data, pos)[0])
    return pos + width


_NUMBERS = {0x4A: (4, _unpack_i), 0x4B: (1, _unpack_B), 0x4D: (2, _unpack_H), 0x47: (8, _unpack_d)}
_CONSTANT_VALUES = {0x4E: None, 0x88: True, 0x89: False, 0x29: ()}


def _by_opcode(values: dict[int, Any], missing: Any) -> tuple[Any, ...]:
    """A table indexed by opcode byte (faster to look up than a dict)."""
    return tuple(values.get(op, missing) for op in range(256))


# The loop's lookups: a number opcode's argument width (0: not a number opcode) and
# unpacker, and the value a constant opcode pushes (_NO_VALUE: not a constant opcode).
_NUMBER_WIDTHS = _by_opcode({op: width for op, (width, _) in _NUMBERS.items()}, 0)
_NUMBER_UNPACKERS = _by_opcode({op: unpack for op, (_, unpack) in _NUMBERS.items()}, None)
_NO_VALUE = object()
_CONSTANTS = _by_opcode(_CONSTANT_VALUES, _NO_VALUE)


def _op_memoize(loader: _Loader, data: bytes, pos: int) -> int:
    loader.put(len(loader.memo))
    return pos


def _op_memo_key(loader: _Loader, data: bytes, pos: int) -> int:
    """BINGET, LONG_BINGET, BINPUT, LONG_BINPUT: a 1- or 4-byte memo index."""
    op = data[pos - 1]
    width = 1 if op in (0x68, 0x71) else 4
    if pos + width > len(data):
        data, pos = loader.refill(data, pos, width)
    key = data[pos] if width == 1 else _unpack_I(data, pos)[0]
    if op in (0x68, 0x6A):
        loader.get(key)
    else:
        loader.put(key)
    return pos + width


def _op_mark(loader: _Loader, data: bytes, pos: int) -> int:
    marks = loader.marks
    if len(marks) >= MAX_MARKS:
        raise _Refusal(f"it nests more than {MAX_MARKS} marks")
    marks.append(len(loader.stack))
    return pos


def _op_append(loader: _Loader, data: bytes, pos: int) -> int:
    """APPENDS, APPEND: to a list or deque."""
    items = loader.pop_mark() if data[pos - 1] == 0x65 else [loader.pop()]
    target = loader.top()
    if target.__class__ is list or target.__class__ is collections.deque:
        target.extend(items)
    else:
        raise _Refusal(f"it appends to {_describe(target)}")
    return pos


def _op_setitems(loader: _Loader, data: bytes, pos: int) -> int:
    """SETITEMS, SETITEM: into a dict, OrderedDict or Counter."""
    if data[pos - 1] == 0x75:
        items = loader.pop_mark()
    else:
        v = loader.pop()
        items = [loader.pop(), v]
    if len(items) % 2:
        raise _Malformed("odd number of items for SETITEMS")
    target = loader.top()
    cls = target.__class__
    if not (cls is dict or cls is collections.OrderedDict or cls is collections.Counter):
        raise _Refusal(f"it sets items of {_describe(target)}")
    try:
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]
    except TypeError as exc:  # an unhashable key
        raise _rejected(exc) from exc
    return pos


def _op_small_tuple(loader: _Loader, data: bytes, pos: int) -> int:
    """TUPLE1, TUPLE2, TUPLE3 (memoized if MEMOIZE follows)."""
    stack = loader.stack
    size = data[pos - 1] - 0x84
    if len(stack) < size:
        raise _underflow()
    value = tuple(stack[-size:])
    del stack[-size:]
    stack.append(value)
    if pos < len(data) and data[pos] == 0x94:  # MEMOIZE
        memo = loader.memo
        memo[len(memo)] = value
        pos += 1
    return pos


def _op_from_mark(loader: _Loader, data: bytes, pos: int) -> int:
    """TUPLE, LIST, DICT, FROZENSET: a container of the items above the last mark."""
    op = data[pos - 1]
    items = loader.pop_mark()
    if op == 0x64 and len(items) % 2:
        raise _Malformed("odd number of items for DICT")
    try:
        if op == 0x74:
            value: Any = tuple(items)
        elif op == 0x6C:
            value = items
        elif op == 0x64:
            value = {items[i]: items[i + 1] for i in range(0, len(items), 2)}
        else:
            value = frozenset(items)
    except TypeError as exc:  # an unhashable key or member
        raise _rejected(exc) from exc
    loader.stack.append(value)
    return pos


def _op_additems(loader: _Loader, data: bytes, pos: int) -> int:
    items = loader.pop_mark()
    target = loader.top()
    if target.__class__ is not set:
        raise _Refusal(f"it adds items to {_describe(target)}")
    try:
        target.update(items)
    except TypeError as exc:  # an unhashable member
        raise _rejected(exc) from exc
    return pos


def _op_pop(loader: _Loader, data: bytes, pos: int) -> int:
    marks = loader.marks
    if marks and marks[-1] == len(loader.stack):
        marks.pop()
    else:
        loader.pop()
    return pos


def _op_pop_mark(loader: _Loader, data: bytes, pos: int) -> int:
    loader.pop_mark()
    return pos


def _op_proto(loader: _Loader, data: bytes, pos: int) -> int:
    if pos >= len(data):
        data, pos = loader.refill(data, pos, 1)
    if data[pos] > pickle.HIGHEST_PROTOCOL:
        raise _Malformed(f"unsupported pickle protocol: {data[pos]}")
    return pos + 1


def _op_frame(loader: _Loader, data: bytes, pos: int) -> int:
    """FRAME: a hint for buffering; the opcodes follow as usual."""
    if pos + 8 > len(data):
        data, pos = loader.refill(data, pos, 8)
    return pos + 8


def _op_long(loader: _Loader, data: bytes, pos: int) -> int:
    """LONG1, LONG4: a byte count, then a little-endian two's complement integer."""
    width = 1 if data[pos - 1] == 0x8A else 4
    if pos + width > len(data):
        data, pos = loader.refill(data, pos, width)
    n = data[pos] if width == 1 else _unpack_i(data, pos)[0]
    pos += width
    if n < 0:
        raise _Malformed("LONG pickle has negative byte count")
    if pos + n > len(data):
        if n > loader.source.remaining(pos):
            raise _Malformed("the pickle data was truncated")
        data, pos = loader.refill(data, pos, n)
    loader.stack.append(int.from_bytes(data[pos : pos + n], "little", signed=True))
    return pos + n


# Opcodes with a byte count, then that many bytes: opcode -> (count width, its format).
_COUNTED = {
    0x8C: (1, _unpack_B),  # SHORT_BINUNICODE (handled by the loop)
    0x58: (4, _unpack_I),  # BINUNICODE
    0x8D: (8, _unpack_Q),  # BINUNICODE8
    0x42: (4, _unpack_I),  # BINBYTES
    0x43: (1, _unpack_B),  # SHORT_BINBYTES
    0x8E: (8, _unpack_Q),  # BINBYTES8
    0x96: (8, _unpack_Q),  # BYTEARRAY8
    0x54: (4, _unpack_i),  # BINSTRING
    0x55: (1, _unpack_B),  # SHORT_BINSTRING
}
_BIG_READS = (0x42, 0x8E, 0x96)  # read into their own buffer when big


def _op_counted(loader: _Loader, data: bytes, pos: int) -> int:
    op = data[pos - 1]
    width, unpack = _COUNTED[op]
    if pos + width > len(data):
        data, pos = loader.refill(data, pos, width)
    n: int = unpack(data, pos)[0]
    pos += width
    if n < 0:
        raise _Malformed("negative byte count")
    source = loader.source
    if n > (len(data) - pos if source.reader is None else source.remaining(pos)):
        raise _Malformed("the pickle data was truncated")
    if n >= _DIRECT_AT and op in _BIG_READS:
        target = None if op == 0x96 else _direct_target(loader.stack, loader.marks, n)
        if target is not None or pos + n > len(data):
            # Array data straight into the array's memory, or big bytes past the buffer in
            # hand into their own buffer, once.
            buffer = bytearray(n) if target is None else target.prepared
            pos = loader.read_into(buffer, data, pos)
            if target is not None:
                loader.stack.append(_Prepared(buffer))
            else:
                loader.stack.append(buffer if op == 0x96 else bytes(buffer))
            return pos
    if pos + n > len(data):
        data, pos = loader.refill(data, pos, n)
    raw = data[pos : pos + n]
    try:
        if op in (0x8C, 0x58, 0x8D):
            value: Any = raw.decode("utf-8", "surrogatepass")
        elif op in (0x54, 0x55):
            value = raw.decode("ascii")  # pickle.loads' default encoding
        else:
            value = bytearray(raw) if op == 0x96 else raw
    except UnicodeDecodeError as exc:
        raise _rejected(exc) from exc
    loader.stack.append(value)
    return pos + n


def _op_text(loader: _Loader, data: bytes, pos: int) -> int:
    """INT, LONG, FLOAT, UNICODE, GET, PUT: protocol 0's text arguments, one line."""
    op = data[pos - 1]
    line, pos = loader.line(data, pos, 1 << 20, "the pickle data was truncated")
    try:
        if op == 0x49:
            loader.stack.append(True if line == b"01" else False if line == b"00" else int(line))
        elif op == 0x4C:
            loader.stack.append(int(line[:-1] if line.endswith(b"L") else line))
        elif op == 0x46:
            loader.stack.append(float(line))
        elif op == 0x56:
            loader.stack.append(line.decode("raw-unicode-escape"))
        else:
            key = int(line)
            if op == 0x67:
                loader.get(key)
            elif key < 0:
                raise _Malformed("negative PUT argument")
            else:
                loader.put(key)
    except ValueError as exc:  # not a number, or text that does not decode
        raise _rejected(exc) from exc
    return pos


def _op_global(loader: _Loader, data: bytes, pos: int) -> int:
    """GLOBAL: module and name, one line each (resolved, never imported unless allowed)."""
    texts = []
    for _ in range(2):
        line, pos = loader.line(loader.data, pos, 4096, "GLOBAL name too long")
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise _rejected(exc) from exc
    loader.stack.append(_resolve(texts[0], texts[1]))
    loader.named = True
    return pos


def _op_stack_global(loader: _Loader, data: bytes, pos: int) -> int:
    name = loader.pop()
    module = loader.pop()
    if type(module) is not str or type(name) is not str:
        raise _Malformed("STACK_GLOBAL requires str")
    loader.stack.append(_resolve(module, name))
    loader.named = True
    return pos


def _op_reduce(loader: _Loader, data: bytes, pos: int) -> int:
    args = loader.pop()
    func = loader.top()
    if func.__class__ is not _Global:
        raise _Refusal(f"it calls {_describe(func)}")
    loader.stack[-1] = _reduce(func, args)
    return pos


def _op_build(loader: _Loader, data: bytes, pos: int) -> int:
    """BUILD: only of a pending numpy dtype or array, once."""
    state = loader.pop()
    target = loader.top()
    cls = target.__class__
    if cls in _PENDING and target.built:
        raise _Refusal("it sets the state of a numpy object twice")
    if cls is _PendingDtype:
        value = _build_dtype(target, state)
    elif cls is _PendingArray:
        value = _build_array(target, state)
    else:
        raise _Refusal(f"it sets the state of {_describe(target)}")
    loader.stack[-1] = value
    memo = loader.memo
    for key in target.keys:
        if memo.get(key) is target:
            memo[key] = value
    target.keys.clear()
    target.built = True
    return pos


def _op_refused(loader: _Loader, data: bytes, pos: int) -> int:
    raise _Refusal(f"it uses the opcode {_REFUSED_OPCODES[data[pos - 1]]}, which safe mode refuses")


def _op_invalid(loader: _Loader, data: bytes, pos: int) -> int:
    raise _Malformed(f"invalid load key, {bytes([data[pos - 1]])!r}")


def _handlers() -> tuple[_Handler, ...]:
    by_opcode: dict[int, _Handler] = {
        0x94: _op_memoize,
        0x28: _op_mark,
        0x5D: _push_empty(list),
        0x7D: _push_empty(dict),
        0x8F: _push_empty(set),
        # STOP (0x2E) ends the loop in _Loader.run.
        0x74: _op_from_mark,
        0x6C: _op_from_mark,
        0x64: _op_from_mark,
        0x91: _op_from_mark,
        0x90: _op_additems,
        0x93: _op_stack_global,
        0x63: _op_global,
        0x52: _op_reduce,
        0x62: _op_build,
        0x80: _op_proto,
        0x95: _op_frame,
        0x30: _op_pop,
        0x31: _op_pop_mark,
    }
    by_opcode.update({op: _push_constant(value) for op, value in _CONSTANT_VALUES.items()})
    for ops, handler in (
        ((0x4A, 0x4B, 0x4D, 0x47), _op_number),
        ((0x65, 0x61), _op_append),
        ((0x75, 0x73), _op_setitems),
        ((0x85, 0x86, 0x87), _op_small_tuple),
        ((0x68, 0x6A, 0x71, 0x72), _op_memo_key),
        ((0x8A, 0x8B), _op_long),
        (tuple(_COUNTED), _op_counted),
        ((0x49, 0x4C, 0x46, 0x56, 0x67, 0x70), _op_text),
        (tuple(_REFUSED_OPCODES), _op_refused),
    ):
        by_opcode.update(dict.fromkeys(ops, handler))
    return _by_opcode(by_opcode, _op_invalid)


_HANDLERS = _handlers()


# ----------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------
def _refused_message(key: str, refusal: _Refusal, named: list[str]) -> str:
    if named:
        verb = "is" if len(named) == 1 else "are"
        what = f"it imports {', '.join(named)}, which {verb} not on the safe list"
    else:
        what = refusal.detail
    return (
        f'Refused to unpickle the value of key {key!r} in safe mode (allow_pickle="safe"): '
        f"{what}. Safe mode loads {ALLOWED_DESCRIPTION}. If you trust the file, load it with "
        "allow_pickle=True; `jobpersist inspect FILE` shows what its pickles would import."
    )


# Every byte value that is an opcode able to name a global, call or build an object, load
# a persistent id or extension, or grow the memo to an index of the stream's choosing:
# GLOBAL, STACK_GLOBAL, INST, OBJ, REDUCE, BUILD, NEWOBJ, NEWOBJ_EX, EXT1/2/4, PERSID,
# BINPERSID, PUT, LONG_BINPUT. A pickle whose bytes hold none of them, in any position, can
# only run data opcodes, so ``pickle.loads`` builds it (with the same result, faster).
_NOT_PLAIN_DATA = re.compile(b"[c\x93ioRb\x81\x92\x82\x83\x84PQpr]")


def safe_loads(key: str, payload: bytes) -> Any:
    """The value pickled in ``payload``, built by the safe interpreter.

    Raises:
        UnsafePickleError: If the pickle needs anything safe mode does not load.
        pickle.UnpicklingError: If the pickle is damaged (the caller wraps it in ValueError).
        SafeLoaderBug: If the safe unpickler itself fails (a bug, not a property of the file).
    """
    try:
        if _NOT_PLAIN_DATA.search(payload) is None:
            # What pickle.loads raises is its verdict on a damaged stream (a MemoryError too:
            # it raises one for a length no input can hold).
            try:
                value = pickle.loads(payload)  # noqa: S301 - data opcodes only, see above
            except Exception as exc:
                raise _rejected(exc) from exc
            if len(payload) > MAX_DEPTH:
                _check_result(value)
            return value
        return _Loader(payload, _Source(None, len(payload))).run()
    except MemoryError:
        raise
    except Exception as exc:
        error = _public_error(key, exc, payload)
        raise error from error.__cause__


def safe_load_stream(
    key: str, reader: Any, limit: int, passthrough: type[Exception] = OSError
) -> Any:
    """``safe_loads`` of a value read from ``reader`` (a ``ValueReader``) as it is decoded;
    ``limit`` bounds the value's length (what its base64 text can hold). Big array data is
    read straight into the array's memory. ``passthrough`` (the reader's own errors),
    ``OSError`` and ``MemoryError`` are raised as they are.

    Raises:
        UnsafePickleError: If the pickle needs anything safe mode does not load.
        pickle.UnpicklingError: If the pickle is damaged.
        SafeLoaderBug: If the safe unpickler itself fails (a bug, not a property of the file).
    """
    source = _Source(reader, limit, (passthrough, OSError, MemoryError))
    try:
        return _Loader(b"", source).run()
    except source.passthrough:
        raise
    except Exception as exc:
        error = _public_error(key, exc, None)
        raise error from error.__cause__


def _public_error(key: str, exc: Exception, payload: bytes | None) -> Exception:
    """What a load raises (from its ``__cause__``) for ``exc``: a refusal as
    ``UnsafePickleError`` (for a global, naming every unlisted one in ``payload``, or the
    refused one of a stream), damage as ``pickle.UnpicklingError`` (chained to what the
    damage made a decoder or constructor raise), and anything else as ``SafeLoaderBug``."""
    error: Exception
    if isinstance(exc, _Refusal):
        if exc.global_name is None:
            named = []
        else:
            named = [exc.global_name] if payload is None else _unlisted_globals(payload)
        error = UnsafePickleError(_refused_message(key, exc, named))
        error.__cause__ = None  # the internal exception says no more than the message
    elif isinstance(exc, _Malformed):
        error = pickle.UnpicklingError(str(exc))
        error.__cause__ = exc.__cause__
    else:
        error = SafeLoaderBug(
            f"The safe unpickler failed on the value of key {key!r} ({type(exc).__name__}: "
            f"{exc}): a bug in jobpersist, which says nothing about the file. Please report "
            "it; allow_pickle=True loads a file you trust."
        )
        error.__cause__ = exc
    return error


def _unlisted_globals(payload: bytes) -> list[str]:
    """Every global outside the allow-list that the pickle names (read, never imported)."""
    from jobpersist._pickle.inspect import scan_pickle  # only on a refusal

    scan = scan_pickle(payload)
    return sorted({g.qualified for g in scan.globals if not g.safe})
