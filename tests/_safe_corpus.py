"""Hostile pickles for safe mode (``allow_pickle="safe"``), written from the public bypass
write-ups of ``find_class`` allow-lists, picklescan and fickling, and torch's
``weights_only`` unpickler: every opcode that can name a global, globals of code-running
modules, calls and ``BUILD`` on allowed types with attacker arguments, dtype('O') arrays,
nested pickles, ``_codecs.encode`` tricks, huge shapes, lengths and memo indexes.

``CORPUS`` maps a name to the bytes; ``REFUSED`` names those safe mode must refuse with
``UnsafePickleError`` however they are read; the others are damaged streams or data-only
oddities. ``EXPECTED`` gives, for each, what a load from bytes and a load from a stream must
raise and why. Shared by the tests and by the audit-hook subprocess, so it imports nothing
heavy.
"""

from __future__ import annotations

import io
import re
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
        "INST without arguments": b"(i" + module.encode() + b"\n" + name.encode() + b"\n.",
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
        # Damage the interpreter itself meets (the streams name a global or grow the memo,
        # so pickle.loads never sees them): named conditions, and arguments of accepted
        # types whose values the constructor rejects.
        "stack underflow after a global": PROTO + sg("builtins", "complex") + b"\x86.",
        "APPENDS without MARK": PROTO + sg("collections", "deque") + b")R" + b"e.",
        "LONG_BINPUT then a missing BINGET": PROTO + b"Nr\x00\x00\x00\x00h\x01.",
        "GLOBAL of invalid utf-8": b"c\xff\n\xff\n.",
        "date of month 13": PROTO + sg("datetime", "date") + b"C\x04\x07\xe4\x0d\x01\x85R.",
        "timedelta of 2**31-1 days": PROTO
        + sg("datetime", "timedelta")
        + b"J\xff\xff\xff\x7f\x85R.",
        "set of a list": PROTO + sg("builtins", "set") + b"(]]at\x85R.",
        "array of 2**122 zero-size elements": array(
            shape=b"K\x00" + (b"\x8a\x08" + (1 << 61).to_bytes(8, "little")) * 2 + b"\x87",
            data=b"",
        ),
    }
    return {**refused, **damaged}, set(refused)


CORPUS, REFUSED = _corpus()

# --------------------------------------------------------------------------------------------
# What each case must raise, and why: (kind, pattern) for a load from bytes and for a load
# from a stream. ``kind`` is "refused" (UnsafePickleError; ``pattern`` is searched in its
# reason), "damaged" (exactly pickle.UnpicklingError; searched in its message) or "loaded".
# A stream is always read by the safe interpreter; bytes with data opcodes only go to
# pickle.loads, which gives its own reasons for the damaged ones.
# --------------------------------------------------------------------------------------------
Outcome = tuple[str, str]
TRUNCATED = ("damaged", r"^the pickle data was truncated$")


def _refused(pattern: str) -> tuple[Outcome, Outcome]:
    return ("refused", pattern), ("refused", pattern)


def _damaged(memory: str, stream: str | None = None) -> tuple[Outcome, Outcome]:
    return ("damaged", memory), ("damaged", memory if stream is None else stream)


def _calls(qualified: str) -> tuple[Outcome, Outcome]:
    return _refused(f"^it calls {re.escape(qualified)} with arguments safe mode does not accept")


def _state_of(what: str) -> tuple[Outcome, Outcome]:
    return _refused(f"^it sets the state of {re.escape(what)}")


def _expected() -> dict[str, tuple[Outcome, Outcome]]:
    multiarray, numeric = "numpy._core.multiarray", "numpy._core.numeric"
    expected = {
        f"{module}.{name} by {opcode}": _refused(
            f"^it imports {re.escape(module + '.' + name)}, which is not on the safe list$"
        )
        for module, name in DANGEROUS_GLOBALS
        for opcode in _naming_opcodes(module, name)
    }
    for module, name in DANGEROUS_GLOBALS:
        # STRING comes first: it is refused before INST is read.
        expected[f"{module}.{name} by INST"] = _refused("^it uses the opcode STRING, which")
        expected[f"{module}.{name} by INST without arguments"] = _refused(
            "^it uses the opcode INST, which safe mode refuses$"
        )
    for name, opcode in (
        ("OBJ on builtins.complex", "OBJ"),
        ("NEWOBJ on OrderedDict", "NEWOBJ"),
        ("NEWOBJ_EX on OrderedDict", "NEWOBJ_EX"),
        ("EXT1", "EXT1"),
        ("EXT2", "EXT2"),
        ("EXT4", "EXT4"),
        ("PERSID", "PERSID"),
        ("BINPERSID", "BINPERSID"),
    ):
        expected[name] = _refused(f"^it uses the opcode {opcode}, which safe mode refuses$")
    for name, qualified in (
        ("complex(str)", "builtins.complex"),
        ("complex(list)", "builtins.complex"),
        ("bytearray(str, encoding)", "builtins.bytearray"),
        ("set(generator-like str)", "builtins.set"),
        ("OrderedDict(pairs)", "collections.OrderedDict"),
        ("Counter(str)", "collections.Counter"),
        ("deque(maxlen=-1)", "collections.deque"),
        ("date(str)", "datetime.date"),
        ("datetime(bytes, str tz)", "datetime.datetime"),
        ("timedelta(float)", "datetime.timedelta"),
        ("timezone(int)", "datetime.timezone"),
        ("ndarray() called", "numpy.ndarray"),
        ("dtype('O')", "numpy.dtype"),
        ("dtype('V8')", "numpy.dtype"),
        ("dtype('U4')", "numpy.dtype"),
        ("dtype('S4')", "numpy.dtype"),
        ("dtype('M8')", "numpy.dtype"),
        ("dtype(list of fields)", "numpy.dtype"),
        ("dtype(str, align=str)", "numpy.dtype"),
        ("_reconstruct of OrderedDict", f"{multiarray}._reconstruct"),
        ("_reconstruct of complex", f"{multiarray}._reconstruct"),
        ("_reconstruct shape (1,)", f"{multiarray}._reconstruct"),
        ("_reconstruct typecode O", f"{multiarray}._reconstruct"),
        ("scalar with wrong length", f"{multiarray}.scalar"),
        ("scalar with str data", f"{multiarray}.scalar"),
        ("scalar with dtype never built", f"{multiarray}.scalar"),
        ("_frombuffer length mismatch", f"{numeric}._frombuffer"),
        ("_frombuffer order X", f"{numeric}._frombuffer"),
        ("_frombuffer axis_order not a permutation", f"{numeric}._frombuffer"),
        ("_frombuffer of a str", f"{numeric}._frombuffer"),
    ):
        expected[name] = _calls(qualified)
    object_dtype = r"^it calls numpy\.dtype with arguments safe mode does not accept: \('O8',"
    for name in ("dtype('O8')", "object array", "scalar with object dtype"):
        expected[name] = _refused(object_dtype)
    expected["_frombuffer object dtype"] = _refused(object_dtype)
    for name in (
        "dtype BUILD with fields",
        "dtype BUILD with subarray",
        "dtype BUILD with metadata",
        "dtype BUILD byte order '|' on f8",
        "dtype BUILD dict state",
    ):
        expected[name] = _state_of("numpy.dtype('f8') to")
    mismatch = r"^its numpy array data \({}\) does not match the shape \({}\) and dtype float64$"
    a_dtype = "[^,]+"  # numpy 2 describes it as Float64DType, numpy 1 as dtype[float64]
    expected.update(
        {
            "dtype never built": _refused("^it returns an unfinished numpy object as a value$"),
            "_reconstruct never built": _refused("^it returns an unfinished numpy object as"),
            "array data shorter than shape": _refused(mismatch.format("b'.*'", "4,")),
            "array huge shape": _refused(mismatch.format("b'.*'", "1099511627776,")),
            "array huge shape, small data": _refused(
                mismatch.format("b''", "2147483647, 2147483647")
            ),
            "array data as str": _refused(mismatch.format("'.*'", "1,")),
            "array data as list": _refused(mismatch.format("list", "1,")),
            "array negative dim": _state_of("a numpy array to (1, (-1),"),
            "array 65 dims": _state_of("a numpy array to (1, (1, 1, 1, 1, 1, 1, 1, 1, ...),"),
            "array state version 2": _state_of("a numpy array to (2, (3),"),
            "array with extra state": _refused(
                rf"^it sets the state of a numpy array to \(1, \(3\), {a_dtype}, False, b'.*', "
                r"True\)$"
            ),
            "array is_fortran as int": _refused(
                rf"^it sets the state of a numpy array to \(1, \(3\), {a_dtype}, 1\)$"
            ),
            "tensor with requires_grad str": _refused(
                "^it sets requires_grad of a pennylane tensor to 'yes'$"
            ),
            "tensor without requires_grad": _state_of("a numpy array to (1, (3),"),
            "BUILD on complex": _state_of("complex"),
            "BUILD on OrderedDict (setattr)": _state_of("OrderedDict"),
            "BUILD on the ndarray class": _state_of("numpy.ndarray"),
            "BUILD on a list": _state_of("list"),
            "BUILD on a built array": _state_of("ndarray"),
            "BUILD twice through the memo": _refused("^it sets the state of a numpy object twice$"),
            "allowed class as the value": _refused("^it returns numpy.ndarray as a value$"),
            "allowed class in a list": _refused("^it returns builtins.complex as a value$"),
            "allowed class as a dict key": _refused("^it returns builtins.complex as a value$"),
            "allowed class in a frozenset": _refused("^it returns builtins.complex as a value$"),
            "SETITEM on a class": _refused("^it sets items of numpy.ndarray$"),
            "APPEND to a class": _refused("^it appends to collections.deque$"),
            "REDUCE on a string": _refused("^it calls 'os'$"),
            "REDUCE on a built complex": _refused("^it calls complex$"),
            "nested pickle via pickle.loads": _refused("^it imports pickle.loads, which is not on"),
            "nested pickle via numpy.loads": _refused("^it imports numpy.loads, which is not on"),
            "_codecs.encode into bytes for REDUCE": _refused("^it imports _codecs.encode, which"),
            "tuples nested 100000 deep": _refused("^it nests containers more than 1000 deep$"),
            "lists nested 5000 deep": _refused("^it nests containers more than 1000 deep$"),
            # Data opcodes only: pickle.loads decides from bytes, the interpreter from a stream.
            "DUP": (("loaded", ""), ("refused", "^it uses the opcode DUP, which")),
            "marks nested 20000 deep": (("loaded", ""), ("refused", "^it nests more than 10000")),
            "NEXT_BUFFER": (
                ("damaged", "out-of-band data"),
                ("refused", "^it uses the opcode NEXT_BUFFER, which"),
            ),
            "READONLY_BUFFER": (
                ("damaged", "^TypeError: "),
                ("refused", "^it uses the opcode READONLY_BUFFER, which"),
            ),
            "ADDITEMS to a frozenset": (
                ("damaged", "^AttributeError: 'frozenset' object has no attribute 'add'$"),
                ("refused", "^it adds items to frozenset$"),
            ),
            "APPEND to a tuple": (
                ("damaged", "^AttributeError: 'tuple' object has no attribute 'append'$"),
                ("refused", r"^it appends to \(\)$"),
            ),
            "SETITEMS on a list": (
                ("damaged", "^IndexError: list assignment index out of range$"),
                ("refused", "^it sets items of list$"),
            ),
            "empty": (("damaged", "^EOFError: Ran out of input$"), TRUNCATED),
            "no STOP": (("damaged", "^EOFError: Ran out of input$"), TRUNCATED),
            "truncated unicode": (TRUNCATED, TRUNCATED),
            "BINBYTES8 of 2**60 bytes": (("damaged", "^MemoryError: $"), TRUNCATED),
            "BINUNICODE8 of 2**62 bytes": _damaged("pickle data was truncated$"),
            "LONG4 of 2**31-1 bytes": _damaged("pickle data was truncated$"),
            "BINBYTES negative-looking length": _damaged("pickle data was truncated$"),
            "BINGET of a missing index": _damaged("Memo value not found at index 5$"),
            "LONG_BINGET 0xFFFFFFFF": _damaged("Memo value not found at index 4294967295$"),
            "LONG_BINPUT 0xFFFFFFFF then missing GET": _damaged(
                "^Memo value not found at index 4294967294$"
            ),
            "PUT -1": _damaged("^negative PUT argument$"),
            "GET huge text index": _damaged(
                "^OverflowError: ", "^Memo value not found at index 99999999999999999999$"
            ),
            "unknown opcode": _damaged(r"invalid load key, (b)?'\\xff'"),
            "STOP on an empty stack": _damaged("unpickling stack underflow$"),
            "TUPLE without MARK": _damaged("could not find MARK$"),
            "unhashable dict key": _damaged("^TypeError: unhashable type: 'list'$"),
            "SETITEMS odd items": _damaged("odd number of items for SETITEMS$"),
            "protocol 6": _damaged("unsupported pickle protocol: 6$"),
            "INT of 5000 digits": _damaged(
                "^ValueError: could not convert string to int$",
                # CPython 3.10 words it "the limit (4300)", 3.11+ "the limit (4300 digits)".
                r"^ValueError: Exceeds the limit \(4300( digits)?\) for integer string conversion",
            ),
            "invalid utf-8": _damaged("^UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff"),
            "stack underflow after a global": _damaged("^unpickling stack underflow$"),
            "APPENDS without MARK": _damaged("^could not find MARK$"),
            "LONG_BINPUT then a missing BINGET": _damaged("^Memo value not found at index 1$"),
            "GLOBAL of invalid utf-8": _damaged("^UnicodeDecodeError: 'utf-8' codec can't decode"),
            "date of month 13": _damaged("^TypeError: 'bytes' object cannot be interpreted as"),
            "timedelta of 2**31-1 days": _damaged("^OverflowError: days=2147483647; must have"),
            "set of a list": _damaged("^TypeError: unhashable type: 'list'$"),
            "array of 2**122 zero-size elements": _damaged("^ValueError: array is too big"),
        }
    )
    return expected


EXPECTED = _expected()
