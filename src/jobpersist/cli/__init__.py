"""The ``jobpersist`` command: one module per subcommand.

``inspect`` and ``verify`` read files without ever unpickling them (pickled values are read
as opcode streams), and need nothing beyond the core install; ``checkpoints`` lists a
checkpoint manager's files and loads each as ``restore()`` does, in safe mode; ``info`` says
which backend and wheel are in use; ``bundle`` prepares the wheels a Braket job installs
offline. ``bench`` draws its progress bar with tqdm or rich and its chart with matplotlib when
they are installed (``pip install 'jobpersist[bench]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from jobpersist.cli import bench, bundle, checkpoints, info, inspect, verify
from jobpersist.cli._common import CliError, Subcommand

__all__ = ["CliError", "build_parser", "main"]

_EPILOG = """\
examples:
  jobpersist inspect checkpoints/my-job.json          what is inside, and what it would import
  jobpersist inspect --json results.json              the same, machine-readable
  jobpersist verify checkpoints/*.json                one line per file, exit 1 if any is bad
  jobpersist verify --safe-only results.json          ... and fail on unsafe pickle imports
  jobpersist checkpoints /opt/jobs/checkpoints        a CheckpointManager's files, which load
  jobpersist bench                                    save/load timings, 1, 16 and 64 MiB
  jobpersist bench --size 4M --size 256M --plot bench.png
  python -m jobpersist bench --format plaintext --rounds 5
  jobpersist info                                     version, backend, wheel, SIMD in use
  jobpersist bundle --find-links dist job-source      wheels for a Braket job, installed offline
"""

# In the order `jobpersist --help` lists them.
_COMMANDS: tuple[Subcommand, ...] = (inspect, verify, checkpoints, bench, info, bundle)


def build_parser() -> argparse.ArgumentParser:
    """The ``jobpersist`` argument parser, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="jobpersist",
        description="Inspect, verify, list and benchmark Amazon Braket job checkpoint and result "
        "files (braket.jobs.data_persistence format); show the installation; bundle the "
        "wheels for a Braket job.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from jobpersist import __version__

    parser.add_argument("--version", action="version", version=f"jobpersist {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in _COMMANDS:
        p = sub.add_parser(
            command.NAME,
            help=command.HELP,
            description=command.DESCRIPTION,
            epilog=command.EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``jobpersist`` command.

    Args:
        argv (Sequence[str] | None): The arguments after the program name; None reads
            ``sys.argv``.

    Returns:
        int: The exit status: 0 on success, 1 when a checked file fails, 2 for a usage error
        or a ``jobpersist: error: ...`` (argparse exits with 2 itself on bad arguments).
    """
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
