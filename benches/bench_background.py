"""How long ``save_job_checkpoint_async`` blocks its caller, against ``pickle.dumps``.

Target: for a 256 MiB float64 array in PICKLED_V4, the call blocks for at most
1.3x the time of ``pickle.dumps(value, protocol=4)``, and the file written equals the
synchronous save's bytes.

Each measurement runs in a fresh process (both sides pay the same first-touch page faults);
the rounds alternate the two sides, and the medians are compared.

    python benches/bench_background.py [--mib 256] [--rounds 5] [--limit 1.3]

Exits 1 when the ratio exceeds the limit or the bytes differ.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    """
    import hashlib, os, pickle, sys, time
    import numpy as np

    mode, mib = sys.argv[1], int(sys.argv[2])
    value = np.random.default_rng(0).random(mib * (1 << 20) // 8)
    if mode == "dumps":
        start = time.perf_counter()
        payload = pickle.dumps(value, protocol=4)
        print(time.perf_counter() - start)
    else:
        from jobpersist import PersistedJobDataFormat, save_job_checkpoint, wait_for_saves
        from jobpersist import save_job_checkpoint_async

        start = time.perf_counter()
        future = save_job_checkpoint_async({"x": value}, "async", PersistedJobDataFormat.PICKLED_V4)
        print(time.perf_counter() - start)
        wait_for_saves()
        future.result()
        if mode == "async+verify":
            del future
            save_job_checkpoint({"x": value}, "sync", PersistedJobDataFormat.PICKLED_V4)
            directory = os.environ["AMZN_BRAKET_CHECKPOINT_DIR"]
            digests = []
            for suffix in ("async", "sync"):
                with open(os.path.join(directory, f"bench_{suffix}.json"), "rb") as f:
                    digests.append(hashlib.sha256(f.read()).hexdigest())
            print("same" if digests[0] == digests[1] else "DIFFERENT")
    """
)


def run(mode: str, mib: int, directory: str) -> list[str]:
    env = dict(os.environ, AMZN_BRAKET_CHECKPOINT_DIR=directory, AMZN_BRAKET_JOB_NAME="bench")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(mib)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256, help="array size in MiB (256)")
    parser.add_argument("--rounds", type=int, default=5, help="fresh processes per side (5)")
    parser.add_argument("--limit", type=float, default=1.3, help="maximum ratio (1.3)")
    args = parser.parse_args(argv)

    dumps: list[float] = []
    calls: list[float] = []
    same = True
    with tempfile.TemporaryDirectory(prefix="jp-bench-bg-") as directory:
        for round_ in range(args.rounds):
            dumps.append(float(run("dumps", args.mib, directory)[0]))
            mode = "async+verify" if round_ == 0 else "async"
            out = run(mode, args.mib, directory)
            calls.append(float(out[0]))
            if mode == "async+verify":
                same = out[1] == "same"
            print(
                f"round {round_ + 1}: pickle.dumps {dumps[-1] * 1e3:8.1f} ms   "
                f"save_job_checkpoint_async {calls[-1] * 1e3:8.1f} ms",
                flush=True,
            )
    ratio = statistics.median(calls) / statistics.median(dumps)
    print(
        f"{args.mib} MiB float64, PICKLED_V4, median of {args.rounds}: "
        f"pickle.dumps {statistics.median(dumps) * 1e3:.1f} ms, "
        f"save_job_checkpoint_async blocks {statistics.median(calls) * 1e3:.1f} ms, "
        f"ratio {ratio:.2f} (limit {args.limit})"
    )
    print(f"file equals the synchronous save's bytes: {'yes' if same else 'NO'}")
    if not same or ratio > args.limit:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
