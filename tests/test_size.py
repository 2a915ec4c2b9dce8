"""The one size parser (``JOBPERSIST_MAX_PENDING_BYTES`` and ``bench --size``): a bare number
is bytes, units are binary."""

from __future__ import annotations

import pytest

from jobpersist._size import parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("16", 16),
        (" 1073741824 ", 1 << 30),
        ("4K", 4 << 10),
        ("4kb", 4 << 10),
        ("4KiB", 4 << 10),
        ("512M", 512 << 20),
        ("1.5M", 3 << 19),
        ("2GiB", 2 << 30),
        ("1t", 1 << 40),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1.1M", "1.5", "0.0001K"])
def test_fractions_of_a_byte_refused(text: str) -> None:
    with pytest.raises(ValueError, match="whole number of bytes"):
        parse_size(text)


@pytest.mark.parametrize("text", ["", "lots", "-1", "4 X", "1e6", "M", "1.M"])
def test_not_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)
