"""Where CPython's unpickler reads a pickle from a file differently from bytes.

``pickle.loads(data)`` reads opcodes one after the other and treats ``FRAME`` as a hint.
``pickle.Unpickler(file).load()`` reads each frame into a buffer of its own; an opcode whose
argument runs past the end of that buffer is read again from the file, and what the frame
still held is dropped (CPython issue #154848). A value reader that offers ``peek()`` keeps the
two readings equal for every frame the unpickler takes through ``peek``; frames of
``PEEK_SIZE`` bytes or more it takes with one ``read(n)``, and for those the reader checks,
before handing them over, that no opcode crosses the frame's end (``frame_crossing``). Files
CPython's pickler writes never have such an opcode.

The Rust twin is ``rust/core/src/pickle_frame.rs``; its opcode table is checked against
``ARGS`` (built here from ``pickletools``) by the core's CPython parity tests.
"""

from __future__ import annotations

import pickletools

#: How many bytes CPython's unpickler asks ``peek()`` for (``PREFETCH`` in
#: ``Modules/_pickle.c``): a frame this long or longer is read with ``read(n)``, not peeked.
PEEK_SIZE = 8192 * 16

FRAME = 0x95
STOP = 0x2E

NOTHING, FIXED, COUNTED, LINES = range(4)
_COUNT_WIDTH = {
    pickletools.TAKEN_FROM_ARGUMENT1: 1,
    pickletools.TAKEN_FROM_ARGUMENT4: 4,
    pickletools.TAKEN_FROM_ARGUMENT4U: 4,
    pickletools.TAKEN_FROM_ARGUMENT8U: 8,
}


def _arg(op: pickletools.OpcodeInfo) -> tuple[int, int]:
    arg = op.arg
    if arg is None:
        return NOTHING, 0
    if arg.n >= 0:
        return FIXED, arg.n
    if arg.n == pickletools.UP_TO_NEWLINE:
        return LINES, 2 if arg.name.endswith("_pair") else 1
    return COUNTED, _COUNT_WIDTH[arg.n]


#: ``(kind, n)`` of every opcode CPython knows, by its byte; ``None`` for the others.
ARGS: list[tuple[int, int] | None] = [None] * 256
for _op in pickletools.opcodes:
    ARGS[ord(_op.code)] = _arg(_op)
del _op


def describe_crossing(at: int, frame: int) -> str:
    """What a crossing is, in the words every report of it uses."""
    return (
        f"an opcode at byte {at} of the pickle crosses the end of a FRAME of {frame} bytes "
        "(CPython's pickler never writes this; pickle.load of a file reads it differently "
        "from pickle.loads)"
    )


def is_frame_header(last: bytes, n: int) -> bool:
    """Whether ``last``, the nine bytes read before a ``read(n)``, are a ``FRAME`` opcode
    announcing ``n`` bytes: the read is then that frame's content."""
    return len(last) == 9 and last[0] == FRAME and int.from_bytes(last[1:], "little") == n


def frame_crossing(frame: bytes) -> int | None:
    """The offset of the first opcode in ``frame`` (a frame's content) that does not end
    inside it, or None when every opcode does, or the pickle stops (or names an opcode CPython
    refuses) before the end. A ``FRAME`` opcode inside the frame counts as crossing it."""
    pos, size, args = 0, len(frame), ARGS
    while pos < size:
        op = frame[pos]
        arg = args[op]
        if arg is None or op == STOP:
            return None
        if op == FRAME:
            return pos
        kind, n = arg
        end = pos + 1
        if kind == FIXED:
            end += n
        elif kind == COUNTED:
            end += n + int.from_bytes(frame[end : end + n], "little") if end + n <= size else n
        elif kind == LINES:
            for _ in range(n):
                newline = frame.find(b"\n", end)
                end = newline + 1 if newline >= 0 else size + 1
        if end > size:
            return pos
        pos = end
    return None


class FrameGuard:
    """Follows what a value reader hands the unpickler, to check each frame it reads with one
    ``read(n)`` before handing it over."""

    __slots__ = ("last", "pos")

    def __init__(self) -> None:
        self.last = b""  # the last bytes handed over (at most nine)
        self.pos = 0  # how many bytes were handed over

    def pass_read(self, requested: int, block: bytes) -> int | None:
        """Checks ``block``, what a ``read(requested)`` is about to hand over, and records it.
        Returns the offset in the pickle of an opcode that crosses the frame's end (the block
        is then not recorded), else None."""
        if requested >= PEEK_SIZE and is_frame_header(self.last, requested):
            at = frame_crossing(block)
            if at is not None:
                return self.pos + at
        self.passed(block)
        return None

    def passed(self, data: bytes | memoryview, length: int | None = None) -> None:
        """Records bytes handed over by anything but a ``read(n)`` (``readinto``,
        ``readline``): the unpickler never reads a frame that way. ``data`` may be just the
        last bytes of what was handed over when ``length`` gives its whole length."""
        self.pos += len(data) if length is None else length
        self.last = (self.last + bytes(data[-9:]))[-9:]
