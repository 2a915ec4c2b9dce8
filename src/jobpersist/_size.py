"""The one reader of sizes people type: ``JOBPERSIST_MAX_PENDING_BYTES`` and ``bench --size``.

A size is a number of **bytes**, optionally followed by a binary unit: ``K``, ``M``, ``G`` or
``T`` (KiB, MiB, GiB, TiB: powers of 1024), with or without a trailing ``B``/``iB``, in any
case (``4096``, ``512K``, ``16M``, ``2GiB``, ``1.5m``). A bare number is always bytes; a
fraction needs a unit and must come to a whole number of bytes.
"""

from __future__ import annotations

import re

__all__ = ["SIZE_HELP", "parse_size"]

#: How the accepted forms are described in error messages and ``--help``.
SIZE_HELP = "bytes, or with a binary unit: 4096, 512K, 16M, 2GiB (K/M/G/T = 1024^1..4)"

_SIZE_RE = re.compile(r"^\s*(\d+)(?:\.(\d+))?\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """The byte count ``text`` describes.

    Args:
        text (str): A number of bytes, optionally with a binary unit (``512K``, ``2GiB``).

    Returns:
        int: The number of bytes (zero or more).

    Raises:
        ValueError: If ``text`` is not such a size, or names a fraction of a byte.
    """
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size ({SIZE_HELP})")
    whole: str = match.group(1)
    fraction: str = match.group(2) or ""
    unit: str = match.group(3)
    # Exact integer arithmetic, not float: "1.1M" is 1153433.6 bytes, refused, never rounded.
    scaled = int(whole + fraction) * _UNITS[unit.lower()]
    divisor: int = 10 ** len(fraction)
    size, remainder = divmod(scaled, divisor)
    if remainder:
        raise ValueError(f"{text!r} is not a whole number of bytes")
    return size
