"""Line-wrapped base64 as ``base64.encodebytes`` writes it (twin of ``base64_lines.rs``)."""

from __future__ import annotations

import binascii
import functools
import struct
from typing import Any

Buffer = bytes | bytearray | memoryview


# encodebytes' input per line, and the text of a full line.
LINE_BYTES = 57
LINE_CHARS = 76
# Lines encoded per b2a_base64 call: 57 KiB in, 76 KiB out. Both stay in the CPU cache (with
# pieces 4x larger a save encoded 1.6x slower here), and the per-call overhead is nil.
_PIECE_LINES = 1024
PIECE = LINE_BYTES * _PIECE_LINES
ESCAPED_NEWLINE = b"\\n"
LINE_TEXT = LINE_CHARS + len(ESCAPED_NEWLINE)


@functools.lru_cache(maxsize=64)
def _line_splitter(lines: int) -> Any:
    # Splits base64 text into lines of 76 characters in C, plus a last empty piece so that
    # joining the pieces with escaped newlines also ends the text with one.
    return struct.Struct(f"{LINE_CHARS}s" * lines + "0s").unpack


def encode_lines(data: Buffer) -> bytes:
    """``base64.encodebytes(data)`` with its newlines as JSON escapes; ``len(data)`` must be a
    multiple of 57 bytes, at most ``PIECE``."""
    encoded = binascii.b2a_base64(data, newline=False)
    return ESCAPED_NEWLINE.join(_line_splitter(len(encoded) // LINE_CHARS)(encoded))
