"""A Braket hybrid job that checkpoints every step and resumes after a restart.

The persistence calls are unchanged Braket code (`from braket.jobs import ...`); the two
lines under "jobpersist" make them jobpersist's: atomic, durable and fast. Ship this file in a
source folder made by `jobpersist bundle` (README: "Use it in a Braket job").

Hyperparameters (strings, as Braket passes them): `n_steps` (default 40), `n_params` (default
1,000,000 float64, an 8 MiB checkpoint) and `step_seconds` (default 0.05: the time one
"iteration" of the algorithm takes).
"""

import json
import os
import time

import numpy as np

# jobpersist: point braket.jobs' persistence functions at jobpersist before importing them.
import jobpersist

jobpersist.patch_braket()

from braket.jobs import load_job_checkpoint, save_job_checkpoint, save_job_result  # noqa: E402
from braket.jobs_data import PersistedJobDataFormat  # noqa: E402


def hyperparameters() -> dict[str, str]:
    path = os.environ.get("AMZN_BRAKET_HP_FILE")
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def step(params: np.ndarray, k: int) -> np.ndarray:
    """One deterministic 'optimizer' update, so a resumed run must end where a whole one does."""
    return params * 0.999 + np.sin(k + np.arange(params.size) * 1e-3)


def main() -> None:
    hp = hyperparameters()
    n_steps = int(hp.get("n_steps", 40))
    n_params = int(hp.get("n_params", 1_000_000))
    step_seconds = float(hp.get("step_seconds", 0.05))
    print(
        f"persistence: {save_job_checkpoint.__module__}.{save_job_checkpoint.__name__}, "
        f"backend {jobpersist.BACKEND}",
        flush=True,
    )

    try:
        checkpoint = load_job_checkpoint(checkpoint_file_suffix="state", allow_pickle=True)
        start, params = checkpoint["step"] + 1, checkpoint["params"]
        print(f"resumed after step {checkpoint['step']}", flush=True)
    except FileNotFoundError:
        start, params = 0, np.zeros(n_params)
        print("fresh start", flush=True)

    for k in range(start, n_steps):
        params = step(params, k)
        time.sleep(step_seconds)
        save_job_checkpoint(
            {"step": k, "params": params},
            checkpoint_file_suffix="state",
            data_format=PersistedJobDataFormat.PICKLED_V4,
        )
        print(f"step {k} saved", flush=True)

    save_job_result({"steps": n_steps, "checksum": float(params.sum())})
    print("done", flush=True)


if __name__ == "__main__":
    main()
