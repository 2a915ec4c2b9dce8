"""``jobpersist verify FILE...``: checks structure, base64 and pickle opcode streams, one line
per file, without unpickling."""

from __future__ import annotations

import argparse
from typing import TextIO

from jobpersist.cli._common import CliError, FileReport, analyze, format_size

NAME = "verify"
HELP = "check files' structure, base64 and pickle opcode streams (no unpickling)"
DESCRIPTION = (
    "Checks each file's JSON structure and schema, every pickled value's "
    "base64 and opcode stream, without unpickling. One line per file; exit status 1 if "
    "any fails."
)
EPILOG = (
    "examples:\n  jobpersist verify checkpoints/*.json\n"
    "  jobpersist verify --safe-only results.json"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``verify`` subcommand's arguments."""
    p.add_argument("files", metavar="FILE", nargs="+")
    p.add_argument(
        "--safe-only",
        action="store_true",
        help='also fail a file that allow_pickle="safe" would not load: its pickles import '
        "globals outside the safe list, or use them in ways safe mode refuses (the file is "
        "loaded in safe mode to tell, which runs none of its code)",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Checks each file, one line each; 1 if any fails."""
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
        elif args.safe_only and not problems:
            problems += _safe_load_problems(path, report)
        if problems:
            failed += 1
            print(f"FAIL  {path}: {'; '.join(problems)}", file=out)
        else:
            detail = (
                f"{report.data_format}, {len(report.values)} key(s), {format_size(report.size)}"
            )
            if report.unsafe_globals:
                detail += f", {len(report.unsafe_globals)} unsafe import(s)"
            print(f"OK    {path} ({detail})", file=out)
    if failed:
        print(f"jobpersist: {failed} of {len(args.files)} file(s) failed", file=err)
    return 1 if failed else 0


def _safe_load_problems(path: str, report: FileReport) -> list[str]:
    """Why safe mode refuses the file (nothing if it loads): its globals are all on the safe
    list, so the safe interpreter runs, and builds the values or refuses them."""
    if not any(v.pickle is not None for v in report.values):
        return []
    from jobpersist._format.load import load_file
    from jobpersist._pickle.safe import UnsafePickleError

    try:
        load_file(path, "safe")
    except UnsafePickleError as exc:
        return [f"safe mode refuses it: {exc}"]
    except (ValueError, OSError) as exc:
        return [f"safe mode cannot load it: {exc}"]
    return []
