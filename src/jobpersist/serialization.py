"""Serialization of data dictionary values, as ``braket.jobs.serialization`` does it."""

from __future__ import annotations

import base64
import pickle
from typing import Any, Literal

from jobpersist._format.data_format import (
    PersistedJobDataFormat,
    coerce_format,
    is_pickled,
    warn_if_not_pickled,
)
from jobpersist._pickle.policy import (
    ALLOW_PICKLE_DEFAULT,
    decode_pickled_text,
    pickle_mode,
    require_pickle_allowed,
    safe_unpickle_value,
    unpickle_value,
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


def deserialize_values(
    data_dictionary: dict[str, Any],
    data_format: PersistedJobDataFormat,
    allow_pickle: bool | Literal["safe"] = ALLOW_PICKLE_DEFAULT,
) -> dict[str, Any]:
    """Deserializes the `data_dictionary` values from the format specified by `data_format`.

    Args:
        data_dictionary (dict[str, Any]): Dict whose values are to be deserialized.
        data_format (PersistedJobDataFormat): The data format that the `data_dictionary` values
            are currently serialized with.
        allow_pickle (bool | Literal["safe"]): Whether to allow deserialization of pickled
            data. Pickle deserialization can execute arbitrary code and is unsafe on
            untrusted data. `"safe"` loads plain data only (numbers, strings, containers,
            datetime values, numpy arrays and scalars of numeric dtypes, PennyLane tensors)
            and runs no code from the data. Default: False, or `"safe"` when the environment
            variable `JOBPERSIST_ALLOW_PICKLE` is `safe`.

    Returns:
        dict[str, Any]: Dict with same keys as `data_dictionary` and values deserialized from
        the specified `data_format` to plaintext.

    Raises:
        RuntimeError: If data format is PICKLED_V4 and allow_pickle is False.
        UnsafePickleError: (a ValueError) If allow_pickle is "safe" and a value needs
            anything beyond plain data.
        ValueError: If a pickled value is not valid base64 or cannot be unpickled, or if
            allow_pickle (or `JOBPERSIST_ALLOW_PICKLE`) is not a mode.
    """
    mode = pickle_mode(allow_pickle)
    # As in amazon-braket-sdk: anything but PICKLED_V4 (by ==) is plaintext.
    if is_pickled(data_format):
        require_pickle_allowed(mode)
        load = unpickle_value if mode == "full" else safe_unpickle_value
        return {k: load(k, decode_pickled_text(k, v)) for k, v in data_dictionary.items()}
    return data_dictionary
