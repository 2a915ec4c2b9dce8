"""The pure-Python codec: the fallback when ``jobpersist._native`` is missing, and the
oracle the Rust codec is tested against. Same interface, same bytes."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

from jobpersist._atomic import AtomicFile
from jobpersist._conversion import to_json_text
from jobpersist._schema import HEAD, tail
from jobpersist.serialization import strict_b64decode

# Write to the file in pieces of about this size, so memory stays bounded by the largest value.
_FLUSH_AT = 1 << 20
# encodebytes' input per line, and the piece of a large value encoded at a time.
_LINE_BYTES = 57
_CHUNK = _LINE_BYTES * 16384


class PyEnvelopeWriter:
    """``EnvelopeWriter`` over ``_atomic.AtomicFile``."""

    def __init__(self, path: str, fsync: bool) -> None:
        self._file = AtomicFile(path, fsync)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._carry: bytearray | None = None

    def _append(self, data: bytes) -> None:
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
            self._pending_size = 0

    def write_raw(self, data: bytes) -> None:
        self._append(bytes(data))

    def write_key(self, key: str, separator: bool = False) -> None:
        text = json.dumps(key).encode("ascii") + b": "
        self._append(b", " + text if separator else text)

    def write_str(self, value: str) -> None:
        self._append(json.dumps(value).encode("ascii"))

    def write_json(self, key: Any, value: Any) -> None:
        self._append(to_json_text(key, value))

    def begin_b64(self) -> None:
        if self._carry is not None:
            raise ValueError("begin_b64() inside an open base64 value")
        self._append(b'"')
        self._carry = bytearray()

    def _encode(self, chunk: bytes | bytearray | memoryview) -> None:
        # A whole number of 57-byte lines encodes to whole lines: the same text encodebytes
        # gives for the entire value. Its newlines become the JSON string's two-char escapes.
        self._append(base64.encodebytes(chunk).replace(b"\n", b"\\n"))

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        carry = self._carry
        if carry is None:
            raise ValueError("write() outside begin_b64()/end_b64()")
        view = memoryview(data).cast("B")
        size = len(view)
        if carry:
            take = min(size, -len(carry) % _LINE_BYTES)
            carry += view[:take]
            view = view[take:]
            if len(carry) % _LINE_BYTES == 0:
                self._encode(carry)
                carry.clear()
        whole = len(view) // _LINE_BYTES * _LINE_BYTES
        for offset in range(0, whole, _CHUNK):
            self._encode(view[offset : min(offset + _CHUNK, whole)])
        carry += view[whole:]
        return size

    def end_b64(self) -> None:
        if self._carry is None:
            raise ValueError("end_b64() without begin_b64()")
        if self._carry:
            self._encode(self._carry)
        self._carry = None
        self._append(b'"')

    def commit(self) -> None:
        self._flush()
        self._file.commit()

    def abort(self) -> None:
        self._pending.clear()
        self._file.abort()


def encode_json(key: Any, value: Any) -> bytes:
    """The JSON text the reference writes for ``value`` (under top-level ``key``)."""
    return to_json_text(key, value)


def open_writer(path: str, fsync: bool) -> PyEnvelopeWriter:
    """Starts an atomic write of ``path``."""
    return PyEnvelopeWriter(path, fsync)


_TAIL = tail("pickled_v4")


def _string_end(data: bytes, start: int) -> int:
    end = data.find(b'"', start)
    # An escaped quote (or a `\\"` pair, rare) is left to the full parser.
    if end < 0 or (end > start and data[end - 1] == 0x5C):
        return -1
    return end


def _decode_key(raw: bytes) -> str:
    if b"\\" not in raw:
        return raw.decode("utf-8")  # UnicodeDecodeError is a ValueError, as json's would be
    result = json.loads(b'"' + raw + b'"')
    assert isinstance(result, str)
    return result


def _scan_pickled(data: bytes) -> tuple[list[str], list[tuple[int, int]]] | None:
    """Keys and value spans of a canonical pickled envelope, or None for any other layout.

    The layout accepted is exactly what ``json.dumps`` writes (see the Rust scanner, which
    accepts the same files); the caller parses anything else in full.
    """
    if not data.startswith(HEAD):
        return None
    pos = len(HEAD)
    keys: list[str] = []
    spans: list[tuple[int, int]] = []
    if not data.startswith(_TAIL, pos):
        while True:
            if data[pos : pos + 1] != b'"':
                return None
            key_end = _string_end(data, pos + 1)
            if key_end < 0 or any(b < 0x20 for b in data[pos + 1 : key_end]):
                return None
            raw_key = data[pos + 1 : key_end]
            if not data.startswith(b': "', key_end + 1):
                return None
            value_start = key_end + 4
            value_end = _string_end(data, value_start)
            if value_end < 0:
                return None
            keys.append(_decode_key(raw_key))
            spans.append((value_start, value_end))
            pos = value_end + 1
            if data.startswith(b", ", pos):
                pos += 2
            elif data.startswith(_TAIL, pos):
                break
            else:
                return None
    if data[pos + len(_TAIL) :].strip(b" \t\n\r"):
        return None
    return keys, spans


def _decode_span(data: bytes, start: int, end: int) -> bytes:
    raw = data[start:end]
    if b"\\r" in raw:
        raw = raw.replace(b"\\r\\n", b"")
    return strict_b64decode(raw.replace(b"\\n", b""))


class DecodeError(ValueError):
    """A value is not strict wrapped base64; the caller decodes it on the exact path."""


class _BytesValueReader(io.BytesIO):
    def validate_rest(self) -> None:
        """The whole value was decoded (and checked) up front."""


class PyFileData:
    """``FileData`` over a ``bytes`` object."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def scan_pickled(self) -> tuple[list[str], list[tuple[int, int]]] | None:
        return _scan_pickled(self._data)

    def value_reader(self, start: int, end: int) -> _BytesValueReader:
        try:
            return _BytesValueReader(_decode_span(self._data, start, end))
        except ValueError as exc:
            raise DecodeError(f"invalid base64 at bytes {start}..{end}: {exc}") from exc

    def decode_values(self, spans: list[tuple[int, int]]) -> list[bytes]:
        try:
            return [_decode_span(self._data, start, end) for start, end in spans]
        except ValueError as exc:
            raise DecodeError(f"invalid base64: {exc}") from exc

    def bytes(self) -> bytes:
        return self._data


def read_file(path: str) -> PyFileData:
    """Reads the file at ``path``."""
    with open(path, "rb") as f:
        return PyFileData(f.read())
