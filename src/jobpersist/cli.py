"""The ``jobpersist`` command: ``inspect``, ``verify`` and ``bench``.

``inspect`` and ``verify`` read files without ever unpickling them (pickled values are read
as opcode streams), and need nothing beyond the core install. ``bench`` draws its progress
bar with tqdm or rich and its chart with matplotlib when they are installed
(``pip install 'jobpersist[bench]'``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import importlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from jobpersist._envelope import loads, validate_envelope
from jobpersist._format import PersistedJobDataFormat
from jobpersist._pickle_inspect import DANGEROUS, SAFE, PickleScan, scan_pickle
from jobpersist.serialization import strict_b64decode

_EPILOG = """\
examples:
  jobpersist inspect checkpoints/my-job.json          what is inside, and what it would import
  jobpersist inspect --json results.json              the same, machine-readable
  jobpersist verify checkpoints/*.json                one line per file, exit 1 if any is bad
  jobpersist verify --safe-only results.json          ... and fail on unsafe pickle imports
  jobpersist bench                                    save/load timings, 1, 16 and 64 MiB
  jobpersist bench --size 4M --size 256M --plot bench.png
  python -m jobpersist bench --format plaintext --rounds 5
"""


class CliError(Exception):
    """A failure reported as ``jobpersist: error: ...`` with exit status 2."""


# ============================================================================================
# Reading a file: the analysis shared by inspect and verify
# ============================================================================================
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
    return ValueReport(key, encoded_size, len(payload), "pickle", pickle=scan, warning=warning)


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


# ============================================================================================
# inspect / verify
# ============================================================================================
def _size(n: int | None) -> str:
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


def _print_inspect(report: FileReport, out: TextIO) -> None:
    print(f"file:    {report.path} ({_size(report.size)})", file=out)
    if report.problem:
        return
    schema = report.schema or {}
    print(f"format:  {report.data_format}", file=out)
    print(f"schema:  {schema.get('name', '-')} version {schema.get('version', '-')}", file=out)
    print(f"keys:    {len(report.values)}", file=out)
    if report.values:
        width = min(40, max(len(repr(v.key)) for v in report.values))
        print(f"  {'key':<{width}}  {'encoded':>10}  {'decoded':>10}  kind", file=out)
        for v in report.values:
            print(
                f"  {v.key!r:<{width}}  {_size(v.encoded_size):>10}  {_size(v.decoded_size):>10}"
                f"  {v.kind}",
                file=out,
            )
            if v.pickle is not None:
                for g in v.pickle.globals:
                    mark = {SAFE: "safe", DANGEROUS: "UNSAFE: dangerous"}.get(
                        g.status, "UNSAFE: not on the safe list"
                    )
                    print(f"      imports {g.qualified}  [{mark}]", file=out)
                if v.pickle.calls:
                    calls = ", ".join(f"{k} x{n}" for k, n in sorted(v.pickle.calls.items()))
                    print(f"      calls   {calls}", file=out)
            if v.warning:
                print(f"      warning: {v.warning}", file=out)
    encoded = sum(v.encoded_size for v in report.values)
    decoded = sum(v.decoded_size or 0 for v in report.values)
    total = f"total:   encoded {_size(encoded)}"
    if report.data_format == PersistedJobDataFormat.PICKLED_V4.value:
        total += f", decoded {_size(decoded)}"
    print(total, file=out)
    for warning in report.warnings:
        print(f"warning: {warning}", file=out)
    if report.data_format == PersistedJobDataFormat.PICKLED_V4.value:
        unsafe = report.unsafe_globals
        if unsafe:
            print(
                f"pickle:  imports {len(unsafe)} global(s) outside the safe list: "
                + ", ".join(unsafe)
                + " -- load with allow_pickle=True only if you trust the file",
                file=out,
            )
        elif report.ok:
            print("pickle:  every import is on the safe list", file=out)


def cmd_inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    report = analyze(args.file)
    if args.json:
        json.dump(report.as_dict(), out, indent=2)
        out.write("\n")
    else:
        _print_inspect(report, out)
    if not report.ok:
        for problem in report.problems:
            print(f"jobpersist: {args.file}: damaged: {problem}", file=err)
        return 1
    return 0


def cmd_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    failed = 0
    for path in args.files:
        try:
            report = analyze(path)
        except CliError as exc:
            print(f"FAIL  {path}: {exc}", file=out)
            failed += 1
            continue
        problems = report.problems
        if args.safe_only and report.unsafe_globals:
            problems.append("imports outside the safe list: " + ", ".join(report.unsafe_globals))
        if problems:
            failed += 1
            print(f"FAIL  {path}: {'; '.join(problems)}", file=out)
        else:
            detail = f"{report.data_format}, {len(report.values)} key(s), {_size(report.size)}"
            if report.unsafe_globals:
                detail += f", {len(report.unsafe_globals)} unsafe import(s)"
            print(f"OK    {path} ({detail})", file=out)
    if failed:
        print(f"jobpersist: {failed} of {len(args.files)} file(s) failed", file=err)
    return 1 if failed else 0


# ============================================================================================
# bench
# ============================================================================================
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
DEFAULT_SIZES = ("1M", "16M", "64M")
IMPLEMENTATIONS = ("native", "python", "reference")


def parse_size(text: str) -> int:
    """A payload size: a number of MiB, or with a unit (``512K``, ``16M``, ``1G``, ``4MiB``)."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"invalid size {text!r}: use a number of MiB or a unit, e.g. 512K, 16M, 1G"
        )
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: must be positive")
    return size


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: must be at least 1")
    return value


def _label(size: int) -> str:
    if size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


@dataclasses.dataclass
class Impl:
    name: str
    save: Callable[[dict[str, Any], str, Any], None]
    load: Callable[[str], dict[str, Any]]
    formats: Any  # the PersistedJobDataFormat enum to use
    setup: Callable[[], None] = lambda: None


def _implementations(wanted: Sequence[str], err: TextIO) -> list[Impl]:
    import jobpersist
    from jobpersist import _codec

    found: list[Impl] = []
    for name in wanted:
        if name in ("native", "python"):
            if name == "native":
                try:
                    importlib.import_module("jobpersist._native")
                except ImportError:
                    print("bench: the native backend is not built; skipped", file=err)
                    continue
            found.append(
                Impl(
                    name,
                    lambda d, s, f: jobpersist.save_job_checkpoint(d, s, f),
                    lambda s: jobpersist.load_job_checkpoint(
                        checkpoint_file_suffix=s, allow_pickle=True
                    ),
                    PersistedJobDataFormat,
                    setup=lambda name=name: _codec.use(name),  # type: ignore[misc]
                )
            )
        else:
            try:
                reference = importlib.import_module("braket.jobs.data_persistence")
                formats = importlib.import_module("braket.jobs_data").PersistedJobDataFormat
            except ImportError:
                print(
                    "bench: amazon-braket-sdk is not installed; the reference is skipped",
                    file=err,
                )
                continue
            found.append(
                Impl(
                    "reference",
                    lambda d, s, f, r=reference: r.save_job_checkpoint(d, s, f),  # type: ignore[misc]
                    lambda s, r=reference: r.load_job_checkpoint(  # type: ignore[misc]
                        checkpoint_file_suffix=s, allow_pickle=True
                    ),
                    formats,
                )
            )
    return found


def _payload(size: int, fmt: str) -> Any:
    if fmt == "pickled":
        try:
            import numpy as np
        except ImportError:
            return os.urandom(size)  # pickled as bytes
        return np.random.default_rng(0).random(size // 8)
    # Plaintext: floats, written about 21 bytes each (repr plus ", ").
    import random

    rng = random.Random(0)  # noqa: S311 - benchmark data
    return [rng.random() for _ in range(max(1, size // 21))]


class _Progress:
    """tqdm, else rich, else a plain line per step on stderr."""

    def __init__(self, total: int, err: TextIO, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.err = err
        self.bar: Any = None
        self.rich: Any = None
        self.task: Any = None
        if not enabled:
            return
        try:
            tqdm = importlib.import_module("tqdm").tqdm
            self.bar = tqdm(total=total, file=err, unit="step", leave=False)
            return
        except ImportError:
            pass
        try:
            progress = importlib.import_module("rich.progress")
            self.rich = progress.Progress(transient=True)
            self.rich.start()
            self.task = self.rich.add_task("bench", total=total)
        except ImportError:
            pass

    def step(self, text: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_description(text)
            self.bar.update(1)
        elif self.rich is not None:
            self.rich.update(self.task, advance=1, description=text)
        else:
            print(f"[{self.done}/{self.total}] {text}", file=self.err, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.rich is not None:
            self.rich.stop()


@contextlib.contextmanager
def _job_environment(directory: str) -> Iterator[None]:
    keys = ("AMZN_BRAKET_CHECKPOINT_DIR", "AMZN_BRAKET_JOB_NAME", "CHECKPOINT_DIR", "JOB_NAME")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["AMZN_BRAKET_CHECKPOINT_DIR"] = directory
    os.environ["AMZN_BRAKET_JOB_NAME"] = "jobpersist-bench"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclasses.dataclass
class Timing:
    impl: str
    size: int
    save: float  # seconds, median
    load: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_bench(
    sizes: Sequence[int],
    fmt: str,
    impls: Sequence[Impl],
    rounds: int,
    directory: str,
    err: TextIO,
    progress: bool = True,
) -> list[Timing]:
    """Times one save and one load per round for each size and implementation (medians)."""
    from jobpersist import _codec

    previous = (_codec.BACKEND, _codec.CODEC)
    bar = _Progress(len(sizes) * len(impls) * rounds, err, progress)
    timings: list[Timing] = []
    try:
        with _job_environment(directory):
            for impl in impls:  # warm-up: imports, first-call costs
                impl.setup()
                impl.save({"warm": [1.0]}, "warmup", impl.formats.PICKLED_V4)
                impl.load("warmup")
            for size in sizes:
                value = _payload(size, fmt)
                for impl in impls:
                    impl.setup()
                    data_format = (
                        impl.formats.PICKLED_V4 if fmt == "pickled" else impl.formats.PLAINTEXT
                    )
                    suffix = impl.name
                    saves: list[float] = []
                    loads_: list[float] = []
                    for round_ in range(rounds):
                        start = time.perf_counter()
                        impl.save({"payload": value}, suffix, data_format)
                        saves.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        loaded = impl.load(suffix)
                        loads_.append(time.perf_counter() - start)
                        del loaded
                        bar.step(f"{impl.name} {_label(size)} round {round_ + 1}/{rounds}")
                    timings.append(
                        Timing(impl.name, size, statistics.median(saves), statistics.median(loads_))
                    )
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(directory, f"jobpersist-bench_{suffix}.json"))
                del value
    finally:
        bar.close()
        _codec.BACKEND, _codec.CODEC = previous
    return timings


def _machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )


def format_table(timings: Sequence[Timing], fmt: str, rounds: int) -> str:
    names = list(dict.fromkeys(t.impl for t in timings))
    base = "reference" if "reference" in names else ("python" if "python" in names else None)
    by_key = {(t.impl, t.size): t for t in timings}
    fsync = "off" if os.environ.get("JOBPERSIST_FSYNC", "1").strip() == "0" else "on"
    lines = [
        f"format {fmt}, median of {rounds} round(s), jobpersist fsync {fsync}; {_machine()}",
        f"{'size':>8}  {'implementation':<14} {'save ms':>9} {'save MB/s':>10} "
        f"{'load ms':>9} {'load MB/s':>10}"
        + (f"  {'save vs ' + base:>16} {'load vs ' + base:>16}" if base else ""),
    ]
    for t in timings:
        row = (
            f"{_label(t.size):>8}  {t.impl:<14} {t.save * 1e3:9.1f} {t.size / t.save / 1e6:10.1f} "
            f"{t.load * 1e3:9.1f} {t.size / t.load / 1e6:10.1f}"
        )
        if base:
            ref = by_key.get((base, t.size))
            if ref is not None:
                row += f"  {ref.save / t.save:15.1f}x {ref.load / t.load:15.1f}x"
        lines.append(row)
    return "\n".join(lines)


def plot(timings: Sequence[Timing], fmt: str, path: str) -> None:
    """Writes the throughput chart (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(t.impl for t in timings))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, what in zip(axes, ("save", "load"), strict=True):
        for name in names:
            points = sorted((t.size, t) for t in timings if t.impl == name)
            xs = [size / (1 << 20) for size, _ in points]
            ys = [size / getattr(t, what) / 1e6 for size, t in points]
            ax.plot(xs, ys, marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        sizes = sorted({t.size for t in timings})
        ax.set_xticks([size / (1 << 20) for size in sizes], [_label(size) for size in sizes])
        ax.minorticks_off()
        ax.set_xlabel("payload size (MiB)")
        ax.set_title(f"{what} ({fmt})")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("throughput (MB/s)")
    axes[0].legend()
    fig.suptitle(f"jobpersist bench: {_machine()}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_bench(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    sizes = args.size or [parse_size(s) for s in DEFAULT_SIZES]
    if args.plot:
        directory = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(directory):
            raise CliError(f"--plot {args.plot}: directory {directory} does not exist")
    if args.dir is not None and not os.path.isdir(args.dir):
        raise CliError(f"--dir {args.dir}: not a directory")
    impls = _implementations(args.impl or IMPLEMENTATIONS, err)
    if not impls:
        raise CliError("no implementation to benchmark")
    with tempfile.TemporaryDirectory(prefix="jobpersist-bench-", dir=args.dir) as directory:
        timings = run_bench(
            sizes, args.format, impls, args.rounds, directory, err, progress=not args.no_progress
        )
    print(format_table(timings, args.format, args.rounds), file=out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([t.as_dict() for t in timings], f, indent=2)
    if args.plot:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            print(
                "chart skipped: matplotlib is not installed; pip install 'jobpersist[bench]'",
                file=out,
            )
            return 0
        plot(timings, args.format, args.plot)
        print(f"chart written to {args.plot}", file=out)
    else:
        print("add --plot FILE.png for a chart (needs pip install 'jobpersist[bench]')", file=out)
    return 0


# ============================================================================================
# main
# ============================================================================================
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobpersist",
        description="Inspect, verify and benchmark Amazon Braket job checkpoint and result "
        "files (braket.jobs.data_persistence format).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from jobpersist import __version__

    parser.add_argument("--version", action="version", version=f"jobpersist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "inspect",
        help="show a file's format, keys, sizes and the globals its pickles would import",
        description="Shows a persisted-job-data file: format, schema header, keys, each "
        "value's encoded and decoded size, and for pickled values the globals the pickle "
        "would import (read from its opcodes: nothing is unpickled). Exit status 1 for a "
        "damaged file.",
        epilog="examples:\n  jobpersist inspect checkpoints/my-job.json\n"
        "  jobpersist inspect --json results.json | jq .unsafe_globals",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "verify",
        help="check files' structure, base64 and pickle opcode streams (no unpickling)",
        description="Checks each file's JSON structure and schema, every pickled value's "
        "base64 and opcode stream, without unpickling. One line per file; exit status 1 if "
        "any fails.",
        epilog="examples:\n  jobpersist verify checkpoints/*.json\n"
        "  jobpersist verify --safe-only results.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", metavar="FILE", nargs="+")
    p.add_argument(
        "--safe-only",
        action="store_true",
        help="also fail a file whose pickles import globals outside the safe list",
    )
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "bench",
        help="time save and load: native, Python fallback, reference",
        description="Times save_job_checkpoint and load_job_checkpoint for the native "
        "backend, the pure-Python fallback and the reference (amazon-braket-sdk, when "
        "installed), in this process (the backends are switched in place), prints a table "
        "with ratios and, with --plot, writes a chart of throughput against payload size. "
        "Pickled payloads are float64 numpy arrays (bytes without numpy); plaintext ones "
        "lists of floats. Files go to a temporary directory (see --dir); fsync follows "
        "JOBPERSIST_FSYNC (on by default; the reference never fsyncs).",
        epilog="examples:\n  jobpersist bench\n"
        "  jobpersist bench --size 4M --size 256M --rounds 5 --plot bench.png\n"
        "  jobpersist bench --format plaintext --size 1M --size 8M --impl native --impl python",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--size",
        type=parse_size,
        action="append",
        metavar="SIZE",
        help="payload size, repeatable: MiB, or with a unit (512K, 16M, 1G); "
        f"default {' '.join(DEFAULT_SIZES)}",
    )
    p.add_argument("--format", choices=("pickled", "plaintext"), default="pickled")
    p.add_argument(
        "--impl",
        action="append",
        choices=IMPLEMENTATIONS,
        help="implementation to time, repeatable (default: all available)",
    )
    p.add_argument("--rounds", type=_positive_int, default=3, help="rounds per point (3)")
    p.add_argument("--plot", metavar="FILE.png", help="write a throughput chart (matplotlib)")
    p.add_argument("--json", metavar="FILE", help="also write the timings as JSON")
    p.add_argument("--dir", metavar="DIR", help="where the files are written (a temp dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args, sys.stdout, sys.stderr)
    except CliError as exc:
        print(f"jobpersist: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jobpersist: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
