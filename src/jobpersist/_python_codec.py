"""The pure-Python codec: the fallback when ``jobpersist._native`` is missing, and the
oracle the Rust codec is tested against. Same interface, same bytes."""

from __future__ import annotations

import base64
import json

from jobpersist._atomic import AtomicFile

# Write to the file in pieces of about this size, so memory stays bounded by the largest value.
_FLUSH_AT = 1 << 20


class PyEnvelopeWriter:
    """``EnvelopeWriter`` over ``_atomic.AtomicFile``."""

    def __init__(self, path: str, fsync: bool) -> None:
        self._file = AtomicFile(path, fsync)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._b64: list[bytes] | None = None

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

    def write_key(self, key: str) -> None:
        self._append(json.dumps(key).encode("ascii") + b": ")

    def write_str(self, value: str) -> None:
        self._append(json.dumps(value).encode("ascii"))

    def begin_b64(self) -> None:
        self._b64 = []

    def write(self, data: bytes | bytearray | memoryview, /) -> int:
        if self._b64 is None:
            raise ValueError("write() outside begin_b64()/end_b64()")
        self._b64.append(bytes(data))
        return len(data)

    def end_b64(self) -> None:
        if self._b64 is None:
            raise ValueError("end_b64() without begin_b64()")
        payload = b"".join(self._b64)
        self._b64 = None
        # encodebytes' newlines become the two characters the JSON string holds.
        text = base64.encodebytes(payload).replace(b"\n", b"\\n")
        self._append(b'"')
        self._flush()
        self._file.write(text)
        self._append(b'"')

    def commit(self) -> None:
        self._flush()
        self._file.commit()

    def abort(self) -> None:
        self._pending.clear()
        self._file.abort()


def open_writer(path: str, fsync: bool) -> PyEnvelopeWriter:
    """Starts an atomic write of ``path``."""
    return PyEnvelopeWriter(path, fsync)


def scan_pickled(data: bytes) -> tuple[list[str], list[tuple[int, int]]] | None:
    """No fast path here: the caller parses the whole file."""
    return None


def decode_span(data: bytes, start: int, end: int) -> bytes:
    """Decodes the wrapped base64 in ``data[start:end]``, whose line breaks are ``\\n`` escapes.

    Raises:
        ValueError: For anything but strict base64 with ``\\n`` or ``\\r\\n`` escapes; the
            caller then decodes the value on the exact path.
    """
    text = data[start:end].replace(b"\\r\\n", b"").replace(b"\\n", b"")
    return base64.b64decode(text, validate=True)
