"""``patch_braket()`` against the real amazon-braket-sdk."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from support.jobenv import JobEnv

import jobpersist
from jobpersist import braket_patch, data_persistence
from jobpersist._format import results as _results

NAMES = ("save_job_checkpoint", "load_job_checkpoint", "save_job_result", "load_job_result")

braket_jobs = pytest.importorskip("braket.jobs")
reference: Any = importlib.import_module("braket.jobs.data_persistence")
ORIGINALS = {name: getattr(reference, name) for name in NAMES}


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    # Whatever a test did, Braket gets its functions back.
    while braket_patch._STATE.active:
        braket_patch.BraketPatch().undo()
    for name, original in ORIGINALS.items():
        setattr(reference, name, original)
        setattr(braket_jobs, name, original)


class WriteCounter:
    """Counts the envelopes jobpersist writes (the reference never calls this)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        original = data_persistence.write_envelope  # type: ignore[attr-defined]  # (imported)

        def write(path: str, *args: Any) -> None:
            self.paths.append(path)
            original(path, *args)

        monkeypatch.setattr(data_persistence, "write_envelope", write)
        monkeypatch.setattr(_results, "write_envelope", write)


def user_code_save_and_load() -> tuple[dict[str, Any], dict[str, Any]]:
    # Unchanged Braket user code: names imported from braket.jobs at call time.
    from braket.jobs import (
        load_job_checkpoint,
        load_job_result,
        save_job_checkpoint,
        save_job_result,
    )
    from braket.jobs_data import PersistedJobDataFormat

    save_job_checkpoint(
        {"step": 3, "params": [0.1, 0.2]}, "ckpt", PersistedJobDataFormat.PICKLED_V4
    )
    save_job_result({"energy": -1.5})
    return (
        load_job_checkpoint(checkpoint_file_suffix="ckpt", allow_pickle=True),
        load_job_result(),
    )


def test_patch_routes_braket_user_code_through_jobpersist(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = WriteCounter(monkeypatch)
    handle = jobpersist.patch_braket()
    assert handle.active
    for name in NAMES:
        assert getattr(reference, name) is getattr(data_persistence, name)
        assert getattr(braket_jobs, name) is getattr(data_persistence, name)
    checkpoint, result = user_code_save_and_load()
    assert checkpoint == {"step": 3, "params": [0.1, 0.2]}
    assert result == {"energy": -1.5}
    assert counter.paths == [
        str(job_env.checkpoint_file("ckpt")),
        str(job_env.results_path),
    ]

    handle.undo()
    assert not handle.active
    for name in NAMES:
        assert getattr(reference, name) is ORIGINALS[name]
        assert getattr(braket_jobs, name) is ORIGINALS[name]
    counter.paths.clear()
    checkpoint, result = user_code_save_and_load()
    assert counter.paths == [], "after undo, the reference writes its files itself"
    assert checkpoint == {"step": 3, "params": [0.1, 0.2]}


def test_patch_covers_other_sdk_modules() -> None:
    aws_quantum_job = importlib.import_module("braket.aws.aws_quantum_job")
    assert aws_quantum_job.load_job_result is ORIGINALS["load_job_result"]
    with jobpersist.patch_braket():
        assert aws_quantum_job.load_job_result is data_persistence.load_job_result
    assert aws_quantum_job.load_job_result is ORIGINALS["load_job_result"]


def test_same_files_as_before_patch(job_env: JobEnv) -> None:
    from braket.jobs import save_job_checkpoint

    save_job_checkpoint({"a": [1, 2, {"b": None}]}, "ref")
    with jobpersist.patch_braket():
        from braket.jobs import save_job_checkpoint as patched

        patched({"a": [1, 2, {"b": None}]}, "ours")
    assert job_env.checkpoint_file("ours").read_bytes() == (
        job_env.checkpoint_file("ref").read_bytes()
    )


def test_context_manager_and_nesting() -> None:
    with jobpersist.patch_braket() as outer:
        inner = jobpersist.patch_braket()  # calling twice is harmless
        assert reference.save_job_checkpoint is data_persistence.save_job_checkpoint
        inner.undo()
        inner.undo()  # undoing twice is harmless
        # The outer handle still holds the patch.
        assert reference.save_job_checkpoint is data_persistence.save_job_checkpoint
        assert outer.active
    assert not outer.active
    assert reference.save_job_checkpoint is ORIGINALS["save_job_checkpoint"]
    assert braket_jobs.save_job_checkpoint is ORIGINALS["save_job_checkpoint"]
    assert "undone" in repr(outer)


def test_undo_leaves_third_party_patch_alone() -> None:
    handle = jobpersist.patch_braket()

    def mine(*args: Any, **kwargs: Any) -> None:
        return None

    reference.save_job_result = mine
    handle.undo()
    assert reference.save_job_result is mine
    assert reference.load_job_result is ORIGINALS["load_job_result"]


@pytest.mark.parametrize("blocked", ["braket", "braket.jobs", "braket.jobs.data_persistence"])
def test_clear_error_without_sdk(monkeypatch: pytest.MonkeyPatch, blocked: str) -> None:
    for name in list(sys.modules):
        if name == blocked or name.startswith(blocked + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, blocked, None)  # `import` raises ImportError
    with pytest.raises(ImportError) as error:
        jobpersist.patch_braket()
    assert isinstance(error.value, braket_patch.BraketNotInstalledError)
    assert "pip install amazon-braket-sdk" in str(error.value)
    assert braket_patch._STATE.active == 0
