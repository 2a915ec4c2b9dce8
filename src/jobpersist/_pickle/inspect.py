"""What a pickle would import, read from its opcode stream without unpickling it.

``scan_pickle`` walks ``pickletools.genops`` and simulates just enough of the unpickler's
stack (string pushes, the memo, marks) to name the module and attribute of every ``GLOBAL``,
``STACK_GLOBAL`` and ``INST``. Nothing is imported and nothing is run: a hostile file's
``os.system`` is reported, never called.
"""

from __future__ import annotations

import dataclasses
import pickletools
from typing import Any

from jobpersist._codec.python.pickle_frame import frame_crossing
from jobpersist._pickle.allowlist import ALLOWED_GLOBALS

# The globals safe mode (allow_pickle="safe") loads: the loader's own allow-list, so that
# "every import is on the safe list" means the names pass the loader's first check.
_SAFE_NAMES: dict[str, frozenset[str]] = ALLOWED_GLOBALS

# Known to run code, touch the system or unpickle more data: reported as "dangerous".
_DANGEROUS_MODULES = frozenset(
    {
        "_pickle",
        "_posixsubprocess",
        "code",
        "codeop",
        "ctypes",
        "importlib",
        "marshal",
        "multiprocessing",
        "nt",
        "os",
        "pickle",
        "posix",
        "pty",
        "runpy",
        "shutil",
        "socket",
        "subprocess",
        "sys",
        "types",
        "webbrowser",
    }
)
_DANGEROUS_NAMES: dict[str, frozenset[str]] = {
    "builtins": frozenset(
        {
            "__import__",
            "breakpoint",
            "compile",
            "delattr",
            "eval",
            "exec",
            "getattr",
            "globals",
            "input",
            "locals",
            "open",
            "setattr",
            "vars",
        }
    ),
    "operator": frozenset({"attrgetter", "methodcaller"}),
    "numpy": frozenset({"load", "loadtxt", "fromfile"}),
}

SAFE = "safe"
UNLISTED = "unlisted"
DANGEROUS = "dangerous"


def classify(module: str, name: str) -> str:
    """``"safe"`` (on safe mode's allow-list), ``"dangerous"`` or ``"unlisted"`` for the
    global ``module.name``."""
    top = module.split(".", 1)[0]
    if top in _DANGEROUS_MODULES or name in _DANGEROUS_NAMES.get(module, frozenset()):
        return DANGEROUS
    if module == "__builtin__":  # protocol 0-2 pickles written by Python 2
        module = "builtins"
    if name in _SAFE_NAMES.get(module, frozenset()):
        return SAFE
    return UNLISTED


@dataclasses.dataclass(frozen=True)
class GlobalRef:
    """One global the pickle would import (``module.name``), as found by an opcode."""

    module: str
    name: str
    opcode: str
    status: str

    @property
    def qualified(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def safe(self) -> bool:
        return self.status == SAFE

    def as_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "name": self.name,
            "opcode": self.opcode,
            "status": self.status,
            "safe": self.safe,
        }


@dataclasses.dataclass
class PickleScan:
    """What the opcode stream of one pickle holds."""

    size: int
    protocol: int | None = None
    globals: list[GlobalRef] = dataclasses.field(default_factory=list)
    # Opcodes that call or build objects (REDUCE, BUILD, INST, OBJ, NEWOBJ, ...), counted.
    calls: dict[str, int] = dataclasses.field(default_factory=dict)
    error: str | None = None
    # The first opcode that crosses the end of a FRAME: (its offset, the frame's length).
    crossing: tuple[int, int] | None = None

    @property
    def safe(self) -> bool:
        """True when the stream parses, no opcode crosses a frame's end, and it imports only
        globals on the safe list."""
        return self.error is None and self.crossing is None and all(g.safe for g in self.globals)

    def as_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "protocol": self.protocol,
            "globals": [g.as_dict() for g in self.globals],
            "calls": dict(self.calls),
            "safe": self.safe,
            "error": self.error,
            "frame_crossing": None
            if self.crossing is None
            else {"offset": self.crossing[0], "frame": self.crossing[1]},
        }


_CALL_OPCODES = frozenset(
    {"REDUCE", "BUILD", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "PERSID", "BINPERSID"}
)
_STRING_OPCODES = frozenset(
    {
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
    }
)
_MARK = object()  # a mark on the simulated stack


class _Unknown:
    """A stack item whose value the scan does not track."""


_UNKNOWN = _Unknown()


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):  # STRING opcodes of protocol 0-2 (Python 2 str)
        return value.decode("latin-1")
    return None


def _pop_arguments(opcode: pickletools.OpcodeInfo, stack: list[Any]) -> list[Any]:
    """Pops what ``opcode`` consumes from the simulated ``stack``: everything down to the
    topmost mark, or a count. Returns the items popped above the mark (or the count)."""
    name, before = opcode.name, opcode.stack_before
    if pickletools.markobject in before or (name == "POP" and stack and stack[-1] is _MARK):
        while stack and stack[-1] is not _MARK:
            stack.pop()
        if not stack:
            raise ValueError(f"{name} without a MARK on the stack")
        stack.pop()
        count = before.index(pickletools.markobject) if name != "POP" else 0
    else:
        count = len(before)
    popped = stack[len(stack) - count :] if count else []
    if count:
        del stack[-count:]
    return popped


def scan_pickle(payload: bytes) -> PickleScan:
    """Walks the opcodes of ``payload`` (never unpickling) and reports its globals.

    A stream that does not parse is reported in ``error`` (the globals found before the
    damage are kept); the function itself does not raise on bad input.
    """
    result = PickleScan(size=len(payload))
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    seen: set[tuple[str, str, str]] = set()

    def add(module: str, name: str, opcode: str) -> None:
        if (module, name, opcode) not in seen:
            seen.add((module, name, opcode))
            result.globals.append(GlobalRef(module, name, opcode, classify(module, name)))

    stopped = False
    try:
        for opcode, raw_arg, pos in pickletools.genops(payload):
            name = opcode.name
            arg: Any = raw_arg
            if name == "PROTO":
                result.protocol = int(arg)
            if name == "FRAME" and result.crossing is None and pos is not None:
                at = frame_crossing(payload[pos + 9 : pos + 9 + arg])
                if at is not None:
                    result.crossing = (pos + 9 + at, arg)
            if name in _CALL_OPCODES:
                result.calls[name] = result.calls.get(name, 0) + 1
            # Memo stores copy the top of the stack; DUP repeats it: track the value through.
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                key = len(memo) if name == "MEMOIZE" else int(arg)
                memo[key] = stack[-1] if stack else _UNKNOWN
                continue
            if name == "DUP":
                stack.append(stack[-1] if stack else _UNKNOWN)
                continue
            popped = _pop_arguments(opcode, stack)
            # Record the globals.
            pushed: Any = _UNKNOWN
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                add(module, attr, name)
                pushed = f"{module}.{attr}"
            elif name == "STACK_GLOBAL":
                module_text = _as_text(popped[0]) if len(popped) == 2 else None
                attr_text = _as_text(popped[1]) if len(popped) == 2 else None
                add(module_text or "?", attr_text or "?", name)
                pushed = f"{module_text}.{attr_text}"
            elif name in ("EXT1", "EXT2", "EXT4"):
                add("copyreg.extension", str(arg), name)
            elif name in _STRING_OPCODES:
                pushed = arg
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(int(arg), _UNKNOWN)
            for item in opcode.stack_after:
                stack.append(_MARK if item is pickletools.markobject else pushed)
            if name == "STOP":
                stopped = True
    except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError) as exc:
        result.error = f"the pickle's opcode stream does not parse: {exc}"
    else:
        if not stopped:
            result.error = "the pickle's opcode stream ends without STOP"
    return result
