"""Whether and how a pickled value may be loaded (``allow_pickle``), and loading one.

``pickle_mode`` reads what the caller asked for (the reference's ``allow_pickle``, plus
``"safe"`` and ``JOBPERSIST_ALLOW_PICKLE``); the ``unpickle_*`` functions load one value, in
memory or as its base64 is decoded, and word every failure with the value's key.
"""

from __future__ import annotations

import base64
import os
import pickle
from typing import Any, Literal

from jobpersist._codec.python.pickle_frame import describe_crossing
from jobpersist._pickle.safe import SafeLoaderBug, UnsafePickleError, safe_load_stream, safe_loads

PICKLE_DISABLED_MESSAGE = (
    "Data is in PICKLED_V4 format, but pickle deserialization is disabled by "
    "default due to security concerns. Pickle deserialization can execute arbitrary "
    "code and is unsafe on untrusted data. To enable pickle deserialization, pass "
    "allow_pickle=True to the calling function (e.g. job.result(allow_pickle=True), "
    "load_job_result(allow_pickle=True), or load_job_checkpoint(allow_pickle=True)). "
    "Only do this if you trust the source of the data."
)


class _FalseUnlessEnvironment:
    """The default of ``allow_pickle``: False, unless ``JOBPERSIST_ALLOW_PICKLE=safe``.

    It is falsy, equals False and shows as False, so signatures read as the reference's;
    only ``pickle_mode`` tells it from an explicit False (which the variable never changes).
    """

    __slots__ = ()

    def __bool__(self) -> bool:
        return False

    def __eq__(self, other: object) -> bool:
        return other is False or other is self

    def __hash__(self) -> int:
        return hash(False)

    def __repr__(self) -> str:
        return "False"


ALLOW_PICKLE_DEFAULT: Any = _FalseUnlessEnvironment()
ALLOW_PICKLE_ENV = "JOBPERSIST_ALLOW_PICKLE"

PickleMode = Literal["refuse", "full", "safe"]


def pickle_mode(allow_pickle: Any) -> PickleMode:
    """What ``allow_pickle`` asks for: ``"refuse"`` (falsy), ``"full"`` (any other truthy
    value except a string, as in the reference) or ``"safe"`` (the string ``"safe"``). The
    default follows ``JOBPERSIST_ALLOW_PICKLE`` (unset, empty, ``false`` or ``0``: refuse;
    ``safe``), read at each call.

    Raises:
        ValueError: If ``allow_pickle`` is a string other than ``"safe"``, or the
            environment variable holds anything else (full pickle cannot be turned on
            from the environment).
    """
    if allow_pickle is ALLOW_PICKLE_DEFAULT:
        setting = os.environ.get(ALLOW_PICKLE_ENV, "").strip().lower()
        if setting == "safe":
            return "safe"
        if setting in ("", "0", "false"):
            return "refuse"
        raise ValueError(
            f"{ALLOW_PICKLE_ENV}={os.environ[ALLOW_PICKLE_ENV]!r} is not a setting: use "
            f"'safe' (load plain-data pickles by default), or unset it. Full unpickling "
            "runs the file's code, so only an explicit allow_pickle=True turns it on."
        )
    if isinstance(allow_pickle, str):
        if allow_pickle == "safe":
            return "safe"
        raise ValueError(
            f"allow_pickle={allow_pickle!r} is not a mode: pass False (refuse pickled data), "
            'True (unpickle anything: runs the file\'s code) or "safe" (plain data only).'
        )
    return "full" if allow_pickle else "refuse"


def require_pickle_allowed(mode: PickleMode) -> None:
    """Raises the reference's RuntimeError unless the caller allowed unpickling."""
    if mode == "refuse":
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


def safe_unpickle_value(key: str, payload: bytes) -> Any:
    """Safe mode's load of one value: ``UnsafePickleError`` (a ValueError) and
    ``SafeLoaderBug`` (a bug, not a damaged file) pass as they are, a damaged pickle becomes a
    ValueError naming the key."""
    try:
        return safe_loads(key, payload)
    except (UnsafePickleError, SafeLoaderBug):
        raise
    except Exception as exc:
        raise _unpickling_failed(key, exc) from exc


def safe_unpickle_stream(key: str, reader: Any, decode_error: type[ValueError], limit: int) -> Any:
    """``unpickle_stream`` in safe mode; ``limit`` bounds the value's decoded length."""
    try:
        value = safe_load_stream(key, reader, limit, decode_error)
    except (decode_error, UnsafePickleError, SafeLoaderBug):
        raise
    except Exception as exc:
        raise _unpickling_failed(key, exc) from exc
    reader.validate_rest()
    return value


def frame_crossed(key: str, exc: ValueError) -> ValueError:
    """The refusal of a value whose pickle a file reader would read differently from
    ``pickle.loads`` (``exc``: a codec's ``FrameError(offset, frame length)``)."""
    return ValueError(
        f"Cannot deserialize the value of key {key!r}: {describe_crossing(*exc.args)}; "
        "refused before that opcode runs."
    )


def unpickle_stream(
    key: str, reader: Any, decode_error: type[ValueError], frame_error: type[ValueError]
) -> Any:
    """``pickle.Unpickler(reader).load()`` of one value, read as it is decoded.

    The reader's ``peek`` makes the unpickler read the pickle as ``pickle.loads`` reads
    the same bytes; a frame it cannot read so (``frame_error``) is refused. ``decode_error``
    (the base64 reader's own) passes through for the caller's exact path; any other failure
    becomes a ValueError naming the key. What the unpickler leaves unread is checked too,
    since the reference decodes a value whole before unpickling it.
    """
    try:
        value = pickle.Unpickler(reader).load()  # noqa: S301 - only with allow_pickle=True
    except decode_error:
        raise
    except frame_error as exc:
        raise frame_crossed(key, exc) from exc
    except Exception as exc:
        raise _unpickling_failed(key, exc) from exc
    reader.validate_rest()
    return value


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
