"""The envelope's fixed text, as ``json.dumps`` lays out the reference's schema."""

from __future__ import annotations

import json

SCHEMA_NAME = "braket.jobs_data.persisted_job_data"
SCHEMA_VERSION = "1"

# Everything before the first key of the data dictionary.
HEAD = (
    b'{"braketSchemaHeader": {"name": "'
    + SCHEMA_NAME.encode()
    + b'", "version": "'
    + SCHEMA_VERSION.encode()
    + b'"}, "dataDictionary": {'
)


def tail(data_format: str) -> bytes:
    """Everything after the data dictionary's last value, for the label ``data_format``
    (any string: escaped as ``json.dumps`` escapes it)."""
    return b'}, "dataFormat": ' + json.dumps(data_format).encode() + b"}"
