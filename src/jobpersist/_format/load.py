"""Loading a file: its data dictionary, its pickled values loaded as the caller allows.

A canonical pickled envelope (what every save writes) is scanned without parsing its JSON;
small values are decoded whole, large ones stream into the unpickler as they are decoded.
Anything else is parsed as the reference parses it (``envelope.parse_envelope``).
"""

from __future__ import annotations

from typing import Any

from jobpersist import _codec
from jobpersist._format.data_format import PersistedJobDataFormat
from jobpersist._format.envelope import parse_envelope
from jobpersist._pickle.policy import (
    PickleMode,
    decode_pickled_text,
    require_pickle_allowed,
    safe_unpickle_stream,
    safe_unpickle_value,
    unpickle_stream,
    unpickle_value,
)
from jobpersist._pickle.safe import UnsafePickleError

# Values whose base64 text is at least this long are decoded as they are unpickled.
_STREAM_AT = 1 << 20


def load_file(path: str, mode: PickleMode) -> dict[str, Any]:
    """The file's data dictionary, its pickled values loaded as ``mode`` says.

    Raises:
        RuntimeError: If the values are pickled and ``mode`` is ``"refuse"``.
        UnsafePickleError: If ``mode`` is ``"safe"`` and a value needs more than plain data.
        ValueError: If the file is damaged.
        OSError: If it cannot be read.
    """
    file = _codec.CODEC.read_file(path)
    scanned = file.scan_pickled()
    if scanned is None:
        return _decode_parsed(parse_envelope(file.bytes()), mode)
    keys, spans = scanned
    if mode == "refuse":
        # The scan checks the layout, not every value's characters: a damaged file must
        # still be a ValueError, as the reference's parse makes it, before the refusal.
        parse_envelope(file.bytes())
        require_pickle_allowed(mode)
    codec = _codec.CODEC
    safe = mode == "safe"
    load = safe_unpickle_value if safe else unpickle_value

    def stream(key: str, start: int, end: int) -> Any:
        reader = file.value_reader(start, end)
        if safe:
            # Base64 holds at most 3 bytes per 4 characters: a bound on what it decodes to.
            return safe_unpickle_stream(key, reader, codec.DecodeError, (end - start) // 4 * 3 + 3)
        return unpickle_stream(key, reader, codec.DecodeError, codec.FrameError)

    try:
        # Small values are decoded whole in one call; big ones stream into the unpickler.
        small = [i for i, (start, end) in enumerate(spans) if end - start < _STREAM_AT]
        payloads = dict(zip(small, file.decode_values([spans[i] for i in small]), strict=True))
        return {
            key: load(key, payloads[i]) if i in payloads else stream(key, *spans[i])
            for i, key in enumerate(keys)
        }
    except codec.DecodeError as strict:
        # Valid JSON need not be strict base64 (other escapes, stray characters): the
        # exact path decodes it as the reference does, or fails as it does.
        del file
        with open(path, "rb") as f:
            data = f.read()
        try:
            return _decode_parsed(parse_envelope(data), mode)
        except UnsafePickleError:
            raise
        except ValueError as exc:
            raise ValueError(f"{exc} [{strict}]") from exc


def _decode_parsed(
    parsed: tuple[PersistedJobDataFormat | str, dict[str, Any]], mode: PickleMode
) -> dict[str, Any]:
    """The parsed file's data dictionary, its pickled values loaded as ``mode`` says.

    Raises:
        RuntimeError: If the values are pickled and ``mode`` is ``"refuse"``.
        UnsafePickleError: If ``mode`` is ``"safe"`` and a value needs more than plain data.
        ValueError: If a value is damaged.
    """
    data_format, dictionary = parsed
    if data_format is PersistedJobDataFormat.PICKLED_V4:
        require_pickle_allowed(mode)
        load = unpickle_value if mode == "full" else safe_unpickle_value
        return {k: load(k, decode_pickled_text(k, v)) for k, v in dictionary.items()}
    return dictionary
