"""The pure-Python codec's own exceptions (twin of the glue's ``errors.rs``)."""

from __future__ import annotations


class FrameError(ValueError):
    """A pickle read from a file would not read as from bytes: args (offset, frame length)."""


class DecodeError(ValueError):
    """A value is not strict wrapped base64; the caller decodes it on the exact path."""
