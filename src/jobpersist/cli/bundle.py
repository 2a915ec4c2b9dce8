"""``jobpersist bundle DIR``: the command's arguments; the work is ``jobpersist._packaging``'s,
imported only when the command runs."""

from __future__ import annotations

import argparse
import os
from typing import TextIO

from jobpersist.cli._common import CliError

# The job image: CPython 3.12, glibc 2.35 on x86_64 (a wheel for this manylinux or an
# older one runs there).
DEFAULT_PYTHON = "3.12"
DEFAULT_PLATFORM = "manylinux_2_35_x86_64"


NAME = "bundle"
HELP = "put the wheels a Braket job installs offline into its source folder"
DESCRIPTION = (
    "Prepares a Braket job's source folder DIR to install jobpersist without\n"
    "building anything: copies jobpersist's native wheel for the job's Python and\n"
    "platform and its pure-Python wheel from the --find-links directories into\n"
    "DIR/wheels/, adds orjson's wheel (from --find-links when there, else downloaded\n"
    "with pip), and writes a block of lines (--find-links wheels and the pins) into\n"
    "DIR/requirements.txt, keeping the other lines. Re-running replaces the block.\n"
    "Exit status 2, with nothing written, when a wheel is missing or a line of\n"
    "DIR/requirements.txt conflicts."
)
EPILOG = (
    "examples:\n"
    "  jobpersist bundle --find-links dist job-source\n"
    "  jobpersist bundle --find-links dist --find-links vendor --python-version 3.11 src\n"
    "  PIP_NO_INDEX=1 jobpersist bundle --find-links dist --find-links wheelhouse src"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``bundle`` subcommand's arguments."""
    p.add_argument("dir", metavar="DIR", help="the job's source folder (created when missing)")
    p.add_argument(
        "--find-links",
        action="append",
        required=True,
        metavar="PATH",
        help="a directory of wheels (e.g. dist/ of `make wheels`), repeatable",
    )
    p.add_argument(
        "--python-version",
        default=DEFAULT_PYTHON,
        metavar="3.N",
        help=f"the job's CPython version ({DEFAULT_PYTHON})",
    )
    p.add_argument(
        "--platform",
        default=DEFAULT_PLATFORM,
        metavar="TAG",
        help="the newest manylinux tag the job's image runs; wheels for it or an older "
        f"manylinux qualify ({DEFAULT_PLATFORM}: glibc 2.35, x86_64)",
    )
    p.add_argument(
        "--orjson-version",
        metavar="VERSION",
        help="the orjson version to bundle (default: the one installed here)",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Writes the bundle."""
    from jobpersist._packaging.bundle import Target, bundle, installed_orjson

    target = Target.from_args(args.python_version, args.platform)
    if os.path.exists(args.dir) and not os.path.isdir(args.dir):
        raise CliError(f"{args.dir}: not a directory")
    bundle(args.dir, args.find_links, target, args.orjson_version or installed_orjson(), out)
    return 0
