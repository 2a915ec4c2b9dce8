"""The fast load path is taken, and the Rust core agrees with ``_schema`` on the fixed text.

Loading a canonical pickled envelope (as jobpersist and the reference write it) scans it with
``FileData.scan_pickled`` and decodes each value from its span, without parsing the JSON or
holding the file's text. If the scan stopped recognising such files (say the core's envelope
header drifted from ``_schema.HEAD``), every load would still succeed on the slow path; these
tests fail instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from braket.jobs import data_persistence as reference
from braket.jobs_data import PersistedJobDataFormat as ReferenceFormat
from support.backends import require_backend
from support.jobenv import JobEnv
from support.values import canon

import jobpersist
from jobpersist import _codec
from jobpersist._format import conversion as _conversion
from jobpersist._format import schema as _schema

F = jobpersist.PersistedJobDataFormat
# Values both small (decoded whole) and big (streamed: over 1 MiB of base64), one under a key
# escaped in the file (keys with a quote are left to the full parse by design).
DATA = {
    "small": [1, 2.5, "three"],
    "k\u00e9y\\\t": {"nested": (1, 2)},
    "big": np.arange(200_000, dtype=np.float64),
}


class SpyReader:
    """A value reader that records whether the strict decoder refused anything."""

    def __init__(self, inner: Any, errors: list[BaseException]) -> None:
        self.inner = inner
        self.errors = errors

    def _call(self, name: str, *args: Any) -> Any:
        try:
            return getattr(self.inner, name)(*args)
        except Exception as exc:
            self.errors.append(exc)
            raise

    def read(self, *args: Any) -> Any:
        return self._call("read", *args)

    def readinto(self, buffer: Any) -> Any:
        return self._call("readinto", buffer)

    def readline(self, *args: Any) -> Any:
        return self._call("readline", *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SpyFile:
    """A ``FileData`` that records which path the load took."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.scanned: bool | None = None
        self.decoded = 0  # values decoded whole from their spans
        self.streamed = 0  # values read through a value reader
        self.whole = 0  # calls for the file's whole text
        self.errors: list[BaseException] = []

    def scan_pickled(self) -> Any:
        result = self.inner.scan_pickled()
        self.scanned = result is not None
        return result

    def decode_values(self, spans: list[tuple[int, int]]) -> Any:
        self.decoded += len(spans)
        try:
            return self.inner.decode_values(spans)
        except Exception as exc:
            self.errors.append(exc)
            raise

    def value_reader(self, start: int, end: int) -> Any:
        self.streamed += 1
        return SpyReader(self.inner.value_reader(start, end), self.errors)

    def bytes(self) -> Any:
        self.whole += 1
        return self.inner.bytes()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SpyCodec:
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.files: list[SpyFile] = []

    def read_file(self, path: str) -> SpyFile:
        file = SpyFile(self.inner.read_file(path))
        self.files.append(file)
        return file

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def spy(backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SpyCodec]:
    codec = SpyCodec(_codec.CODEC)
    monkeypatch.setattr(_codec, "CODEC", codec)
    yield codec


def write_ours(backend: str) -> Callable[[dict[str, Any]], None]:
    def write(data: dict[str, Any]) -> None:
        previous = (_codec.BACKEND, _codec.CODEC)  # the spy, when there is one
        _codec.use(backend)
        try:
            jobpersist.save_job_checkpoint(data, data_format=F.PICKLED_V4)
            jobpersist.save_job_result(data, data_format=F.PICKLED_V4)
        finally:
            _codec.BACKEND, _codec.CODEC = previous

    return write


def write_reference(data: dict[str, Any]) -> None:
    reference.save_job_checkpoint(data, data_format=ReferenceFormat.PICKLED_V4)
    reference.save_job_result(data, data_format=ReferenceFormat.PICKLED_V4)


def assert_fast(file: SpyFile, values: int) -> None:
    assert file.scanned, "scan_pickled() did not recognise a canonical file: slow path taken"
    assert not file.errors, f"the strict decoder refused a value: {file.errors[0]!r}"
    assert file.decoded + file.streamed == values
    assert file.streamed >= 1, "the big value should stream"
    assert file.whole == 0, "the fast path read the file's whole text"


@pytest.mark.parametrize("writer", ["native", "python", "reference"])
@pytest.mark.parametrize("allow_pickle", [True, "safe"])
def test_canonical_files_take_the_fast_path(
    backend: str, spy: SpyCodec, job_env: JobEnv, writer: str, allow_pickle: Any
) -> None:
    if writer == "native":
        require_backend("native")
    (write_reference if writer == "reference" else write_ours(writer))(DATA)
    (checkpoint_path, results_path) = (job_env.checkpoint_path, job_env.results_path)
    assert json.loads(checkpoint_path.read_bytes())["dataFormat"] == "pickled_v4"

    loaded = jobpersist.load_job_checkpoint(allow_pickle=allow_pickle)
    assert len(spy.files) == 1
    assert_fast(spy.files[0], len(DATA))
    result = jobpersist.load_job_result(allow_pickle=allow_pickle)
    assert len(spy.files) == 2
    assert_fast(spy.files[1], len(DATA))
    for got in (loaded, result):
        assert canon(got) == canon(DATA)
    assert results_path.exists()


def test_a_non_canonical_file_takes_the_slow_path(
    backend: str, spy: SpyCodec, job_env: JobEnv
) -> None:
    # The spy itself can tell the paths apart: the same file re-laid out (indented) is not
    # canonical, and loads through the full parse.
    write_ours(backend)({"a": [1, 2]})
    text = json.loads(job_env.checkpoint_path.read_bytes())
    job_env.checkpoint_path.write_text(json.dumps(text, indent=1))
    assert jobpersist.load_job_checkpoint(allow_pickle=True) == {"a": [1, 2]}
    (file,) = spy.files
    assert file.scanned is False and file.whole == 1


# --------------------------------------------------------------------------------------------
# The fixed text and limit, as the Rust core holds them
# --------------------------------------------------------------------------------------------
@pytest.fixture
def native() -> Any:
    require_backend("native")
    from jobpersist import _native

    return _native


def test_core_envelope_head_is_the_schema_head(native: Any) -> None:
    assert native.ENVELOPE_HEAD == _schema.HEAD


@pytest.mark.parametrize(
    "label", ["pickled_v4", "plaintext", "", 'with "quotes" and \\', "caf\u00e9 \U0001f600"]
)
def test_core_envelope_tail_is_the_schema_tail(native: Any, label: str) -> None:
    assert native.envelope_tail(label) == _schema.tail(label)


def test_one_nesting_limit(native: Any) -> None:
    assert native.MAX_DEPTH == _schema.MAX_DEPTH == _conversion.MAX_DEPTH
