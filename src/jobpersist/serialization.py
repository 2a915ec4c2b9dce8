"""Serialization of data dictionary values, as ``braket.jobs.serialization`` does it."""

from __future__ import annotations

import base64
import binascii
import pickle
import sys
from typing import Any

from jobpersist._format import (
    PersistedJobDataFormat,
    coerce_format,
    is_pickled,
    warn_if_not_pickled,
)

PICKLE_DISABLED_MESSAGE = (
    "Data is in PICKLED_V4 format, but pickle deserialization is disabled by "
    "default due to security concerns. Pickle deserialization can execute arbitrary "
    "code and is unsafe on untrusted data. To enable pickle deserialization, pass "
    "allow_pickle=True to the calling function (e.g. job.result(allow_pickle=True), "
    "load_job_result(allow_pickle=True), or load_job_checkpoint(allow_pickle=True)). "
    "Only do this if you trust the source of the data."
)


def serialize_values(
    data_dictionary: dict[str, Any], data_format: PersistedJobDataFormat
) -> dict[str, Any]:
    """Serializes the `data_dictionary` values to the format specified by `data_format`.

    Args:
        data_dictionary (dict[str, Any]): Dict whose values are to be serialized.
        data_format (PersistedJobDataFormat): The data format used to serialize the
            values. Note that for `PICKLED` data formats, the values are base64 encoded
            after serialization, so that they represent valid UTF-8 text. Any value that
            does not equal `PersistedJobDataFormat.PICKLED_V4` means plaintext, as in
            amazon-braket-sdk (with a `UserWarning` for one that looks like a request to
            pickle, such as `"pickle"`).

    Returns:
        dict[str, Any]: Dict with same keys as `data_dictionary` and values serialized to
        the specified `data_format`. For plaintext this is `data_dictionary` itself.
    """
    if is_pickled(data_format):
        return {
            k: base64.encodebytes(pickle.dumps(v, protocol=4)).decode()
            for k, v in data_dictionary.items()
        }
    try:
        fmt = coerce_format(data_format)
    except ValueError:
        pass  # only a save validates the format, as in the reference
    else:
        warn_if_not_pickled(data_format, fmt, stacklevel=2, written=False)
    return data_dictionary


def require_pickle_allowed(allow_pickle: bool) -> None:
    """Raises the reference's RuntimeError unless the caller allowed unpickling."""
    if not allow_pickle:
        raise RuntimeError(PICKLE_DISABLED_MESSAGE)


def _unpickling_failed(key: str, exc: Exception) -> ValueError:
    return ValueError(
        f"Cannot deserialize the value of key {key!r}: unpickling failed "
        f"({type(exc).__name__}: {exc})."
    )


def unpickle_value(key: str, payload: bytes) -> Any:
    """``pickle.loads`` of one value; any failure becomes a ValueError naming the key."""
    try:
        return pickle.loads(payload)  # noqa: S301 - only reached with allow_pickle=True
    except Exception as exc:
        raise _unpickling_failed(key, exc) from exc


def unpickle_stream(key: str, reader: Any, decode_error: type[ValueError]) -> Any:
    """``pickle.Unpickler(reader).load()`` of one value, read as it is decoded.

    ``decode_error`` (the base64 reader's own) passes through for the caller's exact path;
    any other failure becomes a ValueError naming the key. What the unpickler leaves unread
    is checked too, since the reference decodes a value whole before unpickling it.
    """
    try:
        value = pickle.Unpickler(reader).load()  # noqa: S301 - only with allow_pickle=True
    except decode_error:
        raise
    except Exception as exc:
        raise _unpickling_failed(key, exc) from exc
    reader.validate_rest()
    return value


if sys.version_info >= (3, 11):

    def strict_b64decode(text: bytes) -> bytes:
        """Base64 without line breaks or any other stray character (``binascii.Error``)."""
        return binascii.a2b_base64(text, strict_mode=True)

else:  # pragma: no cover - strict_mode is new in 3.11

    def strict_b64decode(text: bytes) -> bytes:
        """Base64 without line breaks or any other stray character (``binascii.Error``)."""
        return base64.b64decode(text, validate=True)


def decode_pickled_text(key: str, text: Any) -> bytes:
    """The pickle bytes held by one base64 value as the reference decodes it.

    Raises:
        ValueError: If the value is not a string of valid base64.
    """
    if not isinstance(text, str):
        raise ValueError(
            f"Cannot deserialize the value of key {key!r}: expected a base64 string, "
            f"not {type(text).__name__}."
        )
    try:
        return base64.decodebytes(text.encode())
    except ValueError as exc:  # binascii.Error and UnicodeEncodeError are ValueErrors
        raise ValueError(
            f"Cannot deserialize the value of key {key!r}: invalid base64 ({exc})."
        ) from exc


def deserialize_values(
    data_dictionary: dict[str, Any],
    data_format: PersistedJobDataFormat,
    allow_pickle: bool = False,
) -> dict[str, Any]:
    """Deserializes the `data_dictionary` values from the format specified by `data_format`.

    Args:
        data_dictionary (dict[str, Any]): Dict whose values are to be deserialized.
        data_format (PersistedJobDataFormat): The data format that the `data_dictionary` values
            are currently serialized with.
        allow_pickle (bool): Whether to allow deserialization of pickled data. Pickle
            deserialization can execute arbitrary code and is unsafe on untrusted data.
            Default: False.

    Returns:
        dict[str, Any]: Dict with same keys as `data_dictionary` and values deserialized from
        the specified `data_format` to plaintext.

    Raises:
        RuntimeError: If data format is PICKLED_V4 and allow_pickle is False.
        ValueError: If a pickled value is not valid base64 or cannot be unpickled.
    """
    # As in amazon-braket-sdk: anything but PICKLED_V4 (by ==) is plaintext.
    if is_pickled(data_format):
        require_pickle_allowed(allow_pickle)
        return {k: unpickle_value(k, decode_pickled_text(k, v)) for k, v in data_dictionary.items()}
    return data_dictionary
