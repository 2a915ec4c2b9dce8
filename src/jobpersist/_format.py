"""The data formats of persisted job data and the coercion of user-supplied formats."""

from __future__ import annotations

from enum import Enum
from typing import Any


class PersistedJobDataFormat(str, Enum):
    """Enum class for the required formats.

    Members compare equal to their plain string values and to the members of
    ``braket.jobs_data.PersistedJobDataFormat``, so either may be passed anywhere.
    """

    PLAINTEXT = "plaintext"
    # Pickle data format with protocol version 4 (Data is base64 encoded after pickling)
    PICKLED_V4 = "pickled_v4"


_BY_VALUE = {member.value: member for member in PersistedJobDataFormat}


def coerce_format(data_format: Any) -> PersistedJobDataFormat:
    """Returns our member for ``data_format``: one of ours, the reference's, or a plain string.

    Raises:
        TypeError: If ``data_format`` names no supported format.
    """
    # The reference's enum is a str Enum too: its members carry the same values as ours.
    value = data_format.value if isinstance(data_format, Enum) else data_format
    if isinstance(value, str):
        member = _BY_VALUE.get(value)
        if member is not None:
            return member
    raise TypeError(
        f"Unsupported data format {data_format!r}: expected one of "
        + ", ".join(f"PersistedJobDataFormat.{m.name}" for m in PersistedJobDataFormat)
        + " or their string values "
        + ", ".join(repr(v) for v in _BY_VALUE)
        + "."
    )
