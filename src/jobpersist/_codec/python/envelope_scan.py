"""Finding the keys and value spans of a canonical pickled envelope (twin of
``envelope_scan.rs``)."""

from __future__ import annotations

import itertools
import json
import operator
import os
import re

import orjson

from jobpersist._codec.python.errors import DecodeError
from jobpersist._format.schema import HEAD, tail

TAIL = tail("pickled_v4")
_CONTROL = re.compile(rb"[\x00-\x1f]")
# A big file is read through a window of WINDOW bytes, twice (the scan, then the values):
# from the page cache the second time, and never held whole.
WINDOW = 1 << 20
# A small file with many keys is parsed whole (orjson), or split at its quotes: no Python
# work per key. Otherwise the scan goes key by key and never copies a value.
_MANY_KEYS = 256  # quotes, in the first _MANY_KEYS_PREFIX bytes of the dictionary
_MANY_KEYS_PREFIX = 1 << 16


def unescape(text: bytes) -> bytes:
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


def parsed_scan(data: bytes, end: int) -> Scan | None:
    """``scan_envelope`` for a small file with many keys, parsed by orjson (C): its keys and
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
    # The collector is left alone (it is the process's, not ours), though 10,000 new tuples
    # run it a dozen times.
    return list(zip(starts, map(operator.add, starts, lengths), strict=True))


def split_scan(data: bytes, end: int) -> Scan | None:
    """``scan_envelope`` for a small file: the dictionary (``data[len(HEAD):end]``) split at
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


class BytesSource:
    """A file's bytes, read whole."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def get(self, start: int, end: int) -> bytes:
        return self.data[start:end]

    def find(self, sub: bytes, start: int, end: int) -> int:
        return self.data.find(sub, start, end)


class FileSource:
    """A big file, read at offsets (``pread``) through a window of ``WINDOW`` bytes."""

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
        self._window = self._read(start, min(self.size, start + WINDOW))
        self._at = start

    def get(self, start: int, end: int) -> bytes:
        at = self._at
        if not (at <= start and end <= at + len(self._window)):
            if end - start > WINDOW // 2:
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
        while part := os.pread(self._fd, WINDOW, offset):
            parts.append(part)
            offset += len(part)
        return b"".join(parts)


Source = BytesSource | FileSource


def _string_end(source: Source, start: int, end: int) -> int:
    quote = source.find(b'"', start, end)
    # An escaped quote (or a `\\"` pair, rare) is left to the full parser.
    if quote < 0 or (quote > start and source.get(quote - 1, quote) == b"\\"):
        return -1
    return quote


def loop_scan(source: Source, end: int) -> Scan | None:
    """``scan_envelope`` key by key, for a file with few keys or a big one: no value is
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


def scan_envelope(source: Source, size: int) -> Scan | None:
    """Keys and value spans of a canonical pickled envelope, or None for any other layout.

    The layout accepted is exactly what ``json.dumps`` writes (see the Rust scanner, which
    accepts the same files); the caller parses anything else in full.
    """
    if size < len(HEAD) + len(TAIL) or source.get(0, len(HEAD)) != HEAD:
        return None
    end = size - len(TAIL)
    if source.get(end, size) != TAIL:
        # Trailing whitespace, which json.loads allows (neither writer leaves any; a lot of
        # it is left to the full parser).
        last = source.get(max(0, size - 4096), size)
        content = last.rstrip(b" \t\n\r")
        if not content.endswith(TAIL):
            return None
        end = size - (len(last) - len(content)) - len(TAIL)
        if end < len(HEAD):
            return None
    if isinstance(source, BytesSource):
        data = source.data
        # Many quotes early on: many keys (counting them all costs as much as a scan).
        if data.count(b'"', len(HEAD), min(end, len(HEAD) + _MANY_KEYS_PREFIX)) >= _MANY_KEYS:
            return parsed_scan(data, end) or split_scan(data, end)
    return loop_scan(source, end)
