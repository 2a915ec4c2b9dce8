"""Writing an envelope file, value by value (twin of ``envelope_writer.rs``)."""

from __future__ import annotations

import binascii
from json.encoder import encode_basestring_ascii
from typing import Any

from jobpersist._codec.python.atomic_file import AtomicFile
from jobpersist._codec.python.base64_lines import LINE_BYTES, LINE_TEXT, PIECE, Buffer, encode_lines
from jobpersist._format.conversion import Convert, to_json_text

# Write to the file in pieces of about this size, so memory stays bounded by the largest value.
FLUSH_AT = 1 << 20

# From this much base64 input in one write, the file's blocks are reserved first
# (``AtomicFile.reserve``), with this much to spare for the framing that follows. These and
# the other sizes in ``codec.LIMITS`` are checked equal to the Rust codec's.
RESERVE_AT = 1 << 20
RESERVE_SLACK = 1 << 20


class PyEnvelopeWriter:
    """``EnvelopeWriter`` over ``_atomic.AtomicFile``."""

    def __init__(
        self, path: str, fsync: bool, scan_stale: bool = True, keep_replaced: bool = False
    ) -> None:
        self._file = AtomicFile(path, fsync, scan_stale, keep_replaced)
        # Text not yet written. Appending to it is one C call, which matters when the
        # values are many and small (a few calls each).
        self._out = bytearray()
        # The pickle bytes of the open base64 value not yet encoded (less than a piece).
        self._carry = bytearray()
        self._open = False

    @property
    def in_memory(self) -> bool:
        return self._file.in_memory

    def _flush_if_full(self) -> None:
        if len(self._out) >= FLUSH_AT:
            self._file.write(self._out)
            del self._out[:]

    def write_raw(self, data: bytes) -> None:
        self._out += data
        self._flush_if_full()

    def write_key(self, key: str, separator: bool = False) -> None:
        out = self._out
        if separator:
            out += b", "
        # json.dumps(key) is this C function, behind a Python call or two.
        out += encode_basestring_ascii(key).encode("ascii")
        out += b": "

    def write_str(self, value: str) -> None:
        self._out += encode_basestring_ascii(value).encode("ascii")
        self._flush_if_full()

    def write_json(self, key: Any, value: Any, convert: Convert) -> None:
        self._out += to_json_text(key, value, convert)
        self._flush_if_full()

    def begin_b64(self) -> None:
        if self._open:
            raise ValueError("begin_b64() inside an open base64 value")
        self._open = True
        self._out += b'"'

    def _encode(self, data: Buffer) -> None:
        # Whole 57-byte lines encode to whole lines: the same text encodebytes gives for the
        # entire value.
        with memoryview(data) as view:
            for offset in range(0, len(view), PIECE):
                self._out += encode_lines(view[offset : offset + PIECE])
                self._flush_if_full()

    def write(self, data: Buffer, /) -> int:
        if not self._open:
            raise ValueError("write() outside begin_b64()/end_b64()")
        carry = self._carry
        if type(data) is bytes and len(carry) + len(data) < PIECE:
            # Small writes (a small value's whole pickle, the pickler's frames) gather in
            # the carry: encoded once a piece is full, or at end_b64.
            carry += data
            return len(data)
        with memoryview(data) as raw, raw.cast("B") as view:
            size = len(view)
            if size >= RESERVE_AT:
                # At most one partial line is pending: count it whole.
                text = (size // LINE_BYTES + 2) * LINE_TEXT
                self._file.reserve(self._file.len + len(self._out) + text + RESERVE_SLACK)
            if len(carry) + size < PIECE:
                carry += view
                return size
            take = min(size, -len(carry) % LINE_BYTES)
            carry += view[:take]
            if len(carry) % LINE_BYTES:
                return size  # all of data went into the carry
            self._encode(carry)
            del carry[:]
            # A large write (an array's memory) is encoded straight from the caller's buffer.
            whole = take + (size - take) // LINE_BYTES * LINE_BYTES
            self._encode(view[take:whole])
            carry += view[whole:]
        return size

    def end_b64(self) -> None:
        if not self._open:
            raise ValueError("end_b64() without begin_b64()")
        carry = self._carry
        whole = len(carry) // LINE_BYTES * LINE_BYTES
        if whole:
            self._encode(memoryview(carry)[:whole])
        if len(carry) > whole:
            # The last, shorter line, with its padding; encodebytes ends it with a newline too.
            self._out += binascii.b2a_base64(carry[whole:], newline=False)
            self._out += b'\\n"'
        else:
            self._out += b'"'
        del carry[:]
        self._open = False
        self._flush_if_full()

    def commit(self) -> int | None:
        try:
            self._file.write(self._out)
        except BaseException:
            self._file.abort()
            raise
        self._out = bytearray()
        return self._file.commit()

    def abort(self) -> None:
        self._out = bytearray()
        self._file.abort()


def encode_json(key: Any, value: Any, convert: Convert) -> bytes:
    """The JSON text the reference writes for ``value`` (under top-level ``key``)."""
    return to_json_text(key, value, convert)


def open_writer(
    path: str, fsync: bool, scan_stale: bool = True, keep_replaced: bool = False
) -> PyEnvelopeWriter:
    """Starts an atomic write of ``path`` (see ``_codec.Codec.open_writer``)."""
    return PyEnvelopeWriter(path, fsync, scan_stale, keep_replaced)
