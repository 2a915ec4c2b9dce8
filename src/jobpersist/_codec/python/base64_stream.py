"""Decoding one value's wrapped base64 a step at a time, for the unpickler (twin of
``base64_stream.rs``)."""

from __future__ import annotations

import base64
import binascii
import struct
import sys

from jobpersist._codec.python.base64_lines import ESCAPED_NEWLINE, LINE_CHARS, LINE_TEXT
from jobpersist._codec.python.envelope_scan import Source, unescape
from jobpersist._codec.python.errors import DecodeError, FrameError
from jobpersist._codec.python.pickle_frame import FrameGuard

# A streamed value is decoded 840 lines (64 KiB of text) at a time. The pieces stay in the
# CPU cache and below malloc's mmap threshold, so the same heap memory serves every step.
_STEP_LINES = 840
DECODE_STEP = _STEP_LINES * LINE_TEXT
# Canonical lines (76 characters, then an escaped newline) are unescaped by picking the
# lines out with struct, once the escapes are checked where they must be: cheaper than
# bytes.replace, which searches for every escape.
_PICK_LINES = struct.Struct(f"{LINE_CHARS}s{len(ESCAPED_NEWLINE)}x" * _STEP_LINES).unpack_from
_STEP_BACKSLASHES = b"\\" * _STEP_LINES
_STEP_NS = b"n" * _STEP_LINES
BASE64_OR_QUOTE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=" + b'"'

if sys.version_info >= (3, 11):

    def strict_b64decode(text: bytes) -> bytes:
        """Base64 without line breaks or any other stray character (``binascii.Error``)."""
        return binascii.a2b_base64(text, strict_mode=True)

else:  # pragma: no cover - strict_mode is new in 3.11

    def strict_b64decode(text: bytes) -> bytes:
        """Base64 without line breaks or any other stray character (``binascii.Error``)."""
        return base64.b64decode(text, validate=True)


class ValueReader:
    """A binary file over the bytes one value's base64 encodes, decoded a step at a time as
    the unpickler reads them. A large array's bytes are decoded straight into the buffer the
    unpickler allocates for them (``readinto``): the only whole copy of the value is the
    unpickler's. It offers ``peek``, so that the unpickler reads frames as ``pickle.loads``
    does, and checks the frames it reads whole with ``read(n)`` (``FrameGuard``)."""

    def __init__(self, source: Source, start: int, end: int) -> None:
        self._source = source
        self._pos = start
        self._end = end
        # Decoded bytes not yet read: _ready from _ready_at on.
        self._ready = b""
        self._ready_at = 0
        self._guard = FrameGuard()

    def _decode_step(self) -> bool:
        """Decodes the next step of text into ``_ready``; False at the end of the value."""
        start, end = self._pos, self._end
        if start >= end:
            return False
        source = self._source
        cut = start + DECODE_STEP
        decoded = None
        if cut < end:
            step = source.get(start, cut)
        if (
            cut < end
            and step[LINE_CHARS::LINE_TEXT] == _STEP_BACKSLASHES
            and step[LINE_CHARS + 1 :: LINE_TEXT] == _STEP_NS
        ):
            text = b"".join(_PICK_LINES(step))
            try:
                decoded = strict_b64decode(text)
            except ValueError:
                pass  # more escapes inside the lines: unescaped below, or refused there
        if decoded is None:
            cut = end
            if end - start > DECODE_STEP:
                newline = source.find(ESCAPED_NEWLINE, start + DECODE_STEP, end)
                if newline >= 0:
                    # After a whole number of lines, i.e. of 4-character groups (if the
                    # lines are not, the strict decoder fails and the exact path decides).
                    cut = newline + len(ESCAPED_NEWLINE)
            text = unescape(source.get(start, cut))
            try:
                decoded = strict_b64decode(text)
            except ValueError as exc:
                raise DecodeError(f"invalid base64 at bytes {start}..{cut}: {exc}") from exc
        if cut < end and text.endswith(b"="):
            # Padding ends the reference's decoding: what follows must not be decoded.
            raise DecodeError(f"base64 padding inside the value at bytes {start}..{cut}")
        self._pos = cut
        self._ready = decoded
        self._ready_at = 0
        return True

    def readinto(self, buffer: bytearray | memoryview, /) -> int:
        filled = self._fill(buffer)
        with memoryview(buffer) as raw, raw.cast("B") as target:
            self._guard.passed(target[max(0, filled - 9) : filled], filled)
        return filled

    def _fill(self, buffer: bytearray | memoryview) -> int:
        """``readinto`` without the frame check that ``read`` makes of its own bytes."""
        with memoryview(buffer) as raw, raw.cast("B") as target:
            size = len(target)
            filled = 0
            while filled < size:
                at = self._ready_at
                take = min(len(self._ready) - at, size - filled)
                if take <= 0:
                    if not self._decode_step():
                        break
                    continue
                with memoryview(self._ready) as ready:
                    target[filled : filled + take] = ready[at : at + take]
                self._ready_at = at + take
                filled += take
        return filled

    def read(self, size: int | None = -1, /) -> bytes:
        if size is None or size < 0:
            parts = [self._ready[self._ready_at :]]
            while self._decode_step():
                parts.append(self._ready)
            self._ready_at = len(self._ready)
            data = b"".join(parts)
            self._guard.passed(data)
            return data
        at = self._ready_at
        if at + size <= len(self._ready):
            # What the unpickler used of a peek, or a frame: usually from one step.
            self._ready_at = at + size
            data = self._ready[at : at + size]
        else:
            out = bytearray(size)
            del out[self._fill(out) :]
            data = bytes(out)
        crossing = self._guard.pass_read(size, data)
        if crossing is not None:
            raise FrameError(crossing, size)
        return data

    def peek(self, size: int = 1, /) -> bytes:
        """Up to ``size`` of the next bytes (at least one unless at the end), without reading
        them. CPython's unpickler then reads frames as ``pickle.loads`` does: it takes what it
        peeked as its buffer and ``read``\\s only what it used."""
        size = max(size, 1)
        at = self._ready_at
        if at + size > len(self._ready):
            parts = [self._ready[at:]]
            have = len(parts[0])
            while have < size and self._decode_step():
                parts.append(self._ready)
                have += len(self._ready)
            self._ready = b"".join(parts)
            self._ready_at = at = 0
        return self._ready[at : at + size]

    def readline(self, size: int | None = -1, /) -> bytes:
        limit = sys.maxsize if size is None or size < 0 else size
        parts: list[bytes] = []
        length = 0
        while length < limit:
            at = self._ready_at
            if at >= len(self._ready):
                if not self._decode_step():
                    break
                continue
            stop = min(len(self._ready), at + limit - length)
            newline = self._ready.find(b"\n", at, stop)
            if newline >= 0:
                stop = newline + 1
            parts.append(self._ready[at:stop])
            length += stop - at
            self._ready_at = stop
            if newline >= 0:
                break
        line = b"".join(parts)
        self._guard.passed(line)
        return line

    def validate_rest(self) -> None:
        """Decodes what the unpickler left unread, since the reference decodes it too."""
        while self._decode_step():
            pass
