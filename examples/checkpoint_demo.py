"""A hybrid job's checkpointing, with jobpersist and with the reference, side by side.

Saves a 256 MiB float64 array (PICKLED_V4) and a plaintext loss history the way a job does,
loads them back, checks that both libraries wrote the same bytes, and prints the timings.

    python examples/checkpoint_demo.py [--mib 256]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import jobpersist
from jobpersist import PersistedJobDataFormat


def timed(label: str, func, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = func(*args, **kwargs)
    print(f"  {label:<44} {time.perf_counter() - start:8.3f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="array size in MiB")
    args = parser.parse_args()

    weights = np.random.default_rng(0).random(args.mib * (1 << 20) // 8)
    history = {"loss": [1 / (i + 1) for i in range(10_000)], "step": 10_000, "done": False}
    try:
        from braket.jobs import data_persistence as reference
    except ImportError:
        reference = None
        print("amazon-braket-sdk is not installed: showing jobpersist only")

    print(f"jobpersist backend: {jobpersist.BACKEND}")
    files = {}
    for name, module in (("jobpersist", jobpersist), ("reference", reference)):
        if module is None:
            continue
        directory = tempfile.mkdtemp(prefix=f"demo-{name}-")
        os.environ["AMZN_BRAKET_CHECKPOINT_DIR"] = directory
        os.environ["AMZN_BRAKET_JOB_NAME"] = "demo-job"
        print(f"{name}:")
        timed(
            f"save {args.mib} MiB array (pickled_v4)",
            module.save_job_checkpoint,
            {"weights": weights},
            checkpoint_file_suffix="weights",
            data_format=PersistedJobDataFormat.PICKLED_V4,
        )
        timed("save loss history (plaintext)", module.save_job_checkpoint, history, "history")
        loaded = timed(
            "load the array back",
            module.load_job_checkpoint,
            checkpoint_file_suffix="weights",
            allow_pickle=True,
        )
        assert np.array_equal(loaded["weights"], weights)
        assert module.load_job_checkpoint(checkpoint_file_suffix="history") == history
        files[name] = [
            os.path.join(directory, f"demo-job_{suffix}.json") for suffix in ("weights", "history")
        ]
    if len(files) == 2:
        same = all(
            open(a, "rb").read() == open(b, "rb").read()
            for a, b in zip(files["jobpersist"], files["reference"], strict=True)
        )
        print(f"files byte-identical to the reference's: {same}")
        if not same:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
