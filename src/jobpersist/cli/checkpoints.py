"""``jobpersist checkpoints [DIR]``: the checkpoint managers' files in a directory, each with
its step, job, size, format, metric, and whether it loads (by the code ``restore()`` runs, in
safe mode: nothing of the file's code is run)."""

from __future__ import annotations

import argparse
import json
import math
from typing import TextIO

from jobpersist.checkpoints import (
    Checkpoint,
    DamagedCheckpointError,
    list_checkpoints,
    load_checkpoint,
)
from jobpersist.cli._common import CliError, format_size

NAME = "checkpoints"
HELP = "list a checkpoint manager's files: step, job, size, format, metric, valid"
DESCRIPTION = (
    "Lists the files CheckpointManager wrote in DIR (of every job: a restarted "
    "job's copied files too), oldest step first, and checks each as restore() does: the "
    'file\'s first and last bytes, then a full load in safe mode (allow_pickle="safe": '
    "nothing of the file's code runs). Exit status 1 if any file is damaged."
)
EPILOG = (
    "examples:\n  jobpersist checkpoints /opt/jobs/checkpoints\n"
    "  jobpersist checkpoints --quick --json"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``checkpoints`` subcommand's arguments."""
    p.add_argument(
        "directory",
        metavar="DIR",
        nargs="?",
        default=None,
        help="the checkpoint directory (default: $AMZN_BRAKET_CHECKPOINT_DIR, else .)",
    )
    p.add_argument("--prefix", default="ckpt", help="the managers' prefix (default: ckpt)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="check each file's first and last bytes only (no full load)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _status(checkpoint: Checkpoint, quick: bool) -> tuple[bool, str]:
    """Whether the file is valid, and the word or reason that says so."""
    if checkpoint.problem is not None:
        return False, checkpoint.problem
    if quick:
        return True, "complete (not loaded)"
    try:
        load_checkpoint(checkpoint, allow_pickle="safe")
    except DamagedCheckpointError as exc:
        return False, exc.reason
    except ValueError as exc:  # UnsafePickleError: intact, beyond safe mode
        return True, f"ok (loads with allow_pickle=True only: {exc})"
    return True, "ok"


def _metric(checkpoint: Checkpoint) -> str:
    if checkpoint.metric is None:
        return "-"
    value = checkpoint.metric
    shown = f"{value:.6g}" if math.isfinite(value) else repr(value)
    return f"{checkpoint.metric_name}={shown}"


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Lists the checkpoints, one line each; 1 if any is damaged."""
    try:
        found = list_checkpoints(args.directory, args.prefix)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot list {exc.filename}: {exc.strerror or exc}") from None
    rows = [(c, *_status(c, args.quick)) for c in found]
    # What restore() would load: the newest valid file (rows are oldest first).
    chosen = next((c for c, valid, _ in reversed(rows) if valid), None)
    if args.json:
        listing = [
            {
                "step": c.step,
                "job": c.job_name,
                "suffix": c.suffix,
                "path": c.path,
                "size": c.size,
                "format": c.data_format,
                "metric_name": c.metric_name,
                "metric": c.metric,
                "valid": valid,
                "status": status,
            }
            for c, valid, status in rows
        ]
        restore = None if chosen is None else {"step": chosen.step, "path": chosen.path}
        json.dump({"checkpoints": listing, "restore": restore}, out, indent=2)
        out.write("\n")
    else:
        _print_table(rows, chosen, out)
    damaged = sum(1 for _, valid, _ in rows if not valid)
    if damaged:
        print(f"jobpersist: {damaged} of {len(rows)} checkpoint(s) damaged", file=err)
        return 1
    return 0


def _print_table(
    rows: list[tuple[Checkpoint, bool, str]], chosen: Checkpoint | None, out: TextIO
) -> None:
    if not rows:
        print("no checkpoints", file=out)
        return
    job_width = max(3, *(len(c.job_name) for c, _, _ in rows))
    metric_width = max(6, *(len(_metric(c)) for c, _, _ in rows))
    print(
        f"{'step':>10}  {'job':<{job_width}}  {'size':>10}  {'format':<10}  "
        f"{'metric':<{metric_width}}  status",
        file=out,
    )
    for c, valid, status in rows:
        print(
            f"{c.step:>10}  {c.job_name:<{job_width}}  {format_size(c.size):>10}  "
            f"{c.data_format or '-':<10}  {_metric(c):<{metric_width}}  "
            f"{status if valid else 'DAMAGED: ' + status}",
            file=out,
        )
    if chosen is None:
        print("restore(): no checkpoint loads", file=out)
    else:
        print(f"restore(): step {chosen.step} from {chosen.name}", file=out)
