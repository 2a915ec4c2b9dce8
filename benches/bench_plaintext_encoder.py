"""Timings of plaintext (JSON) checkpoint saves: native vs Python backend vs amazon-braket-sdk.

Each measurement runs in a fresh process (the script re-invokes itself with ``--worker``);
the figure reported is the median over ``--rounds`` processes. The files the three write are
compared byte for byte. Exits non-zero when a target of issue 4 is missed.

    JOBPERSIST_FSYNC=0 python benches/bench_plaintext_encoder.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

CASES = ("floats2m", "nested100k")
IMPLS = ("reference", "native", "python")
# (case, faster implementation, slower implementation, required speed-up)
TARGETS = (
    ("floats2m", "native", "reference", 15.0),
    ("floats2m", "native", "python", 5.0),
    ("nested100k", "native", "reference", 10.0),
)


def _payload(case: str) -> dict[str, Any]:
    import random

    rng = random.Random(1234)
    if case == "floats2m":
        return {"params": [rng.random() for _ in range(2_000_000)], "loss": 0.5, "step": 10}
    # 100,000 small values in 1,000 dicts of 100 entries, nested two levels down.
    groups: dict[str, Any] = {}
    for g in range(1_000):
        entry: dict[str, Any] = {}
        for i in range(100):
            kind = i % 5
            if kind == 0:
                entry[f"i{i}"] = rng.randrange(-(10**6), 10**6)
            elif kind == 1:
                entry[f"s{i}"] = f"value {rng.randrange(1000)}"
            elif kind == 2:
                entry[f"b{i}"] = rng.random() < 0.5
            elif kind == 3:
                entry[f"n{i}"] = None
            else:
                entry[f"f{i}"] = rng.uniform(-1e3, 1e3)
        groups[f"group{g}"] = {"values": entry}
    return {"groups": groups, "step": 1}


def _worker(impl: str, case: str, directory: str) -> None:
    os.environ["AMZN_BRAKET_CHECKPOINT_DIR"] = directory
    os.environ["AMZN_BRAKET_JOB_NAME"] = "bench"
    os.environ["JOBPERSIST_FSYNC"] = "0"
    if impl == "reference":
        from braket.jobs.data_persistence import save_job_checkpoint
    else:
        os.environ["JOBPERSIST_BACKEND"] = impl
        from jobpersist import save_job_checkpoint
    data = _payload(case)
    start = time.perf_counter()
    save_job_checkpoint(data, checkpoint_file_suffix=impl)
    print(json.dumps({"seconds": time.perf_counter() - start}))


def _run(impl: str, case: str, directory: str) -> float:
    env = dict(os.environ, JOBPERSIST_FSYNC="0")
    env.pop("JOBPERSIST_BACKEND", None)
    out = subprocess.run(
        [sys.executable, __file__, "--worker", impl, case, directory],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return float(json.loads(out.strip().splitlines()[-1])["seconds"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "CASE", "DIR"))
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
        return 0
    medians: dict[tuple[str, str], float] = {}
    identical = True
    for case in CASES:
        with tempfile.TemporaryDirectory() as directory:
            for impl in IMPLS:
                times = [_run(impl, case, directory) for _ in range(args.rounds)]
                medians[case, impl] = statistics.median(times)
                print(
                    f"{case:<11} {impl:<9} median {medians[case, impl] * 1e3:9.1f} ms  "
                    f"(runs: {', '.join(f'{t * 1e3:.1f}' for t in times)})"
                )
            files = [os.path.join(directory, f"bench_{impl}.json") for impl in IMPLS]
            same = all(filecmp.cmp(files[0], f, shallow=False) for f in files[1:])
            identical &= same
            size = os.path.getsize(files[0])
            print(f"{case:<11} files byte-identical: {same} ({size} bytes)")
    ok = identical
    for case, fast, slow, needed in TARGETS:
        ratio = medians[case, slow] / medians[case, fast]
        met = ratio >= needed
        ok &= met
        print(
            f"{case:<11} {fast} vs {slow}: {ratio:5.1f}x (target {needed:g}x) {'ok' if met else 'MISSED'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
