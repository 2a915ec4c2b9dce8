"""How long ``import jobpersist`` takes, against ``import braket.jobs.data_persistence``.

Each import runs in a fresh interpreter under ``python -X importtime``; the figure is the
cumulative microseconds of the top-level import line (the module and everything it pulls
in), median of ``--runs`` processes, the two imports interleaved so both see the same load.
A first untimed run of each writes the bytecode caches (pip compiles at install too), even
when ``PYTHONDONTWRITEBYTECODE`` is set.

    python benches/bench_import.py [--runs 15] [--check]

``--check`` exits with status 1 when the ratio is above the target (0.2).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys

TARGET = 0.2
OURS = "jobpersist"
REFERENCE = "braket.jobs.data_persistence"
_LINE = re.compile(r"^import time:\s*(\d+)\s*\|\s*(\d+)\s*\|(\s*)(\S+)\s*$")


def import_us(module: str, env: dict[str, str]) -> int:
    """Cumulative µs of ``import module`` in a fresh interpreter (``-X importtime``)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"import {module} failed:\n{proc.stderr[-2000:]}")
    for line in proc.stderr.splitlines():
        match = _LINE.match(line)
        # Top level: a single space between "|" and the name; nested imports are indented.
        if match and match[4] == module and len(match[3]) == 1:
            return int(match[2])
    raise SystemExit(f"no top-level importtime line for {module}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="processes per import (15)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if ratio > {TARGET}")
    args = parser.parse_args()

    env = dict(os.environ)
    warm = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for module in (OURS, REFERENCE):
        import_us(module, warm)
    ours: list[int] = []
    reference: list[int] = []
    for _ in range(args.runs):
        ours.append(import_us(OURS, env))
        reference.append(import_us(REFERENCE, env))
    ours_median = statistics.median(ours)
    reference_median = statistics.median(reference)
    ratio = ours_median / reference_median
    print(f"python -X importtime, median of {args.runs} fresh processes ({sys.executable})")
    print(f"  import {OURS:<30} {ours_median:>10.0f} us  (min {min(ours)})")
    print(f"  import {REFERENCE:<30} {reference_median:>10.0f} us  (min {min(reference)})")
    print(f"  ratio {ratio:.3f} (target <= {TARGET})")
    return 1 if args.check and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
