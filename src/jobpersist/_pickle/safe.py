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

A pickle none of whose bytes is an opcode that can name a global, call, build or grow the
memo at will (``_NOT_PLAIN_DATA``) holds data opcodes only, whatever its arguments: it is
handed to ``pickle.loads``, which builds the same value faster.
"""

from __future__ import annotations

import collections
import datetime
import importlib
import math
import pickle
import re
import struct
from typing import Any

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "safe_load_stream", "safe_loads"]


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle that safe mode (``allow_pickle="safe"``) refuses to load.

    Raised before the refused global is imported or anything it names is called. It is a
    ``pickle.UnpicklingError`` and, like every other file that cannot be loaded, a
    ``ValueError``. The message names the key and what was refused.
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

_NDARRAY, _TENSOR, _RECONSTRUCT, _DTYPE, _SCALAR, _FROMBUFFER = (
    "ndarray",
    "tensor",
    "_reconstruct",
    "dtype",
    "scalar",
    "_frombuffer",
)
# (module, name) -> what it builds. numpy 1.x writes numpy.core, numpy 2.x numpy._core.
_KINDS: dict[tuple[str, str], str] = {
    ("builtins", "complex"): "complex",
    ("builtins", "set"): "set",
    ("builtins", "frozenset"): "frozenset",
    ("builtins", "bytearray"): "bytearray",
    ("collections", "OrderedDict"): "OrderedDict",
    ("collections", "Counter"): "Counter",
    ("collections", "deque"): "deque",
    ("datetime", "date"): "date",
    ("datetime", "time"): "time",
    ("datetime", "datetime"): "datetime",
    ("datetime", "timedelta"): "timedelta",
    ("datetime", "timezone"): "timezone",
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTYPE,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    # Protocol 5 (in-band buffers): numpy.core.numeric._frombuffer(buf, dtype, shape, order).
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("pennylane.numpy.tensor", "tensor"): _TENSOR,
}

ALLOWED_GLOBALS: dict[str, frozenset[str]] = {}
for _module, _name in _KINDS:
    ALLOWED_GLOBALS[_module] = ALLOWED_GLOBALS.get(_module, frozenset()) | {_name}
del _module, _name

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
    """Internal: the stream is damaged (as ``pickle.loads`` would fail on it)."""


# ----------------------------------------------------------------------------------------
# Lazy imports, done only for a global already found on the allow-list.
# ----------------------------------------------------------------------------------------
_numpy: Any = None
_scalar: Any = None
_frombuffer: Any = None
_tensor: Any = None
_dtype_codes: frozenset[str] = frozenset()
_setstate_swaps = True  # numpy's __setstate__ turns other-endian data into native order


def _load_numpy() -> Any:
    global _numpy, _scalar, _frombuffer, _dtype_codes, _setstate_swaps
    if _numpy is None:
        np = importlib.import_module("numpy")
        try:
            multiarray = importlib.import_module("numpy._core.multiarray")
            numeric = importlib.import_module("numpy._core.numeric")
        except ImportError:  # numpy 1.x
            multiarray = importlib.import_module("numpy.core.multiarray")
            numeric = importlib.import_module("numpy.core.numeric")
        _frombuffer = numeric._frombuffer
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
        _scalar = multiarray.scalar
        probe = np.empty(0, np.uint8)
        probe.__setstate__((1, (1,), np.dtype(">i4"), False, b"\x00\x00\x00\x01"))
        _setstate_swaps = probe.dtype.isnative
        _dtype_codes = frozenset(codes)
        _numpy = np
    return _numpy


def _load_tensor() -> Any:
    global _tensor
    if _tensor is None:
        _load_numpy()
        _tensor = importlib.import_module("pennylane.numpy.tensor").tensor
    return _tensor


def _resolve(module: str, name: str) -> _Global:
    """The token of an allowed global; refuses any other before importing anything."""
    token = _TOKENS.get((module, name))
    if token is None:
        raise _Refusal(f"it imports {module}.{name}", f"{module}.{name}")
    if token.module.startswith("numpy"):
        _load_numpy()
    elif token.module.startswith("pennylane"):
        _load_tensor()
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


def _reduce(token: _Global, args: Any) -> Any:
    if type(args) is not tuple:
        raise _Malformed("REDUCE arguments are not a tuple")
    kind = _KIND_OF[id(token)]
    n = len(args)
    if kind == _RECONSTRUCT:
        if (
            n == 3
            and args[0].__class__ is _Global
            and _KIND_OF[id(args[0])] in (_NDARRAY, _TENSOR)
            and type(args[1]) is tuple
            and len(args[1]) == 1
            and type(args[1][0]) is int
            and args[1][0] == 0
            and type(args[2]) is bytes
            and args[2] == b"b"
        ):
            return _PendingArray(_KIND_OF[id(args[0])] == _TENSOR)
    elif kind == _DTYPE:
        if (
            n == 3
            and type(args[0]) is str
            and args[0] in _dtype_codes
            and type(args[1]) is bool
            and type(args[2]) is bool
        ):
            return _PendingDtype(_numpy.dtype(args[0]))
    elif kind == _SCALAR:
        if (
            n == 2
            and isinstance(args[0], _numpy.dtype)
            and type(args[1]) is bytes
            and len(args[1]) == args[0].itemsize
        ):
            _check_dtype(args[0])
            return _scalar(args[0], args[1])
    elif kind == _FROMBUFFER:
        if (
            4 <= n <= 5
            and type(args[0]) in (bytes, bytearray)
            and type(args[3]) is str
            and args[3] in ("C", "F", "K")
            and (n == 4 or args[4] is None or _is_permutation(args[4], args[2]))
        ):
            *_checked, nbytes = _array_nbytes((1, args[2], args[1], False))
            if len(args[0]) == nbytes:
                return _frombuffer(*args)
    elif kind == "complex":
        if n <= 2 and all(type(a) in _NUMBER for a in args):
            return complex(*args)
    elif kind in ("set", "frozenset"):
        if n == 0 or (n == 1 and type(args[0]) in (list, tuple)):
            return (set if kind == "set" else frozenset)(*args)
    elif kind == "bytearray":
        if n == 0 or (n == 1 and type(args[0]) is bytes):
            return bytearray(*args)
    elif kind == "OrderedDict":
        if n == 0:
            return collections.OrderedDict()
    elif kind == "Counter":
        if n == 0 or (n == 1 and type(args[0]) is dict):
            return collections.Counter(*args)
    elif kind == "deque":
        if (
            n <= 2
            and (n == 0 or type(args[0]) in (list, tuple))
            and (n < 2 or args[1] is None or (type(args[1]) is int and args[1] >= 0))
        ):
            return collections.deque(*args)
    elif kind in ("date", "time", "datetime"):
        size = {"date": 4, "time": 6, "datetime": 10}[kind]
        if (
            1 <= n <= 2
            and type(args[0]) is bytes
            and len(args[0]) == size
            and (n == 1 or type(args[1]) is datetime.timezone)
            and not (kind == "date" and n == 2)
        ):
            return getattr(datetime, kind)(*args)
    elif kind == "timedelta":
        if n <= 3 and all(type(a) is int for a in args):
            return datetime.timedelta(*args)
    elif kind == "timezone":
        if 1 <= n <= 2 and type(args[0]) is datetime.timedelta and (n == 1 or type(args[1]) is str):
            return datetime.timezone(*args)
    raise _bad_args(token, args)


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
        and isinstance(dtype, _numpy.dtype)
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
    array = _numpy.ndarray(shape, dtype, buffer=buffer, order="F" if fortran else "C")
    if _setstate_swaps and not dtype.isnative:
        array.byteswap(inplace=True)
        array = array.view(dtype.newbyteorder("="))
    if pending.tensor:
        requires_grad = state[5]
        if type(requires_grad) is not bool:
            raise _Refusal(f"it sets requires_grad of a pennylane tensor to {_describe(state[5])}")
        array = array.view(_tensor)
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

_unpack_i = struct.Struct("<i").unpack_from
_unpack_I = struct.Struct("<I").unpack_from
_unpack_H = struct.Struct("<H").unpack_from
_unpack_Q = struct.Struct("<Q").unpack_from
_unpack_d = struct.Struct(">d").unpack_from


class _Source:
    """Where more bytes come from once the buffer in hand is used up."""

    __slots__ = ("base", "limit", "reader")

    def __init__(self, reader: Any, limit: int) -> None:
        self.reader = reader
        self.limit = limit  # upper bound of the stream's total length
        self.base = 0  # stream offset of the buffer in hand

    def more(self, data: bytes, pos: int, need: int) -> bytes:
        """A buffer holding ``data[pos:]`` and at least ``need`` more bytes after it."""
        rest = data[pos:]
        want = need - len(rest)
        if self.reader is None or self.base + pos + need > self.limit:
            raise _Malformed("the pickle data was truncated")
        parts = [rest]
        got = 0
        while got < want:
            chunk = self.reader.read(max(want - got, _CHUNK))
            if not chunk:
                raise _Malformed("the pickle data was truncated")
            parts.append(chunk)
            got += len(chunk)
        self.base += pos
        return b"".join(parts)

    def remaining(self, pos: int) -> int:
        return self.limit - self.base - pos


def _interpret(data: bytes, source: _Source) -> Any:
    stack: list[Any] = []
    push = stack.append
    pop = stack.pop
    marks: list[int] = []
    memo: dict[int, Any] = {}
    pos = 0
    end = len(data)
    named = False  # any global resolved: the result is checked for internal objects
    pending = _PENDING
    if end >= 2 and data[0] == 0x80:  # PROTO, then usually FRAME: what every pickle opens with
        if data[1] > pickle.HIGHEST_PROTOCOL:
            raise _Malformed(f"unsupported pickle protocol: {data[1]}")
        pos = 11 if end >= 11 and data[2] == 0x95 else 2
    while True:
        if pos >= end:
            data = source.more(data, pos, 1)
            pos, end = 0, len(data)
        op = data[pos]
        pos += 1
        if op == 0x94:  # MEMOIZE
            value = stack[-1]
            key = len(memo)
            memo[key] = value
            if value.__class__ in pending:
                value.keys.append(key)
        elif op == 0x8C:  # SHORT_BINUNICODE
            if pos >= end:
                data = source.more(data, pos, 1)
                pos, end = 0, len(data)
            n = data[pos] + 1
            if pos + n > end:
                data = source.more(data, pos, n)
                pos, end = 0, len(data)
            value = data[pos + 1 : pos + n].decode("utf-8", "surrogatepass")
            push(value)
            pos += n
            if pos < end and data[pos] == 0x94:  # MEMOIZE, as the pickler writes after it
                memo[len(memo)] = value
                pos += 1
        elif op == 0x4B:  # BININT1
            if pos >= end:
                data = source.more(data, pos, 1)
                pos, end = 0, len(data)
            if pos + 3 < end and data[pos + 1] == 0x4B:
                pos = _run(data, pos, end, 0x4B, stack)
            else:
                push(data[pos])
                pos += 1
        elif op == 0x47:  # BINFLOAT
            if pos + 8 > end:
                data = source.more(data, pos, 8)
                pos, end = 0, len(data)
            if pos + 17 < end and data[pos + 8] == 0x47:
                pos = _run(data, pos, end, 0x47, stack)
            else:
                push(_unpack_d(data, pos)[0])
                pos += 8
        elif op == 0x28:  # MARK
            if len(marks) >= MAX_MARKS:
                raise _Refusal(f"it nests more than {MAX_MARKS} marks")
            marks.append(len(stack))
        elif op == 0x5D:  # EMPTY_LIST
            value = []
            push(value)
            if pos < end and data[pos] == 0x94:  # MEMOIZE
                memo[len(memo)] = value
                pos += 1
        elif op in (0x65, 0x61):  # APPENDS, APPEND
            if op == 0x65:
                k = marks.pop()
                items = stack[k:]
                del stack[k:]
            else:
                items = [pop()]
            target = stack[-1]
            if target.__class__ is list or target.__class__ is collections.deque:
                target.extend(items)
            else:
                raise _Refusal(f"it appends to {_describe(target)}")
        elif op == 0x4E:  # NONE
            push(None)
        elif op == 0x88:  # NEWTRUE
            push(True)
        elif op == 0x89:  # NEWFALSE
            push(False)
        elif op == 0x87:  # TUPLE3
            c = pop()
            b = pop()
            value = stack[-1] = (stack[-1], b, c)
            if pos < end and data[pos] == 0x94:  # MEMOIZE
                memo[len(memo)] = value
                pos += 1
        elif op == 0x86:  # TUPLE2
            b = pop()
            stack[-1] = (stack[-1], b)
        elif op == 0x85:  # TUPLE1
            stack[-1] = (stack[-1],)
        elif op == 0x4A:  # BININT
            if pos + 4 > end:
                data = source.more(data, pos, 4)
                pos, end = 0, len(data)
            if pos + 9 < end and data[pos + 4] == 0x4A:
                pos = _run(data, pos, end, 0x4A, stack)
            else:
                push(_unpack_i(data, pos)[0])
                pos += 4
        elif op == 0x4D:  # BININT2
            if pos + 2 > end:
                data = source.more(data, pos, 2)
                pos, end = 0, len(data)
            if pos + 5 < end and data[pos + 2] == 0x4D:
                pos = _run(data, pos, end, 0x4D, stack)
            else:
                push(_unpack_H(data, pos)[0])
                pos += 2
        elif op == 0x7D:  # EMPTY_DICT
            value = {}
            push(value)
            if pos < end and data[pos] == 0x94:  # MEMOIZE
                memo[len(memo)] = value
                pos += 1
        elif op in (0x75, 0x73):  # SETITEMS, SETITEM
            if op == 0x75:
                k = marks.pop()
                items = stack[k:]
                del stack[k:]
            else:
                v = pop()
                items = [pop(), v]
            if len(items) % 2:
                raise _Malformed("odd number of items for SETITEMS")
            target = stack[-1]
            cls = target.__class__
            if cls is dict or cls is collections.OrderedDict or cls is collections.Counter:
                for i in range(0, len(items), 2):
                    target[items[i]] = items[i + 1]
            else:
                raise _Refusal(f"it sets items of {_describe(target)}")
        elif op == 0x29:  # EMPTY_TUPLE
            push(())
        elif op in (0x68, 0x6A):  # BINGET, LONG_BINGET
            if op == 0x68:
                if pos >= end:
                    data = source.more(data, pos, 1)
                    pos, end = 0, len(data)
                key = data[pos]
                pos += 1
            else:
                if pos + 4 > end:
                    data = source.more(data, pos, 4)
                    pos, end = 0, len(data)
                key = _unpack_I(data, pos)[0]
                pos += 4
            push(memo[key])
        elif op == 0x2E:  # STOP
            value = pop()
            if named or source.limit > MAX_DEPTH:
                _check_result(value)  # fewer bytes cannot nest deeper than MAX_DEPTH
            return value
        elif op == 0x95:  # FRAME: a hint for buffering; the opcodes follow as usual
            if pos + 8 > end:
                data = source.more(data, pos, 8)
                pos, end = 0, len(data)
            pos += 8
        elif op in (0x71, 0x72):  # BINPUT, LONG_BINPUT
            if op == 0x71:
                if pos >= end:
                    data = source.more(data, pos, 1)
                    pos, end = 0, len(data)
                key = data[pos]
                pos += 1
            else:
                if pos + 4 > end:
                    data = source.more(data, pos, 4)
                    pos, end = 0, len(data)
                key = _unpack_I(data, pos)[0]
                pos += 4
            value = stack[-1]
            memo[key] = value
            if value.__class__ in pending:
                value.keys.append(key)
        elif op in (0x58, 0x8D, 0x42, 0x43, 0x8E, 0x96, 0x54, 0x55):
            # BINUNICODE, BINUNICODE8, BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8,
            # BINSTRING, SHORT_BINSTRING: a length, then that many bytes.
            width = 1 if op in (0x43, 0x55) else 8 if op in (0x8D, 0x8E, 0x96) else 4
            if pos + width > end:
                data = source.more(data, pos, width)
                pos, end = 0, len(data)
            if width == 1:
                n = data[pos]
            elif width == 4:
                n = (_unpack_i if op == 0x54 else _unpack_I)(data, pos)[0]
            else:
                n = _unpack_Q(data, pos)[0]
            pos += width
            if n < 0:
                raise _Malformed("negative byte count")
            if n > (end - pos if source.reader is None else source.remaining(pos)):
                raise _Malformed("the pickle data was truncated")
            if n >= _DIRECT_AT and op in (0x42, 0x8E):
                direct = _direct_target(stack, marks, n)
                if direct is not None:
                    data, pos = _read_into(direct.prepared, data, pos, source)
                    end = len(data)
                    push(_Prepared(direct.prepared))
                    continue
            if pos + n > end and n >= _DIRECT_AT and op in (0x42, 0x8E, 0x96):
                # Big bytes past the buffer in hand: read into their own buffer, once.
                raw_buffer = bytearray(n)
                data, pos = _read_into(raw_buffer, data, pos, source)
                end = len(data)
                push(raw_buffer if op == 0x96 else bytes(raw_buffer))
                continue
            if pos + n > end:
                data = source.more(data, pos, n)
                pos, end = 0, len(data)
            raw = data[pos : pos + n]
            pos += n
            if op in (0x58, 0x8D):
                push(raw.decode("utf-8", "surrogatepass"))
            elif op in (0x54, 0x55):
                push(raw.decode("ascii"))  # pickle.loads' default encoding
            elif op == 0x96:
                push(bytearray(raw))
            else:
                push(raw)
        elif op == 0x74:  # TUPLE
            k = marks.pop()
            value = tuple(stack[k:])
            del stack[k:]
            push(value)
        elif op == 0x6C:  # LIST
            k = marks.pop()
            value = stack[k:]
            del stack[k:]
            push(value)
        elif op == 0x64:  # DICT
            k = marks.pop()
            items = stack[k:]
            del stack[k:]
            if len(items) % 2:
                raise _Malformed("odd number of items for DICT")
            push({items[i]: items[i + 1] for i in range(0, len(items), 2)})
        elif op == 0x8F:  # EMPTY_SET
            push(set())
        elif op == 0x90:  # ADDITEMS
            k = marks.pop()
            items = stack[k:]
            del stack[k:]
            target = stack[-1]
            if target.__class__ is not set:
                raise _Refusal(f"it adds items to {_describe(target)}")
            target.update(items)
        elif op == 0x91:  # FROZENSET
            k = marks.pop()
            value = frozenset(stack[k:])
            del stack[k:]
            push(value)
        elif op == 0x93:  # STACK_GLOBAL
            name = pop()
            module = pop()
            if type(module) is not str or type(name) is not str:
                raise _Malformed("STACK_GLOBAL requires str")
            push(_resolve(module, name))
            named = True
        elif op == 0x63:  # GLOBAL
            texts = []
            for _ in range(2):
                while True:
                    newline = data.find(b"\n", pos)
                    if newline >= 0:
                        break
                    if end - pos > 4096:
                        raise _Malformed("GLOBAL name too long")
                    data = source.more(data, pos, end - pos + 1)
                    pos, end = 0, len(data)
                texts.append(data[pos:newline].decode("utf-8"))
                pos = newline + 1
            push(_resolve(texts[0], texts[1]))
            named = True
        elif op == 0x52:  # REDUCE
            args = pop()
            func = stack[-1]
            if func.__class__ is not _Global:
                raise _Refusal(f"it calls {_describe(func)}")
            stack[-1] = _reduce(func, args)
        elif op == 0x62:  # BUILD
            state = pop()
            target = stack[-1]
            cls = target.__class__
            if cls in pending and target.built:
                raise _Refusal("it sets the state of a numpy object twice")
            if cls is _PendingDtype:
                value = _build_dtype(target, state)
            elif cls is _PendingArray:
                value = _build_array(target, state)
            else:
                raise _Refusal(f"it sets the state of {_describe(target)}")
            stack[-1] = value
            for key in target.keys:
                if memo.get(key) is target:
                    memo[key] = value
            target.keys.clear()
            target.built = True
        elif op == 0x80:  # PROTO
            if pos >= end:
                data = source.more(data, pos, 1)
                pos, end = 0, len(data)
            if data[pos] > pickle.HIGHEST_PROTOCOL:
                raise _Malformed(f"unsupported pickle protocol: {data[pos]}")
            pos += 1
        elif op == 0x30:  # POP
            if marks and marks[-1] == len(stack):
                marks.pop()
            else:
                pop()
        elif op == 0x31:  # POP_MARK
            del stack[marks.pop() :]
        elif op == 0x8A or op == 0x8B:  # LONG1, LONG4
            width = 1 if op == 0x8A else 4
            if pos + width > end:
                data = source.more(data, pos, width)
                pos, end = 0, len(data)
            n = data[pos] if width == 1 else _unpack_i(data, pos)[0]
            pos += width
            if n < 0:
                raise _Malformed("LONG pickle has negative byte count")
            if pos + n > end:
                if n > source.remaining(pos):
                    raise _Malformed("the pickle data was truncated")
                data = source.more(data, pos, n)
                pos, end = 0, len(data)
            push(int.from_bytes(data[pos : pos + n], "little", signed=True))
            pos += n
        elif op in (0x49, 0x4C, 0x46, 0x56, 0x67, 0x70):
            # INT, LONG, FLOAT, UNICODE, GET, PUT: protocol 0's text arguments, one line.
            while True:
                newline = data.find(b"\n", pos)
                if newline >= 0:
                    break
                if source.reader is None or end - pos > 1 << 20:
                    raise _Malformed("the pickle data was truncated")
                data = source.more(data, pos, end - pos + 1)
                pos, end = 0, len(data)
            line = data[pos:newline]
            pos = newline + 1
            if op == 0x49:
                push(True if line == b"01" else False if line == b"00" else int(line))
            elif op == 0x4C:
                push(int(line[:-1] if line.endswith(b"L") else line))
            elif op == 0x46:
                push(float(line))
            elif op == 0x56:
                push(line.decode("raw-unicode-escape"))
            elif op == 0x67:
                push(memo[int(line)])
            else:
                key = int(line)
                if key < 0:
                    raise _Malformed("negative PUT argument")
                value = stack[-1]
                memo[key] = value
                if value.__class__ in pending:
                    value.keys.append(key)
        elif op in _REFUSED_OPCODES:
            raise _Refusal(f"it uses the opcode {_REFUSED_OPCODES[op]}, which safe mode refuses")
        else:
            raise _Malformed(f"invalid load key, {bytes([op])!r}")


# Runs of one fixed-size number opcode (lists of floats or ints, as APPENDS batches write
# them) are decoded by one struct call: opcode byte -> (argument format, stride).
_RUNS = {0x47: (">", "d", 9), 0x4A: ("<", "i", 5), 0x4B: ("<", "B", 2), 0x4D: ("<", "H", 3)}
_RUN_MAX = 1024  # opcodes per call (pickle's batches hold 1000)
_run_structs: dict[tuple[int, int], struct.Struct] = {}


def _run(data: bytes, pos: int, end: int, op: int, stack: list[Any]) -> int:
    """Pushes the numbers of the run of ``op`` opcodes whose first argument is at ``pos``
    (the run ends where another opcode, or the buffer in hand, does); returns the position
    after the run's last argument."""
    order, code, stride = _RUNS[op]
    first = pos + stride - 1  # the second opcode of the run
    more = min(_RUN_MAX, (end - first) // stride)  # opcodes whose argument is in hand
    ops = data[first : first + stride * more : stride]
    count = 1 + len(ops) - len(ops.lstrip(bytes([op])))
    unpack = _run_structs.get((op, count))
    if unpack is None:
        unpack = struct.Struct(order + code + ("x" + code) * (count - 1))
        _run_structs[(op, count)] = unpack
    stack.extend(unpack.unpack_from(data, pos))
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
    target.prepared = _numpy.empty(n, _numpy.uint8)
    return target


def _read_into(buffer: Any, data: bytes, pos: int, source: _Source) -> tuple[bytes, int]:
    """Fills ``buffer`` from the buffer in hand (``data[pos:]``) and then from the reader
    itself; returns the buffer in hand and position after."""
    view = memoryview(buffer)
    n = len(buffer)
    have = min(n, len(data) - pos)
    view[:have] = memoryview(data)[pos : pos + have]
    pos += have
    filled = have
    reader = source.reader
    while filled < n:
        if reader is None:
            raise _Malformed("the pickle data was truncated")
        got = reader.readinto(view[filled:])
        if not got:
            raise _Malformed("the pickle data was truncated")
        filled += got
    if have < n:  # the buffer in hand was used up, and the reader read past it
        source.base += pos + (filled - have)
        return b"", 0
    return data, pos


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
    """
    try:
        if _NOT_PLAIN_DATA.search(payload) is None:
            value = pickle.loads(payload)  # noqa: S301 - data opcodes only, see above
            if len(payload) > MAX_DEPTH:
                _check_result(value)
            return value
        return _interpret(payload, _Source(None, len(payload)))
    except _Refusal as refusal:
        named = _unlisted_globals(payload) if refusal.global_name else []
        raise UnsafePickleError(_refused_message(key, refusal, named)) from None
    except _Malformed as exc:
        raise pickle.UnpicklingError(str(exc)) from None
    except Exception as exc:  # what a damaged stream makes the builders raise
        raise pickle.UnpicklingError(f"{type(exc).__name__}: {exc}") from exc


def safe_load_stream(
    key: str, reader: Any, limit: int, passthrough: type[Exception] = OSError
) -> Any:
    """``safe_loads`` of a value read from ``reader`` (a ``ValueReader``) as it is decoded;
    ``limit`` bounds the value's length (what its base64 text can hold). Big array data is
    read straight into the array's memory. ``passthrough`` (the reader's own errors) is
    raised as it is.

    Raises:
        UnsafePickleError: If the pickle needs anything safe mode does not load.
        pickle.UnpicklingError: If the pickle is damaged.
    """
    try:
        return _interpret(b"", _Source(reader, limit))
    except _Refusal as refusal:
        named = [refusal.global_name] if refusal.global_name else []
        raise UnsafePickleError(_refused_message(key, refusal, named)) from None
    except _Malformed as exc:
        raise pickle.UnpicklingError(str(exc)) from None
    except passthrough:
        raise
    except Exception as exc:
        raise pickle.UnpicklingError(f"{type(exc).__name__}: {exc}") from exc


def _unlisted_globals(payload: bytes) -> list[str]:
    """Every global outside the allow-list that the pickle names (read, never imported)."""
    from jobpersist._pickle.inspect import scan_pickle  # only on a refusal

    scan = scan_pickle(payload)
    return sorted({g.qualified for g in scan.globals if not g.safe})
