"""The data formats of persisted job data, and how a user-supplied ``data_format`` is read.

The reference decides two things from ``data_format``, separately:

* whether the values are pickled: ``data_format == PersistedJobDataFormat.PICKLED_V4``
  (``braket.jobs.serialization.serialize_values``);
* the file's ``dataFormat`` label: pydantic v1 validates the value against the schema's
  ``PersistedJobDataFormat | str`` field, which turns anything it can into a string.

So ``"pickle"``, ``"PICKLED_V4"`` or ``3`` are not errors there: the values are written as
plaintext JSON and the file is labelled ``"pickle"``, ``"PICKLED_V4"``, ``"3"``; such files load
back as plaintext. ``Format`` carries both decisions; ``coerce_format`` makes them as the
reference does.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from decimal import Decimal
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


@dataclasses.dataclass(frozen=True)
class Format:
    """What a save writes: whether the values are pickled, and the ``dataFormat`` label."""

    pickled: bool
    label: str

    @property
    def labels_pickled(self) -> bool:
        """Whether the file will read as pickled (its label is ``pickled_v4``).

        Only this decides how the file is loaded and merged, whatever the values are.
        """
        return self.label == PersistedJobDataFormat.PICKLED_V4.value


PLAINTEXT = Format(False, PersistedJobDataFormat.PLAINTEXT.value)
PICKLED = Format(True, PersistedJobDataFormat.PICKLED_V4.value)


def is_pickled(data_format: Any) -> bool:
    """Whether the reference pickles values for ``data_format`` (it compares with ==)."""
    return bool(data_format == PersistedJobDataFormat.PICKLED_V4)


def _label(data_format: Any) -> str:
    # pydantic v1 tries the union's members in order: the enum (by value, which is what
    # calling the Enum does), then its str validator.
    try:
        return PersistedJobDataFormat(data_format).value
    except (ValueError, TypeError):
        pass
    if isinstance(data_format, str):
        if isinstance(data_format, Enum):
            return str(data_format.value)
        return str.__str__(data_format)
    if isinstance(data_format, (float, int, Decimal)):
        return str(data_format)
    if isinstance(data_format, (bytes, bytearray)):
        try:
            return data_format.decode()
        except UnicodeDecodeError as exc:
            raise _invalid(data_format, f"its bytes are not UTF-8 ({exc})") from None
    raise _invalid(data_format, "it is not a string, a number or bytes")


def _invalid(data_format: Any, why: str) -> ValueError:
    return ValueError(
        f"Invalid data_format {data_format!r}: {why}. Use PersistedJobDataFormat.PLAINTEXT "
        "or PersistedJobDataFormat.PICKLED_V4 (amazon-braket-sdk's schema refuses this value "
        "too, with a pydantic ValidationError)."
    )


def coerce_format(data_format: Any) -> Format:
    """How the reference writes values for ``data_format``: pickled or not, and the label.

    Raises:
        ValueError: If the reference's schema refuses ``data_format`` (``None``, an object
            that is neither a string, a number nor UTF-8 bytes): it raises pydantic's
            ValidationError, a ValueError, there.
    """
    if data_format is None:
        raise _invalid(data_format, "none is not an allowed value")
    if type(data_format) is PersistedJobDataFormat:  # the common case, kept cheap
        return PICKLED if data_format is PersistedJobDataFormat.PICKLED_V4 else PLAINTEXT
    label = _label(data_format)
    pickled = is_pickled(data_format)
    if pickled and label == PICKLED.label:
        return PICKLED
    if not pickled and label == PLAINTEXT.label:
        return PLAINTEXT
    return Format(pickled, label)


@dataclasses.dataclass(frozen=True)
class ResultFormat:
    """``save_job_result``'s ``data_format``, resolved once the saved results are known.

    The reference keeps pickled results pickled whatever was asked (except plaintext, a
    TypeError), and otherwise writes ``data_format or PLAINTEXT``: a falsy value (``None``,
    ``""``, ``0``, ...) means plaintext there.
    """

    requested: Any
    refuses_pickled: bool
    over_plaintext: Format | None
    error: str | None

    def resolve(self, saved_pickled: bool) -> Format:
        """The format of the merged file.

        Raises:
            TypeError: Plaintext was asked for over pickled results.
            ValueError: ``data_format`` is invalid (and the results are not pickled).
        """
        if saved_pickled:
            if self.refuses_pickled:
                value = getattr(self.requested, "value", self.requested)
                raise TypeError(
                    "Cannot update results object serialized with pickled_v4 using data "
                    f"format {value}."
                )
            return PICKLED
        if self.over_plaintext is None:
            raise ValueError(self.error)
        return self.over_plaintext


def result_format(data_format: Any) -> ResultFormat:
    """Reads ``save_job_result``'s ``data_format`` now (see ``ResultFormat``)."""
    refuses = bool(data_format == PersistedJobDataFormat.PLAINTEXT)
    try:
        return ResultFormat(
            data_format,
            refuses,
            coerce_format(data_format or PersistedJobDataFormat.PLAINTEXT),
            None,
        )
    except ValueError as exc:
        return ResultFormat(data_format, refuses, None, str(exc))


def warn_if_not_pickled(
    data_format: Any, fmt: Format, stacklevel: int, written: bool = True
) -> None:
    """Warns when ``data_format`` looks like a request to pickle but ``fmt`` is plaintext.

    The reference writes such values as plaintext JSON without a word; a script that meant
    to pickle finds out only when a value cannot be written, or when it loads strings.
    ``stacklevel`` counts from the caller of this function, as ``warnings.warn``'s does; it
    should point at the user's call, so that the default filter shows the warning once per
    call site. ``written`` is False for ``serialize_values``, which returns the values.
    """
    if fmt is PLAINTEXT or fmt.pickled or "pickle" not in fmt.label.lower():
        return
    what = (
        f'written as plaintext JSON, in a file labelled "dataFormat": {json.dumps(fmt.label)}'
        if written
        else "returned as they are (plaintext)"
    )
    warnings.warn(
        f"data_format={data_format!r} is not PersistedJobDataFormat.PICKLED_V4: the values "
        f"are {what}, as amazon-braket-sdk does. To pickle them, pass "
        "data_format=PersistedJobDataFormat.PICKLED_V4 (or the string 'pickled_v4').",
        UserWarning,
        stacklevel=stacklevel + 1,
    )
