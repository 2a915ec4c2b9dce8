"""Type stubs for the compiled module ``jobpersist._native`` (rust/src/)."""

from collections.abc import Callable
from os import PathLike
from typing import Any, Literal, final

from _typeshed import WriteableBuffer

# convert(path, depth, value): what a plaintext encoder writes for a value it does not write
# itself (``jobpersist._format.conversion.convert_subtree``).
_Convert = Callable[[list[Any], int, Any], Any]

__all__ = [
    "ENVELOPE_HEAD",
    "LIMITS",
    "MAX_DEPTH",
    "PICKLE_PEEK_SIZE",
    "DecodeError",
    "EnvelopeWriter",
    "FileData",
    "FrameError",
    "ValueReader",
    "__version__",
    "_arm_faults",
    "_disarm_faults",
    "_set_spares",
    "_spare_count",
    "base64_isa",
    "encode_json",
    "envelope_tail",
    "open_writer",
    "placeholder",
    "read_file",
]

@final
class EnvelopeWriter:
    """An envelope being written to a temp file beside its target."""

    @property
    def in_memory(self) -> bool: ...
    def write_raw(self, data: bytes) -> None: ...
    def write_key(self, key: str, separator: bool = ...) -> None: ...
    def write_str(self, value: str) -> None: ...
    def write_json(self, key: Any, value: Any, convert: _Convert) -> None: ...
    def begin_b64(self) -> None: ...
    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def end_b64(self) -> None: ...
    def commit(self) -> int | None: ...
    def abort(self) -> None: ...

class DecodeError(ValueError):
    """A value is not strict wrapped base64; the caller decodes it on the exact path."""

class FrameError(ValueError):
    """A pickle read from a file would not read as from bytes: args (offset, frame length)."""

@final
class ValueReader:
    """A binary file over one value's decoded bytes, for ``pickle.Unpickler``."""

    def read(self, size: int = ...) -> bytes: ...
    def readinto(self, buffer: WriteableBuffer) -> int: ...
    def readline(self, size: int = ...) -> bytes: ...
    def peek(self, size: int = ...) -> bytes: ...
    def validate_rest(self) -> None: ...

@final
class FileData:
    """One open file: scanned and read in pieces."""

    def scan_pickled(self) -> tuple[list[str], list[tuple[int, int]]] | None: ...
    def value_reader(self, start: int, end: int) -> ValueReader: ...
    def decode_values(self, spans: list[tuple[int, int]]) -> list[bytes]: ...
    def bytes(self) -> bytes: ...
    def __len__(self) -> int: ...

def read_file(path: str | PathLike[str]) -> FileData: ...
def encode_json(key: Any, value: Any, convert: _Convert) -> bytes: ...
def open_writer(
    path: str | PathLike[str], fsync: bool, scan_stale: bool = True, keep_replaced: bool = False
) -> EnvelopeWriter: ...
def placeholder(size: int) -> bytes: ...
def base64_isa() -> str:
    """The instruction set of the base64 code on this machine: ``"avx2"``, ``"ssse3"``,
    ``"neon"``, ``"simd128"`` or ``"fallback"``."""

def _arm_faults(
    fail_at: int | None = ..., errno: int = ..., interrupt: bool = ..., short_writes: bool = ...
) -> None:
    """Test hook: fails the calling thread's ``fail_at``-th save I/O operation with ``errno``."""

def _disarm_faults() -> tuple[list[str], str | None, int, int]:
    """Test hook: disarms; the operations seen, the one failed, EINTRs and short writes."""

def _set_spares(policy: Literal["off", "where slow", "always"]) -> None:
    """Test hook: when this process's saves use spare files ("off" closes those made)."""

def _spare_count() -> int:
    """Test hook: how many spare files this process holds."""

#: The version this module was built as (Cargo.toml's, as ``jobpersist.__version__``).
__version__: str
#: Containers allowed on one path of a plaintext value (``jobpersist._format.schema.MAX_DEPTH``).
MAX_DEPTH: int
#: How many bytes CPython's unpickler peeks (``jobpersist._codec.python.pickle_frame.PEEK_SIZE``).
PICKLE_PEEK_SIZE: int
#: The sizes both backends share, by name (``jobpersist._codec.python.codec.LIMITS``).
LIMITS: dict[str, int]
#: The envelope text before the first key, as the core's scan expects it.
ENVELOPE_HEAD: bytes

def envelope_tail(label: str) -> bytes:
    """The envelope text after the last value, for the format label ``label``."""
