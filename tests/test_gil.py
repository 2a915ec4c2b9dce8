"""The native backend releases the GIL while it encodes and writes a large value."""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable

import pytest

import jobpersist
from jobpersist import PersistedJobDataFormat, _codec

# Subprocesses, large saves or many rounds: `make test-quick` leaves these out.
pytestmark = pytest.mark.slow


def _bytes_value() -> dict[str, object]:
    return {"blob": bytes(range(256)) * (128 * 4096)}  # 128 MiB


def _array_value() -> dict[str, object]:
    # An array's memory is encoded with the GIL held, a step (1 MiB) at a time; the writes
    # of the text release it.
    np = pytest.importorskip("numpy")
    return {"blob": np.random.default_rng(3).random(16 << 20)}  # 128 MiB


@pytest.mark.usefixtures("job_env")
@pytest.mark.parametrize("make_value", [_bytes_value, _array_value], ids=["bytes", "array"])
def test_other_threads_run_during_a_large_native_save(
    backend: str, make_value: Callable[[], dict[str, object]]
) -> None:
    if backend != "native":
        pytest.skip("the GIL release is the native backend's promise")
    value = make_value()
    started = threading.Event()
    stop = threading.Event()
    counts: list[int] = [0]

    def spin() -> None:
        started.set()
        while not stop.is_set():
            counts[0] += 1

    def progress_during(action: Callable[[], object]) -> int:
        time.sleep(0.01)
        before = counts[0]
        action()
        return counts[0] - before

    spinner = threading.Thread(target=spin)
    spinner.start()
    started.wait()
    try:
        # Control: pickle.dumps holds the GIL throughout; the spinner only gets the slice
        # before the call (one switch interval), whatever the call's length.
        held = progress_during(lambda: pickle.dumps(value["blob"], protocol=4))
        saved = progress_during(
            lambda: jobpersist.save_job_checkpoint(
                value, data_format=PersistedJobDataFormat.PICKLED_V4
            )
        )
    finally:
        stop.set()
        spinner.join()
    assert _codec.BACKEND == "native"
    # The save takes several times longer than the control and releases the GIL for much
    # of it (an array's encoding holds it, a step at a time), so the spinner runs many switch
    # intervals' worth; a save holding the GIL throughout would give about ``held``. On a
    # busy 2-core machine the spinner also waits for the writer thread: 4.5x was seen.
    assert saved > 3 * max(held, 1_000), (saved, held)
