"""``jobpersist inspect FILE``: a file's format, keys, sizes and the globals its pickles would
import, read from the opcodes (nothing is unpickled)."""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from jobpersist._format.data_format import PersistedJobDataFormat
from jobpersist._pickle.inspect import DANGEROUS, SAFE
from jobpersist.cli._common import FileReport, analyze, format_size

NAME = "inspect"
HELP = "show a file's format, keys, sizes and the globals its pickles would import"
DESCRIPTION = (
    "Shows a persisted-job-data file: format, schema header, keys, each "
    "value's encoded and decoded size, and for pickled values the globals the pickle "
    "would import (read from its opcodes: nothing is unpickled). Exit status 1 for a "
    "damaged file."
)
EPILOG = (
    "examples:\n  jobpersist inspect checkpoints/my-job.json\n"
    "  jobpersist inspect --json results.json | jq .unsafe_globals"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``inspect`` subcommand's arguments."""
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _print_inspect(report: FileReport, out: TextIO) -> None:
    print(f"file:    {report.path} ({format_size(report.size)})", file=out)
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
                f"  {v.key!r:<{width}}  {format_size(v.encoded_size):>10}  "
                f"{format_size(v.decoded_size):>10}  {v.kind}",
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
    total = f"total:   encoded {format_size(encoded)}"
    if report.data_format == PersistedJobDataFormat.PICKLED_V4.value:
        total += f", decoded {format_size(decoded)}"
    print(total, file=out)
    for warning in report.warnings:
        print(f"warning: {warning}", file=out)
    if report.data_format == PersistedJobDataFormat.PICKLED_V4.value:
        unsafe = report.unsafe_globals
        if unsafe:
            print(
                f"pickle:  imports {len(unsafe)} global(s) outside the safe list: "
                + ", ".join(unsafe)
                + ' -- allow_pickle="safe" refuses it; load with allow_pickle=True only if '
                "you trust the file",
                file=out,
            )
        elif report.ok:
            print(
                'pickle:  every import is on the safe list (allow_pickle="safe" loads it '
                "unless it uses them in ways safe mode refuses: `jobpersist verify "
                "--safe-only` tries)",
                file=out,
            )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Prints one file's report; 1 if the file is damaged."""
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
