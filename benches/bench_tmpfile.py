"""A/B of the atomic writer's two temp files on the 256 MiB save: the unnamed O_TMPFILE file
(the default) against the named fallback (``JOBPERSIST_NO_TMPFILE=1``), same build.

Each round runs ``benches/compare.py``'s save worker (a fresh process saving the 256 MiB float64
array, pickled, fsync off, replacing the previous round's file) once per mode, the order
alternating, so a noisy spell on a shared machine slows both. Prints the medians, the minimums
and their ratios (unnamed / named); the unnamed file should cost at most 1.05x the named one.

    python benches/bench_tmpfile.py [--rounds 10] [--backend native]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

COMPARE = Path(__file__).with_name("compare.py")
MODES = ("unnamed", "named")


def one_save(backend: str, mode: str, directory: str) -> float:
    env = dict(os.environ, JOBPERSIST_FSYNC="0", JOBPERSIST_BACKEND=backend)
    env.pop("JOBPERSIST_NO_TMPFILE", None)
    if mode == "named":
        env["JOBPERSIST_NO_TMPFILE"] = "1"
    command = [sys.executable, str(COMPARE), "--worker", backend, "array", "save"]
    out = subprocess.run(
        [*command, str(256 << 20), directory], env=env, capture_output=True, text=True, check=True
    )
    seconds: float = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--backend", choices=("native", "python"), default="native")
    args = parser.parse_args()
    dirs = {mode: tempfile.mkdtemp(prefix=f"jp-tmpfile-{mode}-") for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        for round_ in range(args.rounds):
            for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
                times[mode].append(one_save(args.backend, mode, dirs[mode]))
    finally:
        for directory in dirs.values():
            shutil.rmtree(directory, ignore_errors=True)
    for mode in MODES:
        rounds = " ".join(f"{t:.3f}" for t in times[mode])
        print(
            f"{args.backend} {mode:<8} median {statistics.median(times[mode]):.3f} s, "
            f"min {min(times[mode]):.3f} s: {rounds}"
        )
    median_ratio = statistics.median(times["unnamed"]) / statistics.median(times["named"])
    min_ratio = min(times["unnamed"]) / min(times["named"])
    print(f"unnamed / named: medians {median_ratio:.3f}, minimums {min_ratio:.3f}")


if __name__ == "__main__":
    main()
