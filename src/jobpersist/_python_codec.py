"""The pure-Python codec: the fallback when ``jobpersist._native`` is missing, and the
oracle the Rust codec is tested against. Same interface, same bytes.

It is meant to beat the reference on its own, so every step over a value's bytes is one call
into C (``binascii``, ``bytes.replace``, ``bytes.split``, ``struct``) over a piece that stays
in the CPU cache; there is no Python loop per line of base64, nor per key of a small file.
"""

from __future__ import annotations

import binascii
import functools
import gc
import itertools
import json
import mmap
import operator
import os
import re
import struct
import sys
from json.encoder import encode_basestring_ascii
from typing import Any

import orjson

from jobpersist._atomic import AtomicFile
from jobpersist._conversion import Convert, to_json_text
from jobpersist._schema import HEAD, tail
from jobpersist.serialization import strict_b64decode

Buffer = bytes | bytearray | memoryview

# Write to the file in pieces of about this size, so memory stays bounded by the largest value.
_FLUSH_AT = 1 << 20
# encodebytes' input per line, and the text of a full line.
_LINE_BYTES = 57
_LINE_CHARS = 76
# Lines encoded per b2a_base64 call: 57 KiB in, 76 KiB out. Both stay in the CPU cache (with
# pieces 4x larger a save encoded 1.6x slower here), and the per-call overhead is nil.
_PIECE_LINES = 1024
_PIECE = _LINE_BYTES * _PIECE_LINES
_ESCAPED_NEWLINE = b"\\n"
_LINE_TEXT = _LINE_CHARS + len(_ESCAPED_NEWLINE)
# From this much base64 input in one write, the file's blocks are reserved first
# (``AtomicFile.reserve``), with this much to spare for the framing that follows; the same
# figures as the Rust writer's.
_RESERVE_AT = 1 << 20
_RESERVE_SLACK = 1 << 20


@functools.lru_cache(maxsize=64)
def _line_splitter(lines: int) -> Any:
    # Splits base64 text into lines of 76 characters in C, plus a last empty piece so that
    # joining the pieces with escaped newlines also ends the text with one.
    return struct.Struct(f"{_LINE_CHARS}s" * lines + "0s").unpack


def _encode_lines(data: Buffer) -> bytes:
    """``base64.encodebytes(data)`` with its newlines as JSON escapes; ``len(data)`` must be a
    multiple of 57 bytes, at most ``_PIECE``."""
    encoded = binascii.b2a_base64(data, newline=False)
    return _ESCAPED_NEWLINE.join(_line_splitter(len(encoded) // _LINE_CHARS)(encoded))


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

    def _flush_if_full(self) -> None:
        if len(self._out) >= _FLUSH_AT:
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
            for offset in range(0, len(view), _PIECE):
                self._out += _encode_lines(view[offset : offset + _PIECE])
                self._flush_if_full()

    def write(self, data: Buffer, /) -> int:
        if not self._open:
            raise ValueError("write() outside begin_b64()/end_b64()")
        carry = self._carry
        if type(data) is bytes and len(carry) + len(data) < _PIECE:
            # Small writes (a small value's whole pickle, the pickler's frames) gather in
            # the carry: encoded once a piece is full, or at end_b64.
            carry += data
            return len(data)
        with memoryview(data) as raw, raw.cast("B") as view:
            size = len(view)
            if size >= _RESERVE_AT:
                # At most one partial line is pending: count it whole.
                text = (size // _LINE_BYTES + 2) * _LINE_TEXT
                self._file.reserve(self._file.len + len(self._out) + text + _RESERVE_SLACK)
            if len(carry) + size < _PIECE:
                carry += view
                return size
            take = min(size, -len(carry) % _LINE_BYTES)
            carry += view[:take]
            if len(carry) % _LINE_BYTES:
                return size  # all of data went into the carry
            self._encode(carry)
            del carry[:]
            # A large write (an array's memory) is encoded straight from the caller's buffer.
            whole = take + (size - take) // _LINE_BYTES * _LINE_BYTES
            self._encode(view[take:whole])
            carry += view[whole:]
        return size

    def end_b64(self) -> None:
        if not self._open:
            raise ValueError("end_b64() without begin_b64()")
        carry = self._carry
        whole = len(carry) // _LINE_BYTES * _LINE_BYTES
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


@functools.cache
def _native_calls() -> tuple[Any, Any, Any] | None:
    """CPython's ``PyBytes_FromStringAndSize``, libc's ``madvise`` and a function giving a
    ``bytes``' data address, where ctypes reaches them."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    try:
        import ctypes

        new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (ImportError, OSError, AttributeError):
        return None
    new_bytes.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
    new_bytes.restype = ctypes.py_object
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int

    def address(data: bytes) -> int:
        # A c_char_p made from bytes points into them.
        return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0

    return new_bytes, madvise, address


def placeholder(size: int) -> bytes:
    """A new ``bytes`` of ``size`` that holds no memory (zeros where ctypes is missing): left
    uninitialised, with the whole pages inside it given back to the system, as the native
    codec's (see ``jobpersist._array_pickle``)."""
    calls = _native_calls()
    if calls is None:
        return bytes(size)
    new_bytes, madvise, address = calls
    made: bytes = new_bytes(None, size)
    start = address(made)
    if not start:
        return made
    first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
    end = (start + size) // mmap.PAGESIZE * mmap.PAGESIZE
    if end > first:
        # Only whole pages inside the data: nothing else lives there.
        madvise(first, end - first, mmap.MADV_DONTNEED)
    return made


# ------------------------------------------------------------------------------- loading

_TAIL = tail("pickled_v4")
_CONTROL = re.compile(rb"[\x00-\x1f]")
# Files up to this size are read whole. A larger one is read through a window of _WINDOW
# bytes, twice (the scan, then the values): from the page cache the second time, and never
# held whole, so the peak is about the decoded values alone.
_SMALL_FILE = 8 << 20
_WINDOW = 1 << 20
# A small file with many keys is parsed whole (orjson), or split at its quotes: no Python
# work per key. Otherwise the scan goes key by key and never copies a value.
_MANY_KEYS = 256  # quotes, in the first _MANY_KEYS_PREFIX bytes of the dictionary
_MANY_KEYS_PREFIX = 1 << 16
# A streamed value is decoded 840 lines (64 KiB of text) at a time. The pieces stay in the
# CPU cache and below malloc's mmap threshold, so the same heap memory serves every step.
_STEP_LINES = 840
_DECODE_STEP = _STEP_LINES * _LINE_TEXT
# Canonical lines (76 characters, then an escaped newline) are unescaped by picking the
# lines out with struct, once the escapes are checked where they must be: cheaper than
# bytes.replace, which searches for every escape.
_PICK_LINES = struct.Struct(f"{_LINE_CHARS}s{len(_ESCAPED_NEWLINE)}x" * _STEP_LINES).unpack_from
_STEP_BACKSLASHES = b"\\" * _STEP_LINES
_STEP_NS = b"n" * _STEP_LINES
_BASE64_OR_QUOTE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=" + b'"'

if sys.version_info >= (3, 11):
    _strict_decode = functools.partial(binascii.a2b_base64, strict_mode=True)
else:  # pragma: no cover - strict_mode is new in 3.11
    _strict_decode = strict_b64decode


def _unescape(text: bytes) -> bytes:
    """The base64 in ``text`` without its JSON newline escapes (``\\n``, ``\\r\\n``).

    Any other backslash stays, so the strict decoder refuses it: such values take the exact
    path, which parses them as JSON.
    """
    if b"\\r" in text:
        text = text.replace(b"\\r\\n", b"")
    return text.replace(b"\\n", b"")


def _decode_key(raw: bytes) -> str:
    if b"\\" not in raw:
        return raw.decode("utf-8")  # UnicodeDecodeError is a ValueError, as json's would be
    result = json.loads(b'"' + raw + b'"')
    assert isinstance(result, str)
    return result


Spans = list[tuple[int, int]]
# Keys, value spans and, when the scan has them, the values' text: JSON-decoded (str) or as
# in the file (bytes).
Scan = tuple[list[str], Spans, list[str] | list[bytes] | None]


def _parsed_scan(data: bytes, end: int) -> Scan | None:
    """``_scan_pickled`` for a small file with many keys, parsed by orjson (C): its keys and
    values come out whole, and the spans follow from their lengths once the text is shown
    to be laid out exactly as json.dumps lays it out. None when it is not, or not provably."""
    start = len(HEAD)
    try:
        dictionary = orjson.loads(data).get("dataDictionary")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if type(dictionary) is not dict:
        return None
    keys = list(dictionary)
    values = list(dictionary.values())
    count = len(keys)
    if not count or set(map(type, values)) != {str} or not "".join(values).isascii():
        return None
    newlines = list(map(str.count, values, itertools.repeat("\n")))
    # Every backslash in the file is one of the values' newline escapes: no key, and no value,
    # holds any other escape; no quote is escaped either, so the quotes counted are the
    # strings' own, and the separators counted are all there are.
    if (
        data.count(b"\\", start, end) != sum(newlines)
        or data.count(b'"', start, end) != 4 * count
        or data.count(b'": "', start, end) != count
        or data.count(b'", "', start, end) != count - 1
        or data[start : start + 1] != b'"'
        or data[end - 1 : end] != b'"'
    ):
        return None
    # Lengths in the file: a key is its UTF-8, a value its characters and a second one per
    # escaped newline. If they add up, with 8 characters per entry (`"`, `": "`, `"`, `", `),
    # to the dictionary's text, that text is `"key": "value", ...` and nothing else.
    joined_keys = "".join(keys)
    if joined_keys.isascii():
        key_lengths = list(map(len, keys))
    else:
        key_lengths = [len(key.encode("utf-8")) for key in keys]
    value_lengths = list(map(operator.add, map(len, values), newlines))
    if sum(key_lengths) + sum(value_lengths) + 8 * count - 2 != end - start:
        return None
    return keys, _layout_spans(start, key_lengths, value_lengths), values


def _layout_spans(start: int, key_lengths: list[int], value_lengths: list[int]) -> Spans:
    """The values' spans in entries laid out from ``start`` as ``json.dumps`` writes them."""
    # An entry, `"key": "value", `, is its key and value and 8 characters more; its value
    # starts 5 characters after its key does.
    entry_starts = itertools.accumulate(
        map(operator.add, map(operator.add, key_lengths, value_lengths), itertools.repeat(8)),
        initial=start,
    )
    value_starts = list(
        map(operator.add, map(operator.add, entry_starts, key_lengths), itertools.repeat(5))
    )
    return _spans(value_starts, value_lengths)


def _spans(starts: list[int], lengths: list[int]) -> Spans:
    # Tuples of ints hold no cycle, but 10,000 of them would run the cycle collector a dozen
    # times (a fifth of the scan here): it waits until they are made.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return list(zip(starts, map(operator.add, starts, lengths), strict=True))
    finally:
        if collecting:
            gc.enable()


def _split_scan(data: bytes, end: int) -> Scan | None:
    """``_scan_pickled`` for a small file: the dictionary (``data[len(HEAD):end]``) split at
    its quotes in one call, then checked a column of pieces at a time."""
    start = len(HEAD)
    if start == end:
        return [], [], []
    body = data[start:end]
    # An escaped quote would split a string in two: leave such files to the full parser.
    if b'\\"' in body:
        return None
    pieces = body.split(b'"')
    # '', key, ': ', value, ', ', key, ': ', value, ..., ''
    count = len(pieces) // 4
    if len(pieces) != 4 * count + 1 or pieces[0] or pieces[-1]:
        return None
    raw_keys = pieces[1::4]
    colons = pieces[2::4]
    commas = pieces[4:-1:4]
    if colons.count(b": ") != count or commas.count(b", ") != count - 1:
        return None
    joined_keys = b'"'.join(raw_keys)
    if _CONTROL.search(joined_keys):
        return None
    if b"\\" in joined_keys:
        keys = [_decode_key(raw) for raw in raw_keys]
    else:
        keys = joined_keys.decode("utf-8").split('"')
    values = pieces[3::4]
    key_lengths = list(map(len, raw_keys))
    value_lengths = list(map(len, values))
    return keys, _layout_spans(start, key_lengths, value_lengths), values


class DecodeError(ValueError):
    """A value is not strict wrapped base64; the caller decodes it on the exact path."""


class _BytesSource:
    """A file's bytes, read whole."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def get(self, start: int, end: int) -> bytes:
        return self.data[start:end]

    def find(self, sub: bytes, start: int, end: int) -> int:
        return self.data.find(sub, start, end)


class _FileSource:
    """A big file, read at offsets (``pread``) through a window of ``_WINDOW`` bytes."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self.size = size
        self._window = b""
        self._at = 0

    def __del__(self) -> None:
        os.close(self._fd)

    def _read(self, start: int, end: int) -> bytes:
        data = os.pread(self._fd, end - start, start)
        while len(data) < end - start:
            more = os.pread(self._fd, end - start - len(data), start + len(data))
            if not more:
                # Shorter than when it was opened: a writer truncated it (ours never do).
                raise DecodeError(
                    f"the file changed while it was read (no byte {start + len(data)})"
                )
            data += more
        return data

    def _load(self, start: int) -> None:
        self._window = self._read(start, min(self.size, start + _WINDOW))
        self._at = start

    def get(self, start: int, end: int) -> bytes:
        at = self._at
        if not (at <= start and end <= at + len(self._window)):
            if end - start > _WINDOW // 2:
                return self._read(start, end)
            self._load(start)
            at = start
        data = self._window[start - at : end - at]
        if len(data) < end - start:
            raise DecodeError(f"the file ends before byte {end}")
        return data

    def find(self, sub: bytes, start: int, end: int) -> int:
        while start < end:
            if not (self._at <= start < self._at + len(self._window) - len(sub) + 1):
                if start >= self.size:
                    return -1
                self._load(start)
            hit = self._window.find(sub, start - self._at, end - self._at)
            if hit >= 0:
                return self._at + hit
            if self._at + len(self._window) >= min(end, self.size):
                return -1
            # The next window starts where a match could still begin.
            start = self._at + len(self._window) - len(sub) + 1
        return -1

    def read_all(self) -> bytes:
        parts = []
        offset = 0
        while part := os.pread(self._fd, _WINDOW, offset):
            parts.append(part)
            offset += len(part)
        return b"".join(parts)


Source = _BytesSource | _FileSource


def _string_end(source: Source, start: int, end: int) -> int:
    quote = source.find(b'"', start, end)
    # An escaped quote (or a `\\"` pair, rare) is left to the full parser.
    if quote < 0 or (quote > start and source.get(quote - 1, quote) == b"\\"):
        return -1
    return quote


def _loop_scan(source: Source, end: int) -> Scan | None:
    """``_scan_pickled`` key by key, for a file with few keys or a big one: no value is
    copied (only a window of a big file is read at a time)."""
    pos = len(HEAD)
    keys: list[str] = []
    spans: Spans = []
    while pos < end:
        if source.get(pos, pos + 1) != b'"':
            return None
        key_end = _string_end(source, pos + 1, end)
        if key_end < 0:
            return None
        raw_key = source.get(pos + 1, key_end)
        if _CONTROL.search(raw_key) or source.get(key_end + 1, key_end + 4) != b': "':
            return None
        value_start = key_end + 4
        value_end = _string_end(source, value_start, end)
        if value_end < 0:
            return None
        keys.append(_decode_key(raw_key))
        spans.append((value_start, value_end))
        pos = value_end + 1
        if pos == end:
            break
        if source.get(pos, pos + 2) != b", ":
            return None
        pos += 2
    return keys, spans, None


def _scan_pickled(source: Source, size: int) -> Scan | None:
    """Keys and value spans of a canonical pickled envelope, or None for any other layout.

    The layout accepted is exactly what ``json.dumps`` writes (see the Rust scanner, which
    accepts the same files); the caller parses anything else in full.
    """
    if size < len(HEAD) + len(_TAIL) or source.get(0, len(HEAD)) != HEAD:
        return None
    end = size - len(_TAIL)
    if source.get(end, size) != _TAIL:
        # Trailing whitespace, which json.loads allows (neither writer leaves any; a lot of
        # it is left to the full parser).
        last = source.get(max(0, size - 4096), size)
        content = last.rstrip(b" \t\n\r")
        if not content.endswith(_TAIL):
            return None
        end = size - (len(last) - len(content)) - len(_TAIL)
        if end < len(HEAD):
            return None
    if isinstance(source, _BytesSource):
        data = source.data
        # Many quotes early on: many keys (counting them all costs as much as a scan).
        if data.count(b'"', len(HEAD), min(end, len(HEAD) + _MANY_KEYS_PREFIX)) >= _MANY_KEYS:
            return _parsed_scan(data, end) or _split_scan(data, end)
    return _loop_scan(source, end)


class _ValueReader:
    """A binary file over the bytes one value's base64 encodes, decoded a step at a time as
    the unpickler reads them. A large array's bytes are decoded straight into the buffer the
    unpickler allocates for them (``readinto``): the only whole copy of the value is the
    unpickler's."""

    def __init__(self, source: Source, start: int, end: int) -> None:
        self._source = source
        self._pos = start
        self._end = end
        # Decoded bytes not yet read: _ready from _ready_at on.
        self._ready = b""
        self._ready_at = 0

    def _decode_step(self) -> bool:
        """Decodes the next step of text into ``_ready``; False at the end of the value."""
        start, end = self._pos, self._end
        if start >= end:
            return False
        source = self._source
        cut = start + _DECODE_STEP
        decoded = None
        if cut < end:
            step = source.get(start, cut)
        if (
            cut < end
            and step[_LINE_CHARS::_LINE_TEXT] == _STEP_BACKSLASHES
            and step[_LINE_CHARS + 1 :: _LINE_TEXT] == _STEP_NS
        ):
            text = b"".join(_PICK_LINES(step))
            try:
                decoded = _strict_decode(text)
            except ValueError:
                pass  # more escapes inside the lines: unescaped below, or refused there
        if decoded is None:
            cut = end
            if end - start > _DECODE_STEP:
                newline = source.find(_ESCAPED_NEWLINE, start + _DECODE_STEP, end)
                if newline >= 0:
                    # After a whole number of lines, i.e. of 4-character groups (if the
                    # lines are not, the strict decoder fails and the exact path decides).
                    cut = newline + len(_ESCAPED_NEWLINE)
            text = _unescape(source.get(start, cut))
            try:
                decoded = _strict_decode(text)
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
            return b"".join(parts)
        at = self._ready_at
        if at + size <= len(self._ready):
            # The unpickler reads a frame (at most 64 KiB) at a time: usually from one step.
            self._ready_at = at + size
            return self._ready[at : at + size]
        out = bytearray(size)
        del out[self.readinto(out) :]
        return bytes(out)

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
        return b"".join(parts)

    def validate_rest(self) -> None:
        """Decodes what the unpickler left unread, since the reference decodes it too."""
        while self._decode_step():
            pass


class PyFileData:
    """``FileData`` over a file read whole, or a big one read as needed."""

    def __init__(self, source: Source) -> None:
        self._source = source
        # The spans and text of the values, when the scan found them already.
        self._texts: tuple[Spans, list[str] | list[bytes]] | None = None

    def scan_pickled(self) -> tuple[list[str], Spans] | None:
        source = self._source
        size = len(source.data) if isinstance(source, _BytesSource) else source.size
        scanned = _scan_pickled(source, size)
        if scanned is None:
            return None
        keys, spans, texts = scanned
        if texts is not None:
            self._texts = spans, texts
        return keys, spans

    def value_reader(self, start: int, end: int) -> _ValueReader:
        return _ValueReader(self._source, start, end)

    def decode_values(self, spans: Spans) -> list[bytes]:
        if not spans:
            return []
        texts = self._texts[1] if self._texts is not None and self._texts[0] == spans else None
        try:
            if texts and isinstance(texts[0], str):
                # JSON-decoded ASCII text: exactly what the reference decodes, with its own
                # (lenient) decoder.
                return list(map(binascii.a2b_base64, texts))
            source = self._source
            joined = b'"'.join(texts or [source.get(start, end) for start, end in spans])  # type: ignore[arg-type]
            # All values unescaped in one call, then split apart again (no value holds a
            # quote).
            unescaped = _unescape(joined)
            # With nothing but base64 characters left, the reference's lenient decoder (which
            # skips the newlines JSON gives it) and this one read the same characters: the
            # lenient decoder is then exact, and cheaper per call than the strict one.
            if unescaped.translate(None, _BASE64_OR_QUOTE):
                raise DecodeError("a value holds characters other than base64")
            return list(map(binascii.a2b_base64, unescaped.split(b'"')))
        except ValueError as exc:
            raise DecodeError(f"invalid base64: {exc}") from exc

    def bytes(self) -> bytes:
        source = self._source
        return source.data if isinstance(source, _BytesSource) else source.read_all()


def read_file(path: str) -> PyFileData:
    """Opens the file at ``path``: a small one is read whole, a big one as it is needed."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size > _SMALL_FILE:
            source: Source = _FileSource(fd, size)  # which closes fd
        else:
            with os.fdopen(fd, "rb") as f:
                fd = -1
                source = _BytesSource(f.read())
        fd = -1
        return PyFileData(source)
    finally:
        if fd >= 0:
            os.close(fd)
