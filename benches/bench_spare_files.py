"""A/B of the spare files on the tiny checkpoint: saves taking the spare made after the save
before (the default, where creating a file is slow) against every save creating its own file
(the spare policy "off", a test hook), same build, default durability mode.

Each row is a fresh process of 300 saves of the tiny checkpoint (plaintext or pickled, as
``jobpersist bench --small`` saves it), back to back or with a pause after each save; the rows
run in turn (the reference first), each after an ``os.sync()``, and each round alternates the
order of the two policies. Prints each row's median save over the rounds, and its ratio to the
reference's.

    python benches/bench_spare_files.py [--rounds 7] [--dir DIR] [--pause-ms 0 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

CASES = ("checkpoint", "pickled")
SAVES = 300


def worker(impl: str, policy: str, case: str, pause: float) -> None:
    """Runs in the fresh process: prints the median save in seconds."""
    from jobpersist.cli.bench import _small_state

    if impl == "reference":
        from braket.jobs import data_persistence as module
        from braket.jobs_data import PersistedJobDataFormat as formats
    else:
        import jobpersist as module
        from jobpersist import PersistedJobDataFormat as formats

        if impl == "native":
            from jobpersist._native import _set_spares as set_policy
        else:
            from jobpersist._codec.python.spare_files import set_policy
        set_policy(policy)  # type: ignore[arg-type]
    fmt: Any = formats.PICKLED_V4 if case == "pickled" else formats.PLAINTEXT
    times = []
    for i in range(SAVES):
        data = _small_state(i, case == "pickled")
        start = time.perf_counter()
        module.save_job_checkpoint(data, "", fmt)
        times.append(time.perf_counter() - start)
        if pause:
            time.sleep(pause)
    print(json.dumps(statistics.median(times)))


def one_row(impl: str, policy: str, case: str, pause: float, parent: str | None) -> float:
    os.sync()  # no row pays for the journal commit of the row before it
    with tempfile.TemporaryDirectory(prefix="jobpersist-spares-", dir=parent) as directory:
        env = dict(os.environ, AMZN_BRAKET_CHECKPOINT_DIR=directory, AMZN_BRAKET_JOB_NAME="job")
        env.pop("JOBPERSIST_DURABILITY", None)
        env.pop("JOBPERSIST_FSYNC", None)
        if impl != "reference":
            env["JOBPERSIST_BACKEND"] = impl
        command = [sys.executable, __file__, "--worker", impl, policy, case, str(pause)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    seconds: float = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", help="where the saves write (default: a temp dir in $TMPDIR)")
    parser.add_argument("--backend", default="native", choices=("native", "python"))
    parser.add_argument("--pause-ms", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, policy, case, pause = args.worker
        worker(impl, policy, case, float(pause))
        return
    print(f"{args.backend} backend, {SAVES} saves per process, medians of {args.rounds} rounds")
    print(f"{'case':<11} {'pause':>6} {'reference':>10} {'spares':>16} {'own files':>16}")
    for pause_ms in args.pause_ms:
        pause = pause_ms / 1e3
        for case in CASES:
            rows: dict[str, list[float]] = {"reference": [], "where slow": [], "off": []}
            for round_ in range(args.rounds):
                policies = ["where slow", "off"] if round_ % 2 == 0 else ["off", "where slow"]
                rows["reference"].append(one_row("reference", "-", case, pause, args.dir))
                for policy in policies:
                    rows[policy].append(one_row(args.backend, policy, case, pause, args.dir))
            ref, *mine = (statistics.median(rows[k]) for k in ("reference", "where slow", "off"))
            cells = " ".join(f"{m * 1e6:7.0f} us {m / ref:5.2f}x" for m in mine)
            print(f"{case:<11} {pause_ms:4g}ms {ref * 1e6:7.0f} us {cells}")


if __name__ == "__main__":
    main()
