"""The pure-Python codec's fast paths: the encoder's line splitting, the two envelope scans,
the value reader's canonical-line steps, and what must leave them for the exact path."""

from __future__ import annotations

import base64
import json
import os
import pickle
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import jobpersist
from jobpersist import _codec
from jobpersist._codec.python import base64_lines, base64_stream, envelope_scan, file_data
from jobpersist._codec.python.envelope_scan import BytesSource
from jobpersist._codec.python.envelope_writer import open_writer
from jobpersist._codec.python.errors import DecodeError
from jobpersist._format import schema as _schema


def PyFileData(data: bytes) -> file_data.PyFileData:
    """The class, over bytes."""
    return file_data.PyFileData(BytesSource(data))


HEADER = {"name": "braket.jobs_data.persisted_job_data", "version": "1"}
STEP = base64_stream.DECODE_STEP
# Sizes around a line, an encoding piece and a decoding step (57 bytes make a line of text).
SIZES = sorted(
    {0, 1, 2, 3, 56, 57, 58, 114}
    | {base64_lines.PIECE + d for d in (-57, -1, 0, 1, 57)}
    | {STEP // 78 * 57 + d for d in (-57, -1, 0, 1, 57)}
    | {3 * STEP // 78 * 57 + 5, (1 << 20) + 7}
)


@pytest.fixture
def python_codec() -> Iterator[None]:
    previous = (_codec.BACKEND, _codec.CODEC)
    _codec.use("python")
    try:
        yield
    finally:
        _codec.BACKEND, _codec.CODEC = previous


def envelope_text(values: dict[str, str]) -> bytes:
    doc = {"braketSchemaHeader": HEADER, "dataDictionary": values, "dataFormat": "pickled_v4"}
    return json.dumps(doc).encode()


def reference_file(values: dict[str, bytes]) -> bytes:
    return envelope_text({k: base64.encodebytes(v).decode() for k, v in values.items()})


def written_file(tmp_path: Any, values: dict[str, bytes], pieces: Callable[[bytes], Any]) -> bytes:
    path = str(tmp_path / "out.json")
    writer = open_writer(path, False)
    writer.write_raw(b'{"braketSchemaHeader": ')
    writer.write_raw(json.dumps(HEADER).encode() + b', "dataDictionary": {')
    for i, (key, value) in enumerate(values.items()):
        writer.write_key(key, i > 0)
        writer.begin_b64()
        for piece in pieces(value):
            assert writer.write(piece) == len(piece)
        writer.end_b64()
    writer.write_raw(b'}, "dataFormat": "pickled_v4"}')
    writer.commit()
    with open(path, "rb") as f:
        return f.read()


def random_pieces(seed: int) -> Callable[[bytes], Iterator[Any]]:
    rng = random.Random(seed)

    def pieces(value: bytes) -> Iterator[Any]:
        pos = 0
        while pos < len(value):
            size = rng.choice([1, 13, 57, 58, 1000, 60_000, 200_000])
            kind = rng.choice([bytes, bytearray, memoryview])
            yield (
                kind(value[pos : pos + size])
                if kind is not memoryview
                else memoryview(value)[pos : pos + size]
            )
            pos += size

    return pieces


@pytest.mark.parametrize("size", SIZES)
def test_writer_matches_encodebytes(tmp_path: Any, size: int) -> None:
    value = os.urandom(size)
    values = {"a": value, "b\u00e9": value[:100], "": b""}
    expected = reference_file(values)
    for seed, pieces in enumerate([lambda v: [v], lambda v: [memoryview(v)]]):
        assert written_file(tmp_path, values, pieces) == expected, seed
    assert written_file(tmp_path, values, random_pieces(size)) == expected


def test_writer_many_small_values(tmp_path: Any) -> None:
    values = {f"key{i}": pickle.dumps((i, i / 3, f"v{i}"), protocol=4) for i in range(2000)}
    assert written_file(tmp_path, values, lambda v: [v]) == reference_file(values)


def scans(data: bytes) -> list[Any]:
    end = len(data) - len(envelope_scan.TAIL)
    return [
        envelope_scan.split_scan(data, end),
        envelope_scan.loop_scan(BytesSource(data), end),
    ]


def parsed_scan(data: bytes) -> Any:
    return envelope_scan.parsed_scan(data, len(data) - len(envelope_scan.TAIL))


@pytest.mark.parametrize("count", [0, 1, 2, 63, 64, 65, 300])
def test_both_scans_find_every_key_and_value(count: int) -> None:
    values = {
        f"k{i}" + ("\u00e9\\\t" if i % 5 == 0 else ""): pickle.dumps(list(range(i)), protocol=4)
        for i in range(count)
    }
    data = reference_file(values)
    parsed = json.loads(data)["dataDictionary"]
    for keys, spans, _ in scans(data):
        assert keys == list(values)
        texts = [json.loads(b'"' + data[start:end] + b'"') for start, end in spans]
        assert texts == list(parsed.values())
        assert PyFileData(data).decode_values(spans) == list(values.values())
    # orjson's scan takes files without escapes but the values' newlines.
    parsed = parsed_scan(data)
    if count and all(k.isascii() and k.isprintable() for k in values):
        assert parsed is not None
    if parsed is not None:
        assert parsed[:2] == scans(data)[1][:2]
    file = PyFileData(data)
    scanned = file.scan_pickled()
    assert scanned is not None and scanned[0] == list(values)
    assert file.decode_values(scanned[1]) == list(values.values())


@pytest.mark.parametrize("count", [1, 300])
def test_parsed_scan_of_raw_utf8_keys(count: int) -> None:
    values = {f"k\u00e9\u20ac{i}": pickle.dumps(i, protocol=4) for i in range(count)}
    doc = {
        "braketSchemaHeader": HEADER,
        "dataDictionary": {k: base64.encodebytes(v).decode() for k, v in values.items()},
        "dataFormat": "pickled_v4",
    }
    data = json.dumps(doc, ensure_ascii=False).encode()
    parsed = parsed_scan(data)
    assert parsed is not None and parsed[:2] == scans(data)[1][:2]
    file = PyFileData(data)
    scanned = file.scan_pickled()
    assert scanned is not None and file.decode_values(scanned[1]) == list(values.values())


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.replace(b'": "', b'":  "', 1),
        lambda d: d.replace(b'", "', b'","', 1),
        lambda d: d.replace(b'"k1"', b'"k\\"1"', 1),
        lambda d: d.replace(b'"k1"', b'"k\x011"', 1),
        lambda d: d.replace(b'"k1": ', b'"k1": 1, "x": ', 1),
        lambda d: d[:-1],
        # Same length, other layout: spans from lengths alone would be off.
        lambda d: d.replace(b'"k1": "', b'"k1":  "', 1).replace(b'", "k3"', b'","k3"', 1),
        lambda d: d.replace(b'"k1": "', b'"k1":"', 1).replace(b'", "k3"', b'",  "k3"', 1),
        lambda d: d.replace(b'"k1": "', b'"k1": "\\u0041', 1),
    ],
)
def test_every_scan_refuses_other_layouts(damage: Callable[[bytes], bytes]) -> None:
    data = damage(reference_file({f"k{i}": b"xyz" * i for i in range(100)}))
    # The scans proper start after the head and end before the tail, which the caller checks.
    framed = data.startswith(_schema.HEAD) and data.endswith(envelope_scan.TAIL)
    if framed:
        assert parsed_scan(data) is None
    if b"\\u0041" in data:
        # A value's other escapes are the decoder's to refuse, not the layout scans'.
        return
    if framed:
        assert scans(data) == [None, None]
    assert envelope_scan.scan_envelope(BytesSource(data), len(data)) is None


def read_all(file: file_data.PyFileData, span: tuple[int, int], how: str) -> bytes:
    reader = file.value_reader(*span)
    if how == "read":
        out = reader.read(3) + reader.read(70_000) + reader.read()
    elif how == "readinto":
        buffer = bytearray(4 << 20)
        out = bytes(buffer[: reader.readinto(buffer)])
    else:
        out = b"".join(iter(reader.readline, b""))
    reader.validate_rest()
    return out


@pytest.mark.parametrize("how", ["read", "readinto", "readline"])
@pytest.mark.parametrize("size", SIZES)
def test_reader_decodes_canonical_values(size: int, how: str) -> None:
    value = os.urandom(size).replace(b"\n", b"\n\n")
    data = reference_file({"v": value})
    _, spans, _ = scans(data)[1]
    assert read_all(PyFileData(data), spans[0], how) == value


@pytest.mark.parametrize("line", [4, 64, 72, 80, 10_000_000])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_reader_decodes_other_wrappings(line: int, newline: str) -> None:
    # Lines that are not encodebytes' (but a whole number of 4-character groups) leave the
    # canonical steps and are still decoded exactly.
    value = os.urandom(3 * STEP)
    text = base64.b64encode(value).decode()
    wrapped = newline.join(text[i : i + line] for i in range(0, len(text), line)) + newline
    data = envelope_text({"v": wrapped})
    _, spans, _ = scans(data)[1]
    assert read_all(PyFileData(data), spans[0], "read") == value


def test_reader_refuses_padding_inside_a_value() -> None:
    # The reference stops decoding at padding; a reader decoding step by step must not go on.
    first = base64.encodebytes(os.urandom(STEP // 78 * 57 + 1)).decode()
    data = envelope_text({"v": first + base64.encodebytes(os.urandom(STEP)).decode()})
    _, spans, _ = scans(data)[1]
    with pytest.raises(DecodeError):
        read_all(PyFileData(data), spans[0], "read")


@pytest.mark.parametrize(
    "damage",
    [
        b"\\/",  # a valid JSON escape the strict reader does not take
        b"\\u0041",
        b"\\\\n",
        b"\\t",
        b" ",
        b"\\r",
    ],
)
def test_other_escapes_and_strays_go_to_the_exact_path(damage: bytes) -> None:
    value = os.urandom(2 * STEP)
    data = reference_file({"v": value})
    _, spans, _ = scans(data)[1]
    start = spans[0][0] + STEP + 100
    damaged = data[:start] + damage + data[start:]
    with pytest.raises(DecodeError):
        read_all(PyFileData(damaged), spans[0], "read")
    with pytest.raises(DecodeError):
        PyFileData(damaged).decode_values([(spans[0][0], spans[0][1] + len(damage))])


@pytest.mark.usefixtures("python_codec")
@pytest.mark.parametrize("damage", [b"\\/", b"\\u0041", b"\\n\\n", b"A", b"\\\\"])
def test_loads_as_the_reference_where_the_fast_path_refuses(job_env: Any, damage: bytes) -> None:
    from braket.jobs.data_persistence import load_job_result as reference_load

    value = pickle.dumps(os.urandom(3 * STEP), protocol=4)
    data = reference_file({"v": value, "w": pickle.dumps(1, protocol=4)})
    at = data.index(b'"v": "') + 6 + STEP + 50
    damaged = data[:at] + damage + data[at:]
    job_env.results_path.write_bytes(damaged)
    try:
        expected = reference_load(job_env.results_path, allow_pickle=True)
    except Exception:
        with pytest.raises(ValueError):
            jobpersist.load_job_result(allow_pickle=True)
    else:
        assert jobpersist.load_job_result(allow_pickle=True) == expected


@pytest.mark.usefixtures("python_codec")
def test_round_trip_many_values_and_a_big_one(job_env: Any) -> None:
    np = pytest.importorskip("numpy")
    array = np.random.default_rng(5).random(300_000)
    data = {f"key{i}": (i, i / 3, f"value {i}") for i in range(1000)}
    data["array"] = array
    jobpersist.save_job_checkpoint(data, data_format="pickled_v4")
    expected = {
        k: base64.encodebytes(pickle.dumps(v, protocol=4)).decode() for k, v in data.items()
    }
    assert job_env.checkpoint_path.read_bytes() == envelope_text(expected)
    loaded = jobpersist.load_job_checkpoint(allow_pickle=True)
    assert np.array_equal(loaded.pop("array"), array)
    assert loaded == {k: v for k, v in data.items() if k != "array"}


@pytest.mark.parametrize("window", [64, 4096, 1 << 20])
def test_big_files_are_read_through_a_window(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    # Every file counts as big here: scanned and decoded through the window, whose edges
    # fall anywhere in keys, separators and escapes.
    monkeypatch.setattr(file_data, "SMALL_FILE", 0)
    monkeypatch.setattr(envelope_scan, "WINDOW", window)
    values = {f"key {i}": os.urandom(i * 997 % 5000) for i in range(40)}
    values["big"] = os.urandom(3 * STEP + 11)
    path = tmp_path / "big.json"
    path.write_bytes(reference_file(values) + b"\n ")
    file = file_data.read_file(str(path))
    assert isinstance(file._source, envelope_scan.FileSource)
    scanned = file.scan_pickled()
    assert scanned is not None and scanned[0] == list(values)
    assert file.decode_values(scanned[1]) == list(values.values())
    assert read_all(file, scanned[1][-1], "read") == values["big"]
    assert file.bytes() == path.read_bytes()


def test_a_big_file_truncated_while_read_is_a_value_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_data, "SMALL_FILE", 0)
    monkeypatch.setattr(envelope_scan, "WINDOW", 4096)
    path = tmp_path / "big.json"
    path.write_bytes(reference_file({"v": os.urandom(4 * STEP)}))
    file = file_data.read_file(str(path))
    scanned = file.scan_pickled()
    assert scanned is not None
    with open(path, "r+b") as f:
        f.truncate(STEP)
    with pytest.raises(DecodeError):
        read_all(file, scanned[1][0], "read")


@pytest.mark.usefixtures("python_codec")
def test_big_file_round_trip(job_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    np = pytest.importorskip("numpy")
    monkeypatch.setattr(file_data, "SMALL_FILE", 1 << 16)
    array = np.arange(400_000, dtype=np.float64)
    jobpersist.save_job_checkpoint({"a": array, "b": 1}, data_format="pickled_v4")
    loaded = jobpersist.load_job_checkpoint(allow_pickle=True)
    assert np.array_equal(loaded["a"], array) and loaded["b"] == 1
    # Without allow_pickle the whole file is still parsed first, as the reference does.
    with pytest.raises(RuntimeError):
        jobpersist.load_job_checkpoint()
