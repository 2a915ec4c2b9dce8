"""Loading pickled values as they are decoded: hostile lengths, many values, odd layouts."""

from __future__ import annotations

import base64
import json
import pickle
import struct

import pytest

import jobpersist

HEAD = {"name": "braket.jobs_data.persisted_job_data", "version": "1"}


def envelope(values: dict[str, bytes]) -> bytes:
    data = {k: base64.encodebytes(v).decode() for k, v in values.items()}
    doc = {"braketSchemaHeader": HEAD, "dataDictionary": data, "dataFormat": "pickled_v4"}
    return json.dumps(doc).encode()


@pytest.mark.usefixtures("backend")
def test_a_pickle_claiming_terabytes_is_a_value_error(job_env) -> None:  # type: ignore[no-untyped-def]
    # PROTO 4, BINBYTES8 with a length of 4 TiB, then a few bytes and STOP.
    hostile = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 42) + b"abc."
    job_env.results_path.write_bytes(envelope({"x": hostile}))
    with pytest.raises(ValueError):
        jobpersist.load_job_result(allow_pickle=True)


@pytest.mark.usefixtures("backend")
def test_many_values_and_trailing_bytes(job_env) -> None:  # type: ignore[no-untyped-def]
    values = {f"k{i}": list(range(i)) for i in range(300)}
    payloads = {k: pickle.dumps(v, protocol=4) for k, v in values.items()}
    # Bytes after STOP are ignored by pickle.loads, so by us too (they must be valid base64).
    payloads["k7"] += b"trailing bytes"
    job_env.results_path.write_bytes(envelope(payloads))
    assert jobpersist.load_job_result(allow_pickle=True) == values


@pytest.mark.usefixtures("backend")
def test_invalid_base64_after_the_pickle_is_a_value_error(job_env) -> None:  # type: ignore[no-untyped-def]
    text = envelope({"a": pickle.dumps(1, protocol=4)})
    # Garbage after the value's padding: the reference's decodebytes ignores it only in
    # part; either way the strict reader refuses and the exact path decides, as it would.
    damaged = text.replace(b'\\n"', b'\\nQ"', 1)
    job_env.results_path.write_bytes(damaged)
    from braket.jobs.data_persistence import load_job_result as reference_load

    try:
        expected = reference_load(job_env.results_path, allow_pickle=True)
    except ValueError:
        with pytest.raises(ValueError):
            jobpersist.load_job_result(allow_pickle=True)
    else:
        assert jobpersist.load_job_result(allow_pickle=True) == expected
