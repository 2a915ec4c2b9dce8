"""The persisted-job-data envelope: writing it through a codec, and parsing and validating it
exactly as the reference's schema does (its ``PersistedJobData.parse_raw``)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import orjson

from jobpersist import _codec, _durability
from jobpersist._codec.python.atomic_file import rescan, stale_scan_due
from jobpersist._format.conversion import convert_subtree
from jobpersist._format.data_format import Format, PersistedJobDataFormat
from jobpersist._format.schema import HEAD, SCHEMA_NAME, SCHEMA_VERSION, tail
from jobpersist._pickle.dump import close_stream, open_stream


class RawPickled:
    """A value already pickled and base64-encoded (read from a file): written as it is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class PrePickled:
    """A value already pickled (protocol 4) by the caller, as the pieces the pickler wrote
    (joined, they are the pickle): only their base64 is written, piece by piece, so a large
    pickle is never joined into one more copy."""

    __slots__ = ("pieces",)

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def payload(self) -> bytes:
        """The whole pickle (a copy, unless it is one piece)."""
        return self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)


class PreEncodedJson:
    """A value already encoded as the reference's JSON text: written as it is."""

    __slots__ = ("text",)

    def __init__(self, text: bytes) -> None:
        self.text = text


# Values already encoded (exact types: the wrappers are never subclassed).
_ENCODED = frozenset({PrePickled, PreEncodedJson, RawPickled})


def write_envelope(
    path: str,
    entries: Iterable[tuple[str, Any]],
    data_format: Format,
    durability: _durability.Durability,
) -> None:
    """Atomically writes the envelope holding ``entries`` (already-coerced keys) to ``path``,
    as durably as ``durability`` says (see ``_durability``).

    Values are pickled when ``data_format.pickled``, converted as the reference converts
    them otherwise, and the file is labelled ``data_format.label``; ``RawPickled``,
    ``PrePickled`` and ``PreEncodedJson`` values are already encoded (the caller matched them
    to ``data_format``).

    Raises:
        TypeError: If a plaintext value cannot be written as JSON.
        ValueError: On a circular reference or too deep nesting.
        OSError: If the file cannot be written; the previous file is then intact.
    """
    directory = os.path.dirname(path)
    try:
        replaced, in_memory = _write(
            path, entries, data_format, durability == _durability.FULL, directory
        )
    except BaseException:
        # A failed save may leave a temp behind (if even its removal failed).
        rescan(directory)
        raise
    # On tmpfs or ramfs no fsync makes a file durable: there is nothing to defer.
    deferred = durability == _durability.DEFERRED and not in_memory
    if deferred or replaced is not None:
        # The syncing thread frees the replaced file, and fsyncs the new one if deferred.
        _durability.schedule(path if deferred else None, replaced)


def _write(
    path: str, entries: Iterable[tuple[str, Any]], data_format: Format, fsync: bool, directory: str
) -> tuple[int | None, bool]:
    """Writes the envelope. Returns the replaced file's descriptor, kept when not
    ``fsync``, and whether the filesystem keeps its files in memory."""
    writer = _codec.CODEC.open_writer(path, fsync, stale_scan_due(directory), not fsync)
    try:
        writer.write_raw(HEAD)
        # One pickler for all values (memo cleared in between) writes what pickle.dumps
        # writes, without the cost of a new pickler per value; large arrays anywhere in a
        # value are written from their memory (see jobpersist._pickle.dump).
        stream = open_stream(writer) if data_format.pickled else None
        # (Method calls spelled out: CPython 3.11 calls obj.method() faster than a method
        # bound beforehand.)
        separator = False
        for key, value in entries:
            writer.write_key(key, separator)
            separator = True
            if type(value) not in _ENCODED:
                if stream is None:
                    writer.write_json(key, value, convert_subtree)
                    continue
                writer.begin_b64()
                try:
                    stream.dump(value)
                except RecursionError as exc:
                    raise ValueError(
                        f"Data under key {key!r} is nested too deeply to pickle."
                    ) from exc
                writer.end_b64()
            elif isinstance(value, PrePickled):
                writer.begin_b64()
                for piece in value.pieces:
                    writer.write(piece)
                writer.end_b64()
            elif isinstance(value, PreEncodedJson):
                writer.write_raw(value.text)
            else:  # RawPickled
                writer.write_str(value.text)
        writer.write_raw(tail(data_format.label))
    except BaseException:
        writer.abort()
        raise
    if stream is not None:
        close_stream(stream)
    return writer.commit(), writer.in_memory


# orjson turns integer literals beyond 64 bits into floats; json.loads keeps them exact. Any
# run of 19+ digits that is not a fraction, an exponent or inside a word may be such a
# literal: the file then takes the exact path (a false alarm only costs speed). Mapping every
# digit to "0" first lets bytes.find, which is fast, look for the runs.
_DIGITS_TO_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_RUN = b"0" * 19
_NOT_AN_INT_BEFORE = (
    frozenset(b".eE_+") | frozenset(range(0x41, 0x5B)) | frozenset(range(0x61, 0x7B))
)
_NOT_AN_INT_AFTER = frozenset(b".eE")


def _may_hold_long_int(data: bytes) -> bool:
    zeros = data.translate(_DIGITS_TO_ZERO)
    pos = zeros.find(_LONG_RUN)
    while pos >= 0:
        # find() returns the leftmost match: pos starts a run of digits.
        end = pos + len(_LONG_RUN)
        while end < len(data) and zeros[end] == 0x30:
            end += 1
        before = data[pos - 1] if pos else 0x20
        after = data[end] if end < len(data) else 0x20
        if before not in _NOT_AN_INT_BEFORE and after not in _NOT_AN_INT_AFTER:
            return True
        pos = zeros.find(_LONG_RUN, end)
    return False


def loads(data: bytes, exact: bool = False) -> Any:
    """Parses JSON as ``json.loads`` does (NaN, Infinity, big ints, lone surrogates), fast.

    With ``exact``, ``json.loads`` itself parses, so that even the identity of equal strings
    (which decides how pickle memoizes them) is the reference's.

    Raises:
        ValueError: If ``data`` is not JSON the reference would parse.
    """
    if not exact and not _may_hold_long_int(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # Maybe NaN, Infinity or a lone surrogate: the exact path decides.
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"The file is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValueError("The file's JSON is nested too deeply to parse.") from exc


def _schema_str(value: Any, field: str) -> str:
    # pydantic v1's str coercion, which the reference's schema applies.
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    raise ValueError(f"Invalid persisted job data: {field} must be a string, not {value!r}.")


def _as_dict(value: Any, what: str) -> dict[Any, Any]:
    # pydantic v1 takes a dict, or anything dict() accepts (a list of pairs), for models and
    # dict fields alike.
    if isinstance(value, dict):
        return value
    try:
        return dict(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Invalid persisted job data: {what} must be an object.") from exc


def _schema_dict(value: Any) -> dict[str, Any]:
    # Keys coerced to str, as pydantic v1 validates dict[str, Any].
    value = _as_dict(value, "dataDictionary")
    if all(type(k) is str for k in value):
        return dict(value)
    return {_schema_str(k, "a dataDictionary key"): v for k, v in value.items()}


def validate_envelope(obj: Any) -> tuple[PersistedJobDataFormat | str, dict[str, Any]]:
    """The data format and the data dictionary of a parsed envelope.

    Returns:
        tuple: The format (a member, or an unknown string the reference reads as plaintext)
        and the dictionary of encoded values.

    Raises:
        ValueError: If the envelope does not satisfy the reference's schema.
    """
    obj = _as_dict(obj, "the file's top-level value")
    if "braketSchemaHeader" in obj:
        header = _as_dict(obj["braketSchemaHeader"], "braketSchemaHeader")
        name = _schema_str(header.get("name"), "braketSchemaHeader.name")
        version = _schema_str(header.get("version"), "braketSchemaHeader.version")
        if (name, version) != (SCHEMA_NAME, SCHEMA_VERSION):
            raise ValueError(
                f"Invalid persisted job data: schema {name!r} version {version!r}, expected "
                f"{SCHEMA_NAME!r} version {SCHEMA_VERSION!r}."
            )
    if "dataDictionary" not in obj:
        raise ValueError("Invalid persisted job data: dataDictionary is missing.")
    dictionary = _schema_dict(obj["dataDictionary"])
    if "dataFormat" not in obj:
        raise ValueError("Invalid persisted job data: dataFormat is missing.")
    raw_format = _schema_str(obj["dataFormat"], "dataFormat")
    data_format: PersistedJobDataFormat | str
    try:
        data_format = PersistedJobDataFormat(raw_format)
    except ValueError:
        data_format = raw_format
    return data_format, dictionary


def parse_envelope(
    data: bytes, exact: bool = False
) -> tuple[PersistedJobDataFormat | str, dict[str, Any]]:
    """Parses and validates a whole envelope file's bytes (see ``loads`` for ``exact``).

    Raises:
        ValueError: If the bytes are not a valid envelope.
    """
    return validate_envelope(loads(data, exact))


_TAIL_PICKLED = re.compile(rb'"dataFormat"\s*:\s*"pickled_v4"\s*}\s*$')


def file_is_pickled(path: str) -> bool:
    """Whether the file at ``path`` is pickled, judged from its last bytes (any JSON
    layout): the one such check, for a background save choosing its snapshot's format
    before the file is read whole."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 96))
            tail = f.read()
    except OSError:
        return False
    return _TAIL_PICKLED.search(tail) is not None
