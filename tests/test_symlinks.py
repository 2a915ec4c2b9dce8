"""A symlinked checkpoint is replaced through its link, as the reference writes through it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import jobpersist


@pytest.mark.usefixtures("backend")
def test_save_through_a_symlinked_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_dir = tmp_path / "real"
    link_dir = tmp_path / "ckpt"
    real_dir.mkdir()
    link_dir.mkdir()
    real = real_dir / "job.json"
    real.write_bytes(b"old")
    (link_dir / "job.json").symlink_to(os.path.relpath(real, link_dir))
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(link_dir))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "job")
    jobpersist.save_job_checkpoint({"a": 1})
    assert (link_dir / "job.json").is_symlink()
    assert jobpersist.load_job_checkpoint() == {"a": 1}
    assert real.read_bytes().startswith(b'{"braketSchemaHeader"')
    assert sorted(os.listdir(real_dir)) == ["job.json"]
    assert sorted(os.listdir(link_dir)) == ["job.json"]


@pytest.mark.usefixtures("backend")
def test_a_symlink_loop_is_an_oserror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "job.json").symlink_to("job.json")
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "job")
    with pytest.raises(OSError):
        jobpersist.save_job_checkpoint({"a": 1})
