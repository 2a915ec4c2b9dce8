"""The envelope's fixed text, as ``json.dumps`` lays out the reference's schema, and the
nesting limit of plaintext values.

The Rust core holds the same text and limit (``jobpersist_core::HEAD``, ``tail``,
``MAX_DEPTH``); ``jobpersist._native`` exposes them, and tests/test_fast_path.py checks that
both sides agree.
"""

from __future__ import annotations

import functools
import json

SCHEMA_NAME = "braket.jobs_data.persisted_job_data"
SCHEMA_VERSION = "1"

# Plaintext values nested deeper than this are refused (ValueError) by both backends; the
# reference itself fails near 495 levels (RecursionError).
MAX_DEPTH = 512

# Everything before the first key of the data dictionary.
HEAD = (
    b'{"braketSchemaHeader": {"name": "'
    + SCHEMA_NAME.encode()
    + b'", "version": "'
    + SCHEMA_VERSION.encode()
    + b'"}, "dataDictionary": {'
)


@functools.lru_cache(maxsize=64)  # (0.3 us a save otherwise; any string can be a label)
def tail(data_format: str) -> bytes:
    """Everything after the data dictionary's last value, for the label ``data_format``
    (any string: escaped as ``json.dumps`` escapes it)."""
    return b'}, "dataFormat": ' + json.dumps(data_format).encode() + b"}"
