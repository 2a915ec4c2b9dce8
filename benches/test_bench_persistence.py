"""pytest-benchmark cases: ``pytest benches/ --benchmark-only`` (not part of the test suite).

In-process and small, for quick relative comparisons while developing; the targets
are checked by ``benches/compare.py``, which runs every case in a fresh process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import jobpersist
from jobpersist import _codec

MiB = 1 << 20
IMPLS = ("native", "python", "reference")


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The module whose save/load functions are timed, in a fresh checkpoint directory."""
    os.environ["AMZN_BRAKET_CHECKPOINT_DIR"] = str(tmp_path)
    os.environ["AMZN_BRAKET_JOB_NAME"] = "bench"
    os.environ["JOBPERSIST_FSYNC"] = "0"
    if request.param == "reference":
        braket = pytest.importorskip("braket.jobs.data_persistence")
        yield braket
        return
    previous = _codec.BACKEND
    _codec.use(request.param)
    try:
        yield jobpersist
    finally:
        _codec.use(previous)


PAYLOADS: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
    "array-16MiB": (
        "pickled_v4",
        lambda: {"w": np.random.default_rng(0).random(16 * MiB // 8)},
    ),
    "small-10k": ("pickled_v4", lambda: {f"k{i}": (i, i / 3, f"v{i}") for i in range(10_000)}),
    "floats-200k": (
        "plaintext",
        lambda: {"params": np.random.default_rng(0).random(200_000).tolist(), "step": 1},
    ),
}


@pytest.mark.parametrize("case", list(PAYLOADS))
def test_save(benchmark: Any, impl: Any, case: str) -> None:
    fmt, make = PAYLOADS[case]
    data = make()
    benchmark(impl.save_job_checkpoint, data, data_format=fmt)


@pytest.mark.parametrize("case", list(PAYLOADS))
def test_load(benchmark: Any, impl: Any, case: str) -> None:
    fmt, make = PAYLOADS[case]
    impl.save_job_checkpoint(make(), data_format=fmt)
    benchmark(impl.load_job_checkpoint, allow_pickle=True)
