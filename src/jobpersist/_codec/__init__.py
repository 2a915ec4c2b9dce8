"""The internal codec interface and the choice, made once at import, of its implementation.

A codec writes envelope files. ``jobpersist._native`` (Rust) and ``jobpersist._codec.python`` (pure
Python) implement it with identical output; ``JOBPERSIST_BACKEND=native|python`` forces one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

Buffer = bytes | bytearray | memoryview
#: ``convert(path, depth, value)``: what a plaintext encoder writes for a value it does not
#: write itself (``jobpersist._format.conversion.convert_subtree``; passed in, so neither encoder
#: looks the conversion up by name).
Convert = Callable[[list[Any], int, Any], Any]


class EnvelopeWriter(Protocol):
    """Streams one envelope file: raw JSON text, keys, strings and base64 values.

    Nothing is visible at the target path before ``commit``; ``abort`` leaves no trace.
    """

    @property
    def in_memory(self) -> bool:
        """Whether the target's filesystem keeps its files in memory (tmpfs, ramfs), where
        no fsync makes a file durable. Known when a file is being replaced (its device is at
        hand then); False otherwise."""

    def write_raw(self, data: bytes) -> None:
        """Appends ASCII JSON text as it is."""

    def write_key(self, key: str, separator: bool = False) -> None:
        """Appends ``key`` as a JSON string (``ensure_ascii`` escapes) and ``": "``, after
        ``", "`` when ``separator``."""

    def write_str(self, value: str) -> None:
        """Appends ``value`` as a JSON string (``ensure_ascii`` escapes)."""

    def write_json(self, key: Any, value: Any, convert: Convert) -> None:
        """Appends the JSON text the reference writes for ``value`` (under top-level ``key``),
        converting what JSON cannot hold with ``convert``.

        Raises:
            TypeError: If the value has no JSON form (the message names its key path).
            ValueError: On a circular reference or nesting deeper than the limit.
        """

    def begin_b64(self) -> None:
        """Opens a JSON string that will hold ``base64.encodebytes`` of the bytes written."""

    def write(self, data: Buffer, /) -> int:
        """Appends bytes to the open base64 string (the ``pickle.Pickler`` file protocol)."""

    def end_b64(self) -> None:
        """Closes the base64 string, with its final line break as ``encodebytes`` writes it."""

    def commit(self) -> int | None:
        """Replaces the target with what was written: fsync, rename, fsync the directory
        (without the fsyncs when the writer was opened without). Returns the replaced file's
        descriptor when the writer was opened with ``keep_replaced`` (closing it frees the
        file), else None."""

    def abort(self) -> None:
        """Removes the temp file, leaving the target as it was."""


class ValueReader(Protocol):
    """A binary file over one value's decoded bytes."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: bytearray | memoryview, /) -> int: ...

    def readline(self, size: int = -1, /) -> bytes: ...

    def peek(self, size: int = 1, /) -> bytes:
        """Up to ``size`` of the next bytes, not read: with it, CPython's unpickler reads
        frames as ``pickle.loads`` does (``jobpersist._codec.python.pickle_frame``)."""

    def validate_rest(self) -> None:
        """Decodes what the unpickler left unread, to check that it is valid too."""


class FileData(Protocol):
    """One file's bytes, read once."""

    def scan_pickled(self) -> tuple[list[str], list[tuple[int, int]]] | None:
        """Fast path for a canonical pickled envelope: its keys and the spans of their values.

        Returns None for any other layout; the caller then parses ``bytes()`` in full.
        """

    def value_reader(self, start: int, end: int) -> ValueReader:
        """A binary file (for ``pickle.Unpickler``) of the bytes the wrapped base64 in the
        file's ``[start, end)`` encodes. Reading it raises the codec's ``DecodeError`` for
        anything but strict base64 with ``\\n`` (or ``\\r\\n``) escapes; the caller then
        takes the exact path."""

    def decode_values(self, spans: list[tuple[int, int]]) -> list[bytes]:
        """The decoded bytes of each span, whole: for small values, where a reader each
        would cost more than the value. Raises ``DecodeError`` as the readers do."""

    def bytes(self) -> bytes:
        """The whole file."""


class Codec(Protocol):
    """What each backend provides."""

    @property
    def DecodeError(self) -> type[ValueError]:
        """Raised by a value reader for input the strict decoder refuses."""

    @property
    def FrameError(self) -> type[ValueError]:
        """Raised by a value reader's ``read(n)`` for a frame that an opcode crosses:
        ``args`` are the opcode's offset in the pickle and the frame's length."""

    def encode_json(self, key: Any, value: Any, convert: Convert) -> bytes:
        """The JSON text the reference writes for ``value`` (under top-level ``key``),
        converting what JSON cannot hold with ``convert``."""

    def open_writer(
        self, path: str, fsync: bool, scan_stale: bool = True, keep_replaced: bool = False
    ) -> EnvelopeWriter:
        """Starts an atomic write of ``path``: with ``fsync``, ``commit`` flushes the file
        before the rename and the directory after it; with ``scan_stale``, the temps that
        dead writers left beside ``path`` are removed first; with ``keep_replaced``,
        ``commit`` keeps the replaced file open and returns it, for the caller to free (close)
        off its path: freeing a file is most of a small save's rename."""

    def placeholder(self, size: int) -> bytes:
        """A new ``bytes`` of ``size`` whose contents are left uninitialised (none of its
        pages touched): it stands in for an array's data, which the writer writes instead."""

    def read_file(self, path: str) -> FileData:
        """Reads the file at ``path``.

        Raises:
            OSError: If it cannot be read (FileNotFoundError when it does not exist).
        """


def _select() -> tuple[str, Codec]:
    forced = os.environ.get("JOBPERSIST_BACKEND", "").strip().lower()
    if forced not in ("", "native", "python"):
        raise ImportError(
            f"JOBPERSIST_BACKEND={forced!r} is not a backend: use 'native' or 'python'."
        )
    if forced != "python":
        try:
            from jobpersist import _native
        except ImportError as exc:
            if forced == "native":
                raise ImportError(
                    "JOBPERSIST_BACKEND=native, but the compiled module jobpersist._native "
                    "cannot be imported. Build it with `pip install .` (or `maturin develop "
                    "--release`) from a source checkout, with a Rust toolchain installed."
                ) from exc
        else:
            return "native", _native
    from jobpersist._codec.python import codec as _python_codec

    return "python", _python_codec


BACKEND: str
CODEC: Codec
BACKEND, CODEC = _select()


def use(name: str) -> None:
    """Switches the codec in use (for tests and benchmarks comparing backends)."""
    global BACKEND, CODEC
    codec: Codec
    if name == "native":
        from jobpersist import _native

        codec = _native
    elif name == "python":
        from jobpersist._codec.python import codec as _python_codec

        codec = _python_codec
    else:
        raise ValueError(f"unknown backend {name!r}")
    BACKEND, CODEC = name, codec
