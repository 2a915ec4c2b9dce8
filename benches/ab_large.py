"""A/B of two source trees on the 256 MiB pickled checkpoint: save, load and safe load, each
backend, one operation per fresh process.

Each side is a source tree (its ``src/`` on ``PYTHONPATH``, with its own built ``_native``
module in ``src/jobpersist/``), run by the same interpreter. A round runs every operation on
both sides, the side that goes first alternating per round; "save" writes
``{"weights": 256 MiB of float64}`` pickled over the side's file of the round before, "load"
reads it back with ``allow_pickle=True``, "safe" with ``allow_pickle="safe"``. Durability
``none`` on both sides (the older trees know only ``JOBPERSIST_FSYNC=0``), numpy's huge pages
off (their allocation varies more than the code under test). Prints, per operation, each
side's median and fastest round in milliseconds, their ratios and every round.

    python benches/ab_large.py BASE_TREE NEW_TREE [--rounds 9] [--dir /mnt/tmpfs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

OPS = [(backend, op) for backend in ("native", "python") for op in ("save", "load", "safe")]
WORDS = (256 << 20) // 8


def worker(backend: str, op: str, directory: str, name: str) -> None:
    os.environ.update(
        JOBPERSIST_BACKEND=backend,
        JOBPERSIST_FSYNC="0",
        AMZN_BRAKET_CHECKPOINT_DIR=directory,
        AMZN_BRAKET_JOB_NAME=name,
    )
    import numpy as np

    import jobpersist

    if op == "save":
        data = {"weights": np.random.default_rng(1).random(WORDS)}
        start = time.perf_counter()
        jobpersist.save_job_checkpoint(data, "", jobpersist.PersistedJobDataFormat.PICKLED_V4)
    else:
        start = time.perf_counter()
        jobpersist.load_job_checkpoint(allow_pickle=True if op == "load" else "safe")
    print(time.perf_counter() - start)


def run(tree: str, backend: str, op: str, directory: str, name: str) -> float:
    env = dict(os.environ, PYTHONPATH=os.path.join(tree, "src"), NUMPY_MADVISE_HUGEPAGE="0")
    cmd = [sys.executable, __file__, "--worker", backend, op, directory, name]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{tree} {backend} {op} failed:\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1]) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--dir", help="where the files go (default: a temp dir in $TMPDIR)")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="jobpersist-ab-", dir=args.dir)
    sides = {"base": args.base, "new": args.new}
    times: dict[tuple[str, str, str], list[float]] = {}
    try:
        for r in range(args.rounds):
            order = ["base", "new"] if r % 2 == 0 else ["new", "base"]
            for backend, op in OPS:
                for side in order:
                    ms = run(sides[side], backend, op, directory, f"{side}_{backend}")
                    times.setdefault((backend, op, side), []).append(ms)
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
    print(f"{args.rounds} rounds; base {args.base}, new {args.new}; ms")
    print(f"{'backend':7} {'op':5} {'base med':>8} {'new med':>8} {'new/base':>8} "
          f"{'base min':>8} {'new min':>8} {'min ratio':>9}")  # fmt: skip
    for backend, op in OPS:
        base, new = times[(backend, op, "base")], times[(backend, op, "new")]
        b, n = statistics.median(base), statistics.median(new)
        print(
            f"{backend:7} {op:5} {b:8.0f} {n:8.0f} {n / b:8.3f} {min(base):8.0f} {min(new):8.0f}"
            f" {min(new) / min(base):9.3f}   base {' '.join(f'{x:.0f}' for x in base)}"
            f" | new {' '.join(f'{x:.0f}' for x in new)}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:6])
    else:
        main()
