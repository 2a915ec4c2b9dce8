"""Compares installed jobpersist builds (e.g. the cp311-abi3 wheel against the per-version
wheel) on the 256 MiB pickled save and load, each round in a fresh process.

    python benches/bench_wheels.py --python abi3=/tmp/venv-abi3/bin/python \
        --python cp312=/tmp/venv-ver/bin/python [--rounds 7] [--mib 256]

Every interpreter must have jobpersist (native backend), numpy and orjson installed. Rounds
alternate between the builds so that the machine's drift hits all of them alike. fsync is off
(JOBPERSIST_FSYNC=0): this compares the code, not the disk. On a shared machine wall times of
one round vary several-fold, so the verdict uses the two figures that other load disturbs
least: the fastest wall time and the median CPU time (all threads) of each build, as ratios
to the first build; exits 1 when either is more than --tolerance slower.

``--callgrind`` counts instructions instead (valgrind, repeatable whatever else the machine
does): per build, three runs of one process (setup only; setup and save; setup, save and
load) give the save's and the load's instruction counts as differences.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

# Runs in the child: one save and one load of a fresh array, timed with perf_counter.
_CHILD = r"""
import json, os, sys, time
import numpy as np
import jobpersist
assert jobpersist.BACKEND == "native", jobpersist.BACKEND
mib = int(sys.argv[1])
array = np.random.default_rng(7).random(mib * 2**20 // 8)
c0, t0 = time.process_time(), time.perf_counter()
jobpersist.save_job_checkpoint({"w": array}, "bench", jobpersist.PersistedJobDataFormat.PICKLED_V4)
c1, t1 = time.process_time(), time.perf_counter()
loaded = jobpersist.load_job_checkpoint(checkpoint_file_suffix="bench", allow_pickle=True)
c2, t2 = time.process_time(), time.perf_counter()
assert np.array_equal(loaded["w"], array)
print(json.dumps({
    "save": t1 - t0, "load": t2 - t1, "save_cpu": c1 - c0, "load_cpu": c2 - c1,
    "native": jobpersist._native.__file__,
}))
"""


def _round(python: str, mib: int, directory: str) -> dict[str, float]:
    env = dict(os.environ, JOBPERSIST_FSYNC="0", AMZN_BRAKET_CHECKPOINT_DIR=directory)
    env["AMZN_BRAKET_JOB_NAME"] = "bench"
    env.pop("JOBPERSIST_BACKEND", None)
    out = subprocess.run(
        [python, "-c", _CHILD, str(mib)], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


# Runs in the child under callgrind: "base" only sets up, "save" saves, "saveload" also loads.
_CALLGRIND_CHILD = r"""
import sys
import numpy as np
import jobpersist
mode, mib = sys.argv[1], int(sys.argv[2])
array = np.ones(mib * 2**20 // 8)
pickled = jobpersist.PersistedJobDataFormat.PICKLED_V4
if mode != "base":
    jobpersist.save_job_checkpoint({"w": array}, "bench", pickled)
if mode == "saveload":
    jobpersist.load_job_checkpoint(checkpoint_file_suffix="bench", allow_pickle=True)
"""


def _instructions(python: str, mode: str, mib: int, directory: str) -> int:
    env = dict(os.environ, JOBPERSIST_FSYNC="0", AMZN_BRAKET_CHECKPOINT_DIR=directory)
    env["AMZN_BRAKET_JOB_NAME"] = "bench"
    env.pop("JOBPERSIST_BACKEND", None)
    out_file = os.path.join(directory, f"callgrind.{mode}")
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}"]
    result = subprocess.run(
        [*valgrind, python, "-c", _CALLGRIND_CHILD, mode, str(mib)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    collected = [line for line in result.stderr.splitlines() if "Collected :" in line]
    return int(collected[-1].rsplit(":", 1)[1])


def callgrind(builds: list[list[str]], mib: int, tolerance: float) -> int:
    counts: dict[str, dict[str, int]] = {}
    for name, python in builds:
        with tempfile.TemporaryDirectory() as directory:
            base, save, saveload = (
                _instructions(python, mode, mib, directory) for mode in ("base", "save", "saveload")
            )
        counts[name] = {"save": save - base, "load": saveload - save}
    first = builds[0][0]
    print(f"{mib} MiB pickled float64, instructions (callgrind), ratio to {first}")
    worst = 0.0
    for name, _ in builds:
        ratios = {op: counts[name][op] / counts[first][op] for op in ("save", "load")}
        worst = max(worst, *ratios.values())
        print(
            f"{name:<10} save {counts[name]['save']:>13,} ({ratios['save']:.3f}x)  "
            f"load {counts[name]['load']:>13,} ({ratios['load']:.3f}x)"
        )
    within = worst <= 1 + tolerance
    print(f"slowest ratio {worst:.3f}: {'within' if within else 'OUTSIDE'} {tolerance:.0%}")
    return 0 if within else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead")
    args = parser.parse_args()
    builds = [spec.split("=", 1) for spec in args.python]
    if args.callgrind:
        return callgrind(builds, args.mib, args.tolerance)
    keys = ("save", "load", "save_cpu", "load_cpu")
    times: dict[str, dict[str, list[float]]] = {n: {k: [] for k in keys} for n, _ in builds}
    with tempfile.TemporaryDirectory() as directory:
        for round_no in range(args.rounds):
            # Alternate the order too, so neither build always runs right after a big write.
            order = builds if round_no % 2 == 0 else builds[::-1]
            for name, python in order:
                result = _round(python, args.mib, directory)
                if round_no == 0:
                    print(f"{name}: {result['native']}")
                for key in keys:
                    times[name][key].append(result[key])
    first = builds[0][0]
    stats = {
        name: {
            "save": min(t["save"]), "load": min(t["load"]),
            "save_cpu": statistics.median(t["save_cpu"]),
            "load_cpu": statistics.median(t["load_cpu"]),
            "save_med": statistics.median(t["save"]), "load_med": statistics.median(t["load"]),
        }
        for name, t in times.items()
    }  # fmt: skip
    print(f"\n{args.mib} MiB pickled float64, {args.rounds} fresh processes each, fsync off")
    print("build      | wall min save/load | wall median save/load | cpu median save/load"
          f" | ratios to {first}: wall min, cpu median")  # fmt: skip
    worst = 0.0
    for name, _ in builds:
        m, f = stats[name], stats[first]
        ratios = {k: m[k] / f[k] for k in ("save", "load", "save_cpu", "load_cpu")}
        worst = max(worst, *ratios.values())
        print(
            f"{name:<10} | {m['save']:.3f} / {m['load']:.3f} s    "
            f"| {m['save_med']:.3f} / {m['load_med']:.3f} s       "
            f"| {m['save_cpu']:.3f} / {m['load_cpu']:.3f} s     "
            f"| save {ratios['save']:.3f}x / {ratios['save_cpu']:.3f}x, "
            f"load {ratios['load']:.3f}x / {ratios['load_cpu']:.3f}x"
        )
    for name, _ in builds:
        for key in keys:
            rounds = " ".join(f"{t:.3f}" for t in times[name][key])
            print(f"  {name} {key} rounds: {rounds}")
    within = worst <= 1 + args.tolerance
    print(f"slowest ratio {worst:.3f}: {'within' if within else 'OUTSIDE'} {args.tolerance:.0%}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
