"""The pure-Python codec as ``jobpersist._codec`` uses it: the ``Codec`` interface."""

from jobpersist._codec.python.envelope_writer import encode_json, open_writer
from jobpersist._codec.python.errors import DecodeError, FrameError
from jobpersist._codec.python.file_data import read_file
from jobpersist._codec.python.pages import placeholder

__all__ = ["DecodeError", "FrameError", "encode_json", "open_writer", "placeholder", "read_file"]
