"""The results file's read-merge-write cycle, shared by synchronous and background saves."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jobpersist import _codec
from jobpersist._durability import Durability
from jobpersist._format.conversion import coerce_keys
from jobpersist._format.data_format import Format, PersistedJobDataFormat, ResultFormat
from jobpersist._format.envelope import RawPickled, parse_envelope, write_envelope


def merge_results(
    path: str,
    requested: ResultFormat,
    new_values: Callable[[Format], dict[Any, Any]],
    durability: Durability,
) -> Format:
    """Merges new values over the saved results at ``path`` (new keys win), under a lock.

    The format is chosen as the reference chooses it (``requested.resolve``): pickled
    results stay pickled, else the requested format or plaintext. ``new_values(format)``
    gives the values to merge, in (or ready to be written in) that format. Saved pickled
    values are copied as they are.

    Returns:
        Format: The format the file was written in.

    Raises:
        TypeError: If plaintext was requested and the saved results are pickled.
        ValueError: If the saved results file is damaged, or the requested format invalid.
        OSError: If the file cannot be read or written.
    """
    with locked_directory(os.path.dirname(path) or "."):
        # Plaintext results about to be pickled are parsed exactly as the reference parses
        # them: pickle's memo depends on which equal strings are one object.
        pickles = requested.over_plaintext is not None and requested.over_plaintext.pickled
        existing_format, existing = read_existing_results(path, exact=pickles)
        data_format = requested.resolve(existing_format is PersistedJobDataFormat.PICKLED_V4)
        merged = coerce_keys(existing | new_values(data_format))
        write_envelope(path, merged.items(), data_format, durability)
        return data_format


def read_existing_results(
    path: str, exact: bool
) -> tuple[PersistedJobDataFormat | str, dict[str, Any]]:
    try:
        file = _codec.CODEC.read_file(path)
    except FileNotFoundError:
        return PersistedJobDataFormat.PLAINTEXT, {}
    data = file.bytes()
    data_format, dictionary = parse_envelope(data, exact)
    if data_format is PersistedJobDataFormat.PICKLED_V4:
        for key, value in dictionary.items():
            if not isinstance(value, str):
                raise ValueError(
                    f"Cannot update results: the value of key {key!r} in {path} is not a "
                    "base64 string."
                )
        return data_format, {k: RawPickled(v) for k, v in dictionary.items()}
    return data_format, dictionary


@contextmanager
def locked_directory(directory: str) -> Iterator[None]:
    # The directory itself is the lock, so no lock file ever appears among the results.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
