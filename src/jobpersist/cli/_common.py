"""What the subcommands share: what a subcommand's module defines, the error they report,
sizes to and from people, and the analysis of a persisted-job-data file that ``inspect`` and
``verify`` print (nothing is ever unpickled)."""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
from typing import Any, Protocol, TextIO

from jobpersist._codec.python.base64_stream import strict_b64decode
from jobpersist._codec.python.pickle_frame import describe_crossing
from jobpersist._format.data_format import PersistedJobDataFormat
from jobpersist._format.envelope import loads, validate_envelope
from jobpersist._pickle.inspect import PickleScan, scan_pickle
from jobpersist._size import parse_size


class Subcommand(Protocol):
    """What each subcommand's module defines; ``build_parser`` makes its parser from it."""

    NAME: str  # the word on the command line
    HELP: str  # its line in ``jobpersist --help``
    DESCRIPTION: str  # laid out as written (RawDescriptionHelpFormatter)
    EPILOG: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace, out: TextIO, err: TextIO) -> int: ...


class CliError(Exception):
    """A failure reported as ``jobpersist: error: ...`` with exit status 2."""


def size_argument(text: str) -> int:
    """An argparse ``type`` for a positive size: bytes, or with a binary unit (``16M``).

    One meaning everywhere (:func:`jobpersist._size.parse_size`): a bare number is bytes.
    """
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid size: {exc}") from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: must be positive")
    return size


def format_size(n: int | None) -> str:
    """``n`` bytes for people (``"-"`` for None): B, KiB, MiB or GiB."""
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{value:.1f} {unit}"


@dataclasses.dataclass
class ValueReport:
    key: str
    encoded_size: int  # bytes of the value's JSON text in the file
    decoded_size: int | None  # pickle bytes (pickled values)
    kind: str  # the JSON type, or "pickle"
    pickle: PickleScan | None = None
    problem: str | None = None  # the value is damaged
    warning: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "encoded_size": self.encoded_size,
            "decoded_size": self.decoded_size,
            "kind": self.kind,
            "pickle": self.pickle.as_dict() if self.pickle is not None else None,
            "problem": self.problem,
            "warning": self.warning,
        }


@dataclasses.dataclass
class FileReport:
    path: str
    size: int = 0
    data_format: str | None = None
    schema: dict[str, Any] | None = None
    values: list[ValueReport] = dataclasses.field(default_factory=list)
    problem: str | None = None  # the file is damaged (structure)
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = [self.problem] if self.problem else []
        found += [f"key {v.key!r}: {v.problem}" for v in self.values if v.problem]
        found += [
            f"key {v.key!r}: {v.pickle.error}" for v in self.values if v.pickle and v.pickle.error
        ]
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsafe_globals(self) -> list[str]:
        return sorted(
            {
                g.qualified
                for v in self.values
                if v.pickle is not None
                for g in v.pickle.globals
                if not g.safe
            }
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "problems": self.problems,
            "warnings": self.warnings
            + [f"key {v.key!r}: {v.warning}" for v in self.values if v.warning],
            "size": self.size,
            "format": self.data_format,
            "schema": self.schema,
            "keys": [v.key for v in self.values],
            "values": [v.as_dict() for v in self.values],
            "total_encoded_size": sum(v.encoded_size for v in self.values),
            "total_decoded_size": sum(v.decoded_size or 0 for v in self.values),
            "unsafe_globals": self.unsafe_globals,
        }


def read_file(path: str) -> bytes:
    """The file's bytes, or a ``CliError`` naming the path and the reason."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except IsADirectoryError:
        raise CliError(f"{path}: is a directory") from None
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"object ({len(value)} keys)"
    if isinstance(value, list):
        return f"array ({len(value)} items)"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null"


def _pickled_value(key: str, value: Any) -> ValueReport:
    if not isinstance(value, str):
        return ValueReport(
            key,
            len(json.dumps(value)),
            None,
            _json_kind(value),
            problem=f"a pickled value must be a base64 string, not {_json_kind(value)}",
        )
    encoded_size = len(json.dumps(value)) - 2
    warning = None
    try:
        raw = value.encode("ascii")
        payload = strict_b64decode(raw.replace(b"\n", b""))
    except (UnicodeEncodeError, ValueError):
        # Not strict base64: the reference's lenient decoder may still read it.
        try:
            payload = base64.decodebytes(value.encode())
        except (UnicodeEncodeError, ValueError) as exc:
            return ValueReport(key, encoded_size, None, "pickle", problem=f"invalid base64 ({exc})")
        warning = "not canonical base64 (the reference's lenient decoder still reads it)"
    scan = scan_pickle(payload)
    # Read as pickle.loads reads it (what scan_pickle shows), but no pickler writes it.
    crafted = None if scan.crossing is None else describe_crossing(*scan.crossing)
    return ValueReport(
        key, encoded_size, len(payload), "pickle", pickle=scan, warning=warning, problem=crafted
    )


def analyze(path: str) -> FileReport:
    """Reads and checks ``path`` without unpickling anything.

    Raises:
        CliError: If the file cannot be read at all.
    """
    data = read_file(path)
    report = FileReport(path, size=len(data))
    try:
        obj = loads(data)
        data_format, dictionary = validate_envelope(obj)
    except ValueError as exc:
        report.problem = str(exc)
        return report
    header = obj.get("braketSchemaHeader")
    report.schema = dict(header) if isinstance(header, dict) else None
    if report.schema is None:
        report.warnings.append("no braketSchemaHeader (the reference accepts it)")
    if isinstance(data_format, PersistedJobDataFormat):
        report.data_format = data_format.value
    else:
        report.data_format = data_format
        report.warnings.append(
            f"unknown dataFormat {data_format!r}: the reference reads the values as plaintext"
        )
    for key, value in dictionary.items():
        if data_format is PersistedJobDataFormat.PICKLED_V4:
            report.values.append(_pickled_value(key, value))
        else:
            text = json.dumps(value)
            report.values.append(ValueReport(key, len(text), None, _json_kind(value)))
    return report
