"""The pure-Python codec as ``jobpersist._codec`` uses it: the ``Codec`` interface."""

from jobpersist._codec.python import (
    atomic_file,
    base64_lines,
    envelope_writer,
    file_data,
    in_memory_fs,
    spare_files,
)
from jobpersist._codec.python.envelope_writer import encode_json, open_writer
from jobpersist._codec.python.errors import DecodeError, FrameError
from jobpersist._codec.python.file_data import read_file
from jobpersist._codec.python.pages import placeholder
from jobpersist._codec.python.pickle_frame import PEEK_SIZE
from jobpersist._format.schema import MAX_DEPTH

__all__ = ["DecodeError", "FrameError", "encode_json", "open_writer", "placeholder", "read_file"]

#: The sizes both backends share, by name: ``jobpersist._native.LIMITS`` holds the Rust
#: codec's, and a test checks the two are equal.
LIMITS = {
    "line_chars": base64_lines.LINE_CHARS,
    "line_input_bytes": base64_lines.LINE_BYTES,
    "flush_at": envelope_writer.FLUSH_AT,
    "reserve_at": envelope_writer.RESERVE_AT,
    "reserve_slack": envelope_writer.RESERVE_SLACK,
    "reserve_ahead": atomic_file.RESERVE_AHEAD,
    "read_whole_max": file_data.SMALL_FILE,
    "pickle_peek_size": PEEK_SIZE,
    "max_depth": MAX_DEPTH,
    "max_spares": spare_files.MAX_SPARES,
    "slow_create_ns": spare_files.SLOW_CREATE_NS,
    "keep_anyway_at": in_memory_fs.KEEP_ANYWAY_AT,
}
