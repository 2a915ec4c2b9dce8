"""One file opened for loading: its scan, its values' readers (twin of the glue's ``reader.rs``)."""

from __future__ import annotations

import binascii
import os

from jobpersist._codec.python.base64_stream import BASE64_OR_QUOTE, ValueReader
from jobpersist._codec.python.envelope_scan import (
    BytesSource,
    FileSource,
    Source,
    Spans,
    scan_envelope,
    unescape,
)
from jobpersist._codec.python.errors import DecodeError

# Files up to this size are read whole. A larger one is read through a window
# (``envelope_scan.WINDOW``), twice (the scan, then the values): from the page cache the
# second time, and never held whole, so the peak is about the decoded values alone.
SMALL_FILE = 16 << 20


class PyFileData:
    """``FileData`` over a file read whole, or a big one read as needed."""

    def __init__(self, source: Source) -> None:
        self._source = source
        # The spans and text of the values, when the scan found them already.
        self._texts: tuple[Spans, list[str] | list[bytes]] | None = None

    def scan_pickled(self) -> tuple[list[str], Spans] | None:
        source = self._source
        size = len(source.data) if isinstance(source, BytesSource) else source.size
        scanned = scan_envelope(source, size)
        if scanned is None:
            return None
        keys, spans, texts = scanned
        if texts is not None:
            self._texts = spans, texts
        return keys, spans

    def value_reader(self, start: int, end: int) -> ValueReader:
        return ValueReader(self._source, start, end)

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
            unescaped = unescape(joined)
            # With nothing but base64 characters left, the reference's lenient decoder (which
            # skips the newlines JSON gives it) and this one read the same characters: the
            # lenient decoder is then exact, and cheaper per call than the strict one.
            if unescaped.translate(None, BASE64_OR_QUOTE):
                raise DecodeError("a value holds characters other than base64")
            return list(map(binascii.a2b_base64, unescaped.split(b'"')))
        except ValueError as exc:
            raise DecodeError(f"invalid base64: {exc}") from exc

    def bytes(self) -> bytes:
        source = self._source
        return source.data if isinstance(source, BytesSource) else source.read_all()


def read_file(path: str) -> PyFileData:
    """Opens the file at ``path``: a small one is read whole, a big one as it is needed."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size > SMALL_FILE:
            source: Source = FileSource(fd, size)  # which closes fd
        else:
            with os.fdopen(fd, "rb") as f:
                fd = -1
                source = BytesSource(f.read())
        fd = -1
        return PyFileData(source)
    finally:
        if fd >= 0:
            os.close(fd)
