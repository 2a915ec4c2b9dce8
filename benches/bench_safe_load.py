"""Safe mode's load time against full unpickling (``allow_pickle="safe"`` vs ``True``).

Targets, on both backends: a 256 MiB float64 array loads in safe mode in at most 1.2x the
time of ``allow_pickle=True``; 10,000 small values (``compare.py``'s ``small10k`` case) in at
most 3x. Each load runs in a fresh process (both modes pay the same first-touch page faults);
a round runs every (backend, mode) in turn, each round starting with another mode, and the
medians are compared.

    python benches/bench_safe_load.py [--mib 256] [--rounds 5] [--cases array,small10k]
        [--base OTHER/src]

Two more cases, without a target, show the interpreter on object-heavy pickles:
``floats2m`` (a list of 2 million floats) and ``nested100k`` (1000 dicts of 100 mixed values).

``--base`` names the ``src`` directory of another checkout (with its compiled module built):
each round then also loads in safe mode with that jobpersist, and the table adds safe mode's
time against it (an A/B of two versions of the safe loader, on the same files), as wall time
and as CPU time (which other processes on a shared machine disturb less). Targets, on wall
time: ``small10k`` at most 1.1x the base, ``floats2m`` and ``nested100k`` at most 1.05x.

Exits 1 when a ratio exceeds its target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

CHILD = textwrap.dedent(
    """
    import os, sys, time
    def hwm():  # this process's peak RSS in KiB (ru_maxrss would carry the parent's over exec)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    os.environ["JOBPERSIST_BACKEND"] = sys.argv[1]
    import numpy  # imported by either mode's load: not part of the timing
    import jobpersist
    base = os.environ.get("JOBPERSIST_BENCH_BASE")
    assert base is None or jobpersist.__file__.startswith(base), jobpersist.__file__
    mode = True if sys.argv[2] == "full" else "safe"
    before = hwm()
    start, cpu = time.perf_counter(), time.process_time()
    data = jobpersist.load_job_checkpoint(allow_pickle=mode)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = hwm() - before
    assert len(data) == int(sys.argv[3])
    print(elapsed, cpu, peak / 1024)
    """
)
TARGETS = {"array": 1.2, "small10k": 3.0, "floats2m": None, "nested100k": None}
BASE_TARGETS = {"array": None, "small10k": 1.1, "floats2m": 1.05, "nested100k": 1.05}


def _save(case: str, mib: int, directory: str) -> int:
    import numpy as np

    import jobpersist

    os.environ["AMZN_BRAKET_CHECKPOINT_DIR"] = directory
    os.environ["AMZN_BRAKET_JOB_NAME"] = case
    rng = np.random.default_rng(1234)
    data: dict[str, Any]
    if case == "array":
        data = {"weights": rng.random(mib * (1 << 20) // 8)}
    elif case == "small10k":
        data = {f"key{i}": (i, i / 3, f"value {i}") for i in range(10_000)}
    elif case == "floats2m":
        data = {"params": rng.random(2_000_000).tolist(), "loss": 0.125, "step": 1000}
    else:
        data = {
            f"group{g}": {f"k{i}": [i, f"s{i}", i % 3 == 0, None, i / 7][i % 5] for i in range(100)}
            for g in range(1000)
        }
    jobpersist.save_job_checkpoint(data, data_format=jobpersist.PersistedJobDataFormat.PICKLED_V4)
    return len(data)


def _run(
    case: str, backend: str, mode: str, directory: str, keys: int, base: str | None
) -> tuple[float, float, float]:
    """The load's time and its CPU time (s), and the growth of the process's peak RSS during
    it (MiB); mode "base" is safe mode with the jobpersist of ``base`` (a ``src``
    directory)."""
    env = dict(os.environ, AMZN_BRAKET_CHECKPOINT_DIR=directory, AMZN_BRAKET_JOB_NAME=case)
    env.pop("JOBPERSIST_ALLOW_PICKLE", None)
    if mode == "base" and base is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [base, env.get("PYTHONPATH")]))
        env["JOBPERSIST_BENCH_BASE"] = base
        mode = "safe"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, backend, mode, str(keys)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    elapsed, cpu, peak = out.split()
    return float(elapsed), float(cpu), float(peak)


def _verdict(ratio: float, target: float | None) -> tuple[str, bool]:
    if target is None:
        return "-", True
    ok = ratio <= target
    return f"<= {target}x " + ("ok" if ok else "MISSED"), ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="array size (default 256)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backends", default="native,python")
    parser.add_argument("--cases", default="array,small10k", help=f"of {','.join(TARGETS)}")
    parser.add_argument("--base", help="src directory of a checkout to compare safe mode with")
    args = parser.parse_args()
    backends = args.backends.split(",")
    base = os.path.abspath(args.base) if args.base else None
    modes = ("full", "safe", "base") if base else ("full", "safe")
    failed = False
    with tempfile.TemporaryDirectory() as directory:
        print(
            f"{'case':<10} {'backend':<8} {'full (s)':>10} {'safe (s)':>10} {'ratio':>7} "
            f"{'target':<14} {'peak full/safe (MiB)':>20}"
            + (f" {'base safe (s)':>13} {'safe/base':>9} {'target':<14} {'cpu':>7}" if base else "")
        )
        for case in args.cases.split(","):
            keys = _save(case, args.mib, directory)
            times: dict[tuple[str, str], list[float]] = {}
            cpus: dict[tuple[str, str], list[float]] = {}
            peaks: dict[tuple[str, str], list[float]] = {}
            for r in range(args.rounds):
                # Each round starts with another mode: none always follows the same one.
                order = modes[r % len(modes) :] + modes[: r % len(modes)]
                for backend in backends:
                    for mode in order:
                        elapsed, cpu, peak = _run(case, backend, mode, directory, keys, base)
                        times.setdefault((backend, mode), []).append(elapsed)
                        cpus.setdefault((backend, mode), []).append(cpu)
                        peaks.setdefault((backend, mode), []).append(peak)
            for backend in backends:
                median = {mode: statistics.median(times[(backend, mode)]) for mode in modes}
                full, safe = median["full"], median["safe"]
                verdict, ok = _verdict(safe / full, TARGETS[case])
                failed |= not ok
                label = f"{case}" + (f" {args.mib}M" if case == "array" else "")
                peak = "/".join(
                    f"{statistics.median(peaks[(backend, mode)]):.0f}" for mode in ("full", "safe")
                )
                row = (
                    f"{label:<10} {backend:<8} {full:>10.4f} {safe:>10.4f} {safe / full:>6.2f}x "
                    f"{verdict:<14} {peak:>20}"
                )
                if base:
                    against = safe / median["base"]
                    verdict, ok = _verdict(against, BASE_TARGETS[case])
                    failed |= not ok
                    cpu = statistics.median(cpus[(backend, "safe")]) / statistics.median(
                        cpus[(backend, "base")]
                    )
                    row += f" {median['base']:>13.4f} {against:>8.3f}x {verdict:<14} {cpu:>6.3f}x"
                print(row)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
