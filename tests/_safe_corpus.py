"""Hostile pickles for safe mode (``allow_pickle="safe"``), written from the public bypass
write-ups of ``find_class`` allow-lists, picklescan and fickling, and torch's
``weights_only`` unpickler: every opcode that can name a global, globals of code-running
modules, calls and ``BUILD`` on allowed types with attacker arguments, dtype('O') arrays,
nested pickles, ``_codecs.encode`` tricks, huge shapes, lengths and memo indexes.

``CORPUS`` maps a name to the bytes; ``REFUSED`` names those safe mode must refuse with
``UnsafePickleError``; the others are damaged streams or data-only oddities, which fail with
a ``pickle.UnpicklingError`` or (``LOADABLE``) load as plain data.
Shared by the tests and by the audit-hook subprocess, so it imports nothing heavy.
"""

from __future__ import annotations

import io
import struct
from typing import Any


class Trickle(io.BytesIO):
    """A reader that hands out at most a few bytes per call: every opcode and argument
    boundary of the stream path gets crossed."""

    def read(self, size: int | None = -1, /) -> bytes:
        return super().read(min(size, 7) if size is not None and size >= 0 else 7)

    def readinto(self, buffer: Any, /) -> int:
        return super().readinto(memoryview(buffer)[:13])


PROTO = b"\x80\x04"


def su(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def sg(module: str, name: str) -> bytes:
    """STACK_GLOBAL of module.name."""
    return su(module) + su(name) + b"\x93"


def gl(module: str, name: str) -> bytes:
    """GLOBAL of module.name (protocol 0's text form)."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def binbytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def dtype(code: str, order: str = "<", state: bytes | None = None) -> bytes:
    """numpy.dtype(code, False, True) then BUILD with numpy's state (or ``state``)."""
    body = sg("numpy", "dtype") + su(code) + b"\x89\x88\x87R"
    if state is None:
        state = b"(K\x03" + su(order) + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
    return body + state + b"b"


def frombuffer(data: bytes, shape: bytes, order: bytes, axis_order: bytes = b"") -> bytes:
    """numpy's protocol 5 form: _frombuffer(bytearray, dtype, shape, order[, axis_order])."""
    return (
        sg("numpy._core.numeric", "_frombuffer")
        + b"("
        + b"\x96"
        + struct.pack("<Q", len(data))
        + data
        + dtype("f8")
        + shape
        + su(order.decode())
        + axis_order
        + b"tR."
    )


def array(
    shape: bytes = b"K\x03\x85",
    dt: bytes | None = None,
    data: bytes = b"\x00" * 24,
    cls: bytes | None = None,
    reconstruct: bytes | None = None,
    extra: bytes = b"",
) -> bytes:
    """An ndarray as numpy pickles it, with each part replaceable."""
    recon = reconstruct or sg("numpy._core.multiarray", "_reconstruct")
    klass = cls or sg("numpy", "ndarray")
    head = recon + klass + b"K\x00\x85" + b"C\x01b" + b"\x87R"
    state = b"(K\x01" + shape + (dt or dtype("f8")) + b"\x89" + binbytes(data) + extra + b"t"
    return PROTO + head + state + b"b."


DANGEROUS_GLOBALS = [
    ("os", "system"),
    ("posix", "system"),
    ("nt", "system"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "compile"),
    ("builtins", "open"),
    ("builtins", "getattr"),
    ("builtins", "setattr"),
    ("builtins", "__import__"),
    ("builtins", "globals"),
    ("builtins", "breakpoint"),
    ("__builtin__", "eval"),
    ("importlib", "import_module"),
    ("runpy", "_run_code"),
    ("code", "InteractiveInterpreter"),
    ("timeit", "timeit"),
    ("pdb", "run"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("marshal", "loads"),
    ("types", "FunctionType"),
    ("types", "CodeType"),
    ("functools", "partial"),
    ("operator", "attrgetter"),
    ("operator", "methodcaller"),
    ("copyreg", "_reconstructor"),
    ("_codecs", "encode"),
    ("codecs", "decode"),
    ("ctypes", "CDLL"),
    ("shutil", "rmtree"),
    ("webbrowser", "open"),
    ("socket", "create_connection"),
    ("numpy", "load"),
    ("numpy", "loadtxt"),
    ("numpy", "fromfile"),
    ("numpy.testing._private.utils", "runstring"),
    ("numpy.f2py", "compile"),
    ("numpy.core.multiarray", "fromstring"),
    ("numpy.core.numeric", "fromstring"),
    ("numpy.ma.core", "_mareconstruct"),
    ("numpy", "ndarray.__reduce__"),
    ("numpy.core.multiarray", "_reconstruct.__globals__"),
    ("collections", "OrderedDict.__init__"),
    ("pennylane", "qnode"),
    ("pennylane.numpy.tensor", "tensor.__setattr__"),
    ("torch.serialization", "load"),
    ("jobpersist.data_persistence", "load_job_checkpoint"),
]


def _naming_opcodes(module: str, name: str) -> dict[str, bytes]:
    call = su("id") + b"\x85R."
    via_memo = (
        PROTO
        + su(module)
        + b"\x94"
        + su(name)
        + b"\x94"
        + b"0"  # POP the name: the global is named only from the memo
        + b"0"
        + b"h\x00h\x01\x93"
        + call
    )
    return {
        "GLOBAL": gl(module, name) + b"(S'id'\ntR.",
        "STACK_GLOBAL": PROTO + sg(module, name) + call,
        "STACK_GLOBAL via memo": via_memo,
        "INST": b"(S'id'\ni" + module.encode() + b"\n" + name.encode() + b"\n.",
        "GLOBAL then NEWOBJ": PROTO + sg(module, name) + b")\x81.",
        "bare GLOBAL": gl(module, name) + b".",
    }


def _corpus() -> tuple[dict[str, bytes], set[str]]:
    refused: dict[str, bytes] = {}
    for module, name in DANGEROUS_GLOBALS:
        for opcode, data in _naming_opcodes(module, name).items():
            refused[f"{module}.{name} by {opcode}"] = data
    complex_ = sg("builtins", "complex")
    odict = sg("collections", "OrderedDict")
    ndarray = sg("numpy", "ndarray")
    refused.update(
        {
            # Opcodes safe mode never runs, on allowed globals.
            "OBJ on builtins.complex": PROTO + b"(" + complex_ + b"K\x01o.",
            "NEWOBJ on OrderedDict": PROTO + odict + b")\x81.",
            "NEWOBJ_EX on OrderedDict": PROTO + odict + b")}\x92.",
            "EXT1": b"\x80\x02\x82\x01.",
            "EXT2": b"\x80\x02\x83\x01\x00.",
            "EXT4": b"\x80\x02\x84\x01\x00\x00\x00.",
            "PERSID": b"Pos.system\n.",
            "BINPERSID": PROTO + su("os.system") + b"Q.",
            # REDUCE of allowed callables with attacker arguments.
            "complex(str)": PROTO + complex_ + su("1+2j") + b"\x85R.",
            "complex(list)": PROTO + complex_ + b"]\x85R.",
            "bytearray(str, encoding)": PROTO
            + sg("builtins", "bytearray")
            + su("x")
            + su("latin1")
            + b"\x86R.",
            "set(generator-like str)": PROTO + sg("builtins", "set") + su("abc") + b"\x85R.",
            "OrderedDict(pairs)": PROTO + odict + b"]\x85R.",
            "Counter(str)": PROTO + sg("collections", "Counter") + su("aab") + b"\x85R.",
            "deque(maxlen=-1)": PROTO + sg("collections", "deque") + b")J\xff\xff\xff\xff\x86R.",
            "date(str)": PROTO + sg("datetime", "date") + su("\x07\xe4\x01\x02") + b"\x85R.",
            "datetime(bytes, str tz)": PROTO
            + sg("datetime", "datetime")
            + b"C\n"
            + b"\x07\xe4\x01\x02\x03\x04\x05\x00\x00\x06"
            + su("UTC")
            + b"\x86R.",
            "timedelta(float)": PROTO
            + sg("datetime", "timedelta")
            + b"G?\xf0\x00\x00\x00\x00\x00\x00\x85R.",
            "timezone(int)": PROTO + sg("datetime", "timezone") + b"K\x01\x85R.",
            "ndarray() called": PROTO + ndarray + b"K\x03\x85\x85R.",
            "dtype('O8')": PROTO + dtype("O8") + b".",
            "dtype('O')": PROTO + sg("numpy", "dtype") + su("O") + b"\x89\x88\x87R.",
            "dtype('V8')": PROTO + dtype("V8", "|") + b".",
            "dtype('U4')": PROTO + dtype("U4") + b".",
            "dtype('S4')": PROTO + dtype("S4", "|") + b".",
            "dtype('M8')": PROTO + dtype("M8") + b".",
            "dtype(list of fields)": PROTO + sg("numpy", "dtype") + b"]" + b"\x89\x88\x87R.",
            "dtype(str, align=str)": PROTO
            + sg("numpy", "dtype")
            + su("f8")
            + su("x")
            + b"\x88\x87R.",
            "dtype BUILD with fields": PROTO
            + dtype(
                "f8",
                state=b"(K\x03"
                + su("<")
                + b"N"
                + su("a")
                + b"\x85}NJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t",
            )
            + b".",
            "dtype BUILD with subarray": PROTO
            + dtype(
                "f8",
                state=b"(K\x03"
                + su("<")
                + sg("numpy", "dtype")
                + b"NNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t",
            )
            + b".",
            "dtype BUILD with metadata": PROTO
            + dtype(
                "f8", state=b"(K\x03" + su("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00}t"
            )
            + b".",
            "dtype BUILD byte order '|' on f8": PROTO + dtype("f8", "|") + b".",
            "dtype BUILD dict state": PROTO
            + sg("numpy", "dtype")
            + su("f8")
            + b"\x89\x88\x87R}"
            + su("__class__")
            + odict
            + b"sb.",
            "dtype never built": PROTO + sg("numpy", "dtype") + su("f8") + b"\x89\x88\x87R.",
            "object array": array(dt=dtype("O8")),
            "array data shorter than shape": array(shape=b"K\x04\x85"),
            "array huge shape": array(shape=b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85"),
            "array huge shape, small data": array(
                shape=b"J\xff\xff\xff\x7fJ\xff\xff\xff\x7f\x86", data=b""
            ),
            "array negative dim": array(shape=b"J\xff\xff\xff\xff\x85", data=b""),
            "array 65 dims": array(shape=b"(" + b"K\x01" * 65 + b"t", data=b"\x00" * 8),
            "array data as str": PROTO
            + sg("numpy._core.multiarray", "_reconstruct")
            + ndarray
            + b"K\x00\x85C\x01b\x87R(K\x01K\x01\x85"
            + dtype("f8")
            + b"\x89"
            + su("\x00" * 8)
            + b"tb.",
            "array data as list": PROTO
            + sg("numpy._core.multiarray", "_reconstruct")
            + ndarray
            + b"K\x00\x85C\x01b\x87R(K\x01K\x01\x85"
            + dtype("f8")
            + b"\x89]tb.",
            "array state version 2": array(shape=b"K\x03\x85").replace(
                b"(K\x01K\x03", b"(K\x02K\x03"
            ),
            "array with extra state": array(extra=b"\x88"),
            "array is_fortran as int": array().replace(b"\x89B", b"K\x01B"),
            "_reconstruct of OrderedDict": array(cls=odict),
            "_reconstruct of complex": array(cls=complex_),
            "_reconstruct shape (1,)": PROTO
            + sg("numpy._core.multiarray", "_reconstruct")
            + ndarray
            + b"K\x01\x85C\x01b\x87R.",
            "_reconstruct typecode O": PROTO
            + sg("numpy._core.multiarray", "_reconstruct")
            + ndarray
            + b"K\x00\x85C\x01O\x87R.",
            "_reconstruct never built": PROTO
            + sg("numpy._core.multiarray", "_reconstruct")
            + ndarray
            + b"K\x00\x85C\x01b\x87R.",
            "scalar with object dtype": PROTO
            + sg("numpy._core.multiarray", "scalar")
            + dtype("O8")
            + su("x")
            + b"\x86R.",
            "scalar with wrong length": PROTO
            + sg("numpy._core.multiarray", "scalar")
            + dtype("f8")
            + b"C\x03abc\x86R.",
            "scalar with str data": PROTO
            + sg("numpy._core.multiarray", "scalar")
            + dtype("f8")
            + su("abcdefgh")
            + b"\x86R.",
            "scalar with dtype never built": PROTO
            + sg("numpy._core.multiarray", "scalar")
            + sg("numpy", "dtype")
            + su("f8")
            + b"\x89\x88\x87R"
            + b"C\x08"
            + b"\x00" * 8
            + b"\x86R.",
            "tensor with requires_grad str": array(
                cls=sg("pennylane.numpy.tensor", "tensor"), extra=su("yes")
            ),
            "tensor without requires_grad": array(cls=sg("pennylane.numpy.tensor", "tensor")),
            # BUILD used as setattr on allowed objects and classes.
            "BUILD on complex": PROTO + complex_ + b"K\x01\x85R}" + su("real") + b"K\x02sb.",
            "BUILD on OrderedDict (setattr)": PROTO
            + odict
            + b")R}"
            + su("__class__")
            + complex_
            + b"sb.",
            "BUILD on the ndarray class": PROTO
            + ndarray
            + b"}"
            + su("__reduce__")
            + sg("numpy", "dtype")
            + b"sb.",
            "BUILD on a list": PROTO + b"]}" + su("x") + b"K\x01sb.",
            "BUILD on a built array": array()[:-1] + b"}" + su("__class__") + odict + b"sb.",
            # Globals used as values, containers or targets.
            "allowed class as the value": PROTO + ndarray + b".",
            "allowed class in a list": PROTO + b"]" + complex_ + b"a.",
            "allowed class as a dict key": PROTO + b"}" + complex_ + b"K\x01s.",
            "allowed class in a frozenset": PROTO + b"(" + complex_ + b"\x91.",
            "SETITEM on a class": PROTO + ndarray + su("k") + su("v") + b"s.",
            "APPEND to a class": PROTO + sg("collections", "deque") + b"K\x01a.",
            "REDUCE on a string": PROTO + su("os") + b")R.",
            "REDUCE on a built complex": PROTO + complex_ + b")R)R.",
            # Nested pickles: the inner one is named by a loader global, never run.
            "nested pickle via pickle.loads": PROTO
            + sg("pickle", "loads")
            + binbytes(b"cos\nsystem\n(S'id'\ntR.")
            + b"\x85R.",
            "nested pickle via numpy.loads": PROTO
            + sg("numpy", "loads")
            + binbytes(b"cos\nsystem\n.")
            + b"\x85R.",
            "_frombuffer length mismatch": PROTO + frombuffer(b"\x00" * 7, b"K\x01\x85", b"C"),
            "_frombuffer order X": PROTO + frombuffer(b"\x00" * 8, b"K\x01\x85", b"X"),
            "_frombuffer axis_order not a permutation": PROTO
            + frombuffer(b"\x00" * 8, b"K\x01\x85", b"K", b"K\x05\x85"),
            "_frombuffer of a str": PROTO
            + sg("numpy._core.numeric", "_frombuffer")
            + b"("
            + su("\x00" * 8)
            + dtype("f8")
            + b"K\x01\x85"
            + su("C")
            + b"tR.",
            "_frombuffer object dtype": PROTO
            + sg("numpy._core.numeric", "_frombuffer")
            + b"("
            + b"\x96"
            + struct.pack("<Q", 8)
            + b"\x00" * 8
            + dtype("O8")
            + b"K\x01\x85"
            + su("C")
            + b"tR.",
            "tuples nested 100000 deep": PROTO + b"N" + b"\x85" * 100_000 + b".",
            "lists nested 5000 deep": PROTO + b"]" * 5000 + b"a" * 4999 + b".",
            "BUILD twice through the memo": PROTO
            + sg("numpy._core.multiarray", "_reconstruct")
            + sg("numpy", "ndarray")
            + b"K\x00\x85C\x01b\x87R\x94h\x00"  # the pending array, twice on the stack
            + b"(K\x01K\x01\x85"
            + dtype("f8")
            + b"\x89C\x08"
            + b"\x00" * 8
            + b"tb0(K\x01K\x01\x85"
            + dtype("f8")
            + b"\x89C\x08"
            + b"\x00" * 8
            + b"tb.",
            "_codecs.encode into bytes for REDUCE": PROTO
            + sg("builtins", "bytearray")
            + sg("_codecs", "encode")
            + su("x")
            + su("latin1")
            + b"\x86R\x85R.",
        }
    )
    # Data opcodes only (no byte of the stream can name or call anything): pickle.loads
    # itself builds these or fails; either way no code runs.
    damaged = {
        "DUP": PROTO + b"]2.",
        "NEXT_BUFFER": b"\x80\x05\x97.",
        "READONLY_BUFFER": b"\x80\x05]\x98.",
        "ADDITEMS to a frozenset": PROTO + b"(K\x01\x91(K\x02\x90.",
        "APPEND to a tuple": PROTO + b")K\x01a.",
        "SETITEMS on a list": PROTO + b"](K\x00K\x01u.",
        "marks nested 20000 deep": PROTO + b"(" * 20_000 + b"N.",
        "empty": b"",
        "no STOP": PROTO + b"K\x01",
        "truncated unicode": PROTO + b"\x8c\x10abc",
        "BINBYTES8 of 2**60 bytes": PROTO + b"\x8e" + struct.pack("<Q", 1 << 60) + b"x.",
        "BINUNICODE8 of 2**62 bytes": PROTO + b"\x8d" + struct.pack("<Q", 1 << 62) + b".",
        "LONG4 of 2**31-1 bytes": PROTO + b"\x8b\xff\xff\xff\x7f.",
        "BINBYTES negative-looking length": PROTO + b"B\xff\xff\xff\xff.",
        "BINGET of a missing index": PROTO + b"h\x05.",
        "LONG_BINGET 0xFFFFFFFF": PROTO + b"j\xff\xff\xff\xff.",
        "LONG_BINPUT 0xFFFFFFFF then missing GET": PROTO + b"Nr\xff\xff\xff\xffj\xfe\xff\xff\xff.",
        "PUT -1": b"Np-1\n.",
        "GET huge text index": b"g99999999999999999999\n.",
        "unknown opcode": PROTO + b"\xff.",
        "STOP on an empty stack": PROTO + b".",
        "TUPLE without MARK": PROTO + b"t.",
        "unhashable dict key": PROTO + b"}]K\x01s.",
        "SETITEMS odd items": PROTO + b"}(K\x01u.",
        "protocol 6": b"\x80\x06N.",
        "INT of 5000 digits": b"I" + b"9" * 5000 + b"\n.",
        "invalid utf-8": PROTO + b"\x8c\x01\xff.",
    }
    return {**refused, **damaged}, set(refused)


CORPUS, REFUSED = _corpus()
LOADABLE = {"DUP", "marks nested 20000 deep"}
