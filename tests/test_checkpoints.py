"""Checkpoint history (``jobpersist.checkpoints``): file names the reference loads, retention
against a model over random sequences of saves, metrics and settings, restore past damaged
files and from a previous job's copied files, ranks, background saves, durability before any
delete, and the ``jobpersist checkpoints`` command. Both backends."""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.jobenv import JobEnv
from support.values import canon

import jobpersist
from jobpersist import checkpoints, cli
from jobpersist.checkpoints import (
    Checkpoint,
    CheckpointManager,
    DamagedCheckpointError,
    DamagedCheckpointWarning,
    rank_from_environment,
)

F = jobpersist.PersistedJobDataFormat
FORMATS = (F.PLAINTEXT, F.PICKLED_V4)

pytestmark = pytest.mark.usefixtures("backend")


@pytest.fixture(autouse=True)
def _idle() -> Iterator[None]:
    """No retention left running into the next test."""
    yield
    checkpoints._JANITOR.drain()


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def sample(step: int, fmt: F) -> dict[str, Any]:
    if fmt == F.PICKLED_V4:
        return {"params": np.arange(step, step + 50, dtype=np.float64), "step": step}
    return {"params": [step / 3, step * 2.5], "step": step, "note": f"step {step}"}


def truncate(path: str, keep: float = 0.5) -> None:
    size = os.path.getsize(path)
    os.truncate(path, int(size * keep))


def zero_middle(path: str) -> None:
    """Zeros 64 bytes in the middle, as a torn write or a bad block leaves them."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        f.write(b"\0" * 64)


# --------------------------------------------------------------------------------------------
# Files any Braket tool can read
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_kept_file_loads_with_the_reference(job_env: JobEnv, fmt: F) -> None:
    from braket.jobs.data_persistence import load_job_checkpoint as reference_load

    ckpt = CheckpointManager(keep_last=3, keep_best=1, metric="cost", data_format=fmt)
    costs = [5.0, 1.5, 3.0, 2.0, 4.0, 6.0, 7.0]
    for step, cost in enumerate(costs):
        ckpt.save(step, {**sample(step, fmt), "cost": cost})
    ckpt.wait()
    kept = ckpt.steps()
    assert [c.step for c in kept] == [1, 4, 5, 6]
    for c in kept:
        assert c.name == f"{job_env.job_name}_{c.suffix}.json"
        expected = {**sample(c.step, fmt), "cost": costs[c.step]}
        theirs = reference_load(
            job_env.job_name, checkpoint_file_suffix=c.suffix, allow_pickle=True
        )
        ours = jobpersist.load_job_checkpoint(
            job_env.job_name, checkpoint_file_suffix=c.suffix, allow_pickle=True
        )
        assert canon(theirs) == canon(expected) == canon(ours)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_managed_file_holds_the_bytes_save_job_checkpoint_writes(
    job_env: JobEnv, tmp_path: Path, fmt: F
) -> None:
    from braket.jobs.data_persistence import save_job_checkpoint as reference_save

    ckpt = CheckpointManager(metric="loss", data_format=fmt)
    data = {**sample(7, fmt), "loss": 0.125}
    ckpt.save(7, data)
    ckpt.wait()
    (c,) = ckpt.steps()
    assert c.suffix == "ckpt-000000007_loss_0.125"
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    os.environ["AMZN_BRAKET_CHECKPOINT_DIR"] = str(reference_dir)
    reference_save(data, c.suffix, fmt)
    assert Path(c.path).read_bytes() == (reference_dir / c.name).read_bytes()


def test_names_sort_by_step_and_metrics_read_back_exactly(job_env: JobEnv) -> None:
    ckpt = CheckpointManager(metric="val_loss.v2", mode="max")
    metrics = [0.1, -1e-05, 1e300, float("inf"), float("-inf"), float("nan"), 2.0, 1 / 3]
    for step, value in zip(
        [0, 9, 10, 99, 100, 12345, 999_999_999, 1_000_000_000], metrics, strict=True
    ):
        ckpt.save(step, {"x": step}, metric=value)
    ckpt.wait()
    files = names(job_env.checkpoint_dir)
    assert all("+" not in n and "=" not in n for n in files)
    assert files[:-1] == sorted(files[:-1], key=lambda n: int(n.split("-")[2].split("_")[0]))
    listed = ckpt.steps()
    assert [c.step for c in listed] == [0, 9, 10, 99, 100, 12345, 999_999_999, 1_000_000_000]
    for c, value in zip(listed, metrics, strict=True):
        assert c.metric_name == "val_loss.v2"
        assert c.metric is not None
        assert (math.isnan(c.metric) and math.isnan(value)) or c.metric == value


def test_files_not_written_by_a_manager_are_never_touched(job_env: JobEnv) -> None:
    d = job_env.checkpoint_dir
    job = job_env.job_name
    foreign = [
        f"{job}.json",
        f"{job}_final.json",
        f"{job}_ckpt-42.json",  # too few digits
        f"{job}_ckpt-0000000042.json",  # a leading zero too many
        f"{job}_ckpt-000000001_cost_1e+05.json",  # a metric as a manager never writes it
        f"{job}_ckpt-000000001_cost_01.json",
        f"{job}_best-000000001.json",  # another prefix
        f"{job}_ckpt-000000001.json.bak",
        f".{job}_ckpt-000000002.json.jptmp.1.abcd",  # a save's temp
    ]
    for name in foreign:
        (d / name).write_text("{}")
    (d / f"{job}_ckpt-000000003.json").mkdir()
    (d / f"{job}_ckpt-000000004.json").symlink_to(d / f"{job}.json")
    ckpt = CheckpointManager(keep_last=1, metric="cost")
    for step in range(5, 10):
        ckpt.save(step, {"cost": float(step)})
    ckpt.wait()
    assert [c.step for c in ckpt.steps()] == [9]
    left = set(names(d))
    assert set(foreign) | {f"{job}_ckpt-000000003.json", f"{job}_ckpt-000000004.json"} <= left
    assert len(left) == len(foreign) + 3


def test_another_prefix_is_another_history(job_env: JobEnv) -> None:
    a = CheckpointManager(keep_last=1)
    b = CheckpointManager(keep_last=2, prefix="best-params")
    for step in range(4):
        a.save(step, {"a": step})
        b.save(step, {"b": step})
    a.wait()
    b.wait()
    assert [c.step for c in a.steps()] == [3]
    assert [c.step for c in b.steps()] == [2, 3]


def test_saving_a_step_again_replaces_it(job_env: JobEnv) -> None:
    ckpt = CheckpointManager(metric="cost")
    ckpt.save(1, {"cost": 3.0, "v": "old"})
    ckpt.save(1, {"cost": 2.0, "v": "new"})
    ckpt.wait()
    (c,) = ckpt.steps()
    assert c.metric == 2.0
    assert ckpt.restore() == (1, {"cost": 2.0, "v": "new"})


def test_a_pending_pass_never_deletes_a_newer_save_of_its_step(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retention pass of the first save of a step runs just as the second one's file is
    in place: it must take that file for the step's checkpoint, not for one to delete."""
    gate = threading.Event()
    real_retain = checkpoints._retain
    from jobpersist.data_persistence import save_job_checkpoint as real_save

    calls: list[str] = []

    def held(*args: Any) -> None:
        gate.wait(30)
        real_retain(*args)

    def save(*args: Any) -> None:
        real_save(*args)
        calls.append(args[1])
        if len(calls) == 2:
            gate.set()  # the first save's pass runs now, before save() returns
            checkpoints._JANITOR.drain()

    monkeypatch.setattr("jobpersist.checkpoints._retain", held)
    monkeypatch.setattr("jobpersist.checkpoints.save_job_checkpoint", save)
    ckpt = CheckpointManager(metric="cost")
    ckpt.save(1, {"cost": 3.0, "v": "old"})
    ckpt.save(1, {"cost": 2.0, "v": "new"})
    ckpt.wait()
    assert [c.metric for c in ckpt.steps()] == [2.0]
    assert ckpt.restore() == (1, {"cost": 2.0, "v": "new"})


# --------------------------------------------------------------------------------------------
# Retention: a model of the policy, over random sequences
# --------------------------------------------------------------------------------------------
def model_kept(
    files: dict[int, float | None],
    saved: int,
    keep_last: int | None,
    keep_best: int,
    mode: str,
    keep_every: int | None,
) -> dict[int, float | None]:
    """The files (step -> metric) the policy keeps after ``saved`` was saved, by definition."""
    steps = sorted(files)
    if keep_last is None:
        return {s: files[s] for s in steps}
    keep = set(steps[-keep_last:]) | {steps[-1], saved}
    ranked = [s for s in steps if files[s] is not None and not math.isnan(files[s])]  # type: ignore[arg-type]
    sign = 1 if mode == "min" else -1
    ranked.sort(key=lambda s: (sign * files[s], -s))  # type: ignore[operator]
    keep |= set(ranked[:keep_best])
    if keep_every:
        keep |= {s for s in steps if s % keep_every == 0}
    return {s: files[s] for s in steps if s in keep}


SETTINGS = st.fixed_dictionaries(
    {
        "keep_last": st.one_of(st.none(), st.integers(1, 5)),
        "keep_best": st.integers(0, 3),
        "mode": st.sampled_from(["min", "max"]),
        "keep_every": st.one_of(st.none(), st.integers(2, 7)),
    }
)
METRICS = st.one_of(
    st.sampled_from([0.0, 1.0, 1.0, -2.5, 3.25, float("inf"), float("nan")]),
    st.floats(-10, 10, allow_nan=False),
)
# Mostly forward, sometimes the same step again, sometimes back (a run that did not restore).
STEP_MOVES = st.sampled_from([1, 1, 1, 1, 2, 3, 0, -2])


def walk(moves: list[int]) -> list[int]:
    steps, step = [], 0
    for move in moves:
        step = max(0, step + move)
        steps.append(step)
    return steps


def check_invariants(
    kept: dict[int, float | None], saved: int, keep_best: int, mode: str, all_seen: set[int]
) -> None:
    assert saved in kept
    assert max(kept) == max(all_seen & set(kept) | {max(kept)})
    ranked = [m for m in kept.values() if m is not None and not math.isnan(m)]
    if keep_best and ranked:
        best = min(ranked) if mode == "min" else max(ranked)
        assert best in ranked


@given(
    policy=SETTINGS,
    moves=st.lists(STEP_MOVES, min_size=1, max_size=400),
    metrics=st.lists(METRICS, min_size=400, max_size=400),
)
def test_retention_plan_matches_the_model_over_long_sequences(
    policy: dict[str, Any], moves: list[int], metrics: list[float]
) -> None:
    """The planner alone (no files), over up to 400 saves: the kept set is the model's, and
    the newest and the best are always among it."""
    rule = checkpoints._Policy(
        policy["keep_last"], policy["keep_best"], policy["mode"], policy["keep_every"], "cost"
    )
    listed: dict[int, Checkpoint] = {}
    model: dict[int, float | None] = {}
    everything: dict[int, float] = {}
    resaved = False
    for clock, (step, metric) in enumerate(zip(walk(moves), metrics, strict=False)):
        c = Checkpoint(
            step, "job", "", f"/d/job_{step}_{metric!r}.json", 1, clock, "plaintext", "cost",
            metric, None,
        )  # fmt: skip
        same = [old for old in listed.values() if old.step == step]
        files = (
            [*listed.values(), c] if not same or same[0].name != c.name else list(listed.values())
        )
        if same and same[0].name == c.name:
            files = [x for x in files if x.step != step] + [c]
        for doomed in checkpoints._plan_deletions(rule, files, c.name):
            files.remove(doomed)
        listed = {x.step: x for x in files}
        assert len(listed) == len(files), "two files of one step left"
        model[step] = metric
        model = model_kept(model, step, policy["keep_last"], policy["keep_best"],
                           policy["mode"], policy["keep_every"])  # fmt: skip
        got = {s: listed[s].metric for s in sorted(listed)}
        assert canon(got) == canon(model)
        # Independently of the model: the newest step ever saved and the file just saved
        # are kept; while no step was saved twice, so is the best metric ever saved.
        everything[step] = metric
        resaved = resaved or len(everything) < clock + 1
        assert step in got and max(got) == max(everything)
        ranked = [m for m in everything.values() if not math.isnan(m)]
        if policy["keep_best"] and policy["keep_last"] is not None and ranked and not resaved:
            best = min(ranked) if policy["mode"] == "min" else max(ranked)
            assert best in got.values()


@given(
    policy=SETTINGS,
    use_metric=st.booleans(),
    moves=st.lists(STEP_MOVES, min_size=1, max_size=60),
    metrics=st.lists(METRICS, min_size=60, max_size=60),
    background=st.lists(st.booleans(), min_size=60, max_size=60),
)
def test_retention_on_disk_matches_the_model(
    job_env: JobEnv,
    policy: dict[str, Any],
    use_metric: bool,
    moves: list[int],
    metrics: list[float],
    background: list[bool],
) -> None:
    """Real saves (synchronous and background), then the directory: exactly the model's
    files, every one of them loading to what was saved."""
    d = job_env.checkpoint_dir
    shutil.rmtree(d)
    d.mkdir()
    if not use_metric:
        policy = {**policy, "keep_best": 0}
    ckpt = CheckpointManager(**policy, metric="cost" if use_metric else None)
    model: dict[int, float | None] = {}
    saved_data: dict[int, dict[str, Any]] = {}
    for step, metric, in_background in zip(walk(moves), metrics, background, strict=False):
        data = {"step": step, "m": repr(metric)}
        if use_metric:
            future = ckpt.save(step, data, metric=metric, background=in_background)
        else:
            future = ckpt.save(step, data, background=in_background)
        assert (future is None) != in_background
        ckpt.wait()
        saved_data[step] = data
        model[step] = metric if use_metric else None
        model = model_kept(model, step, policy["keep_last"], policy["keep_best"],
                           policy["mode"], policy["keep_every"])  # fmt: skip
        listed = ckpt.steps()
        assert [c.step for c in listed] == sorted(model)
        assert canon({c.step: c.metric for c in listed}) == canon(model)
    for c in ckpt.steps():
        assert jobpersist.load_job_checkpoint(checkpoint_file_suffix=c.suffix) == saved_data[c.step]


def test_overlapping_background_saves_keep_at_least_the_model(job_env: JobEnv) -> None:
    """Background saves queued behind each other: retention of an older one may run after a
    newer one's; nothing the policy keeps is lost, and the next save settles the rest."""
    ckpt = CheckpointManager(keep_last=2, keep_best=1, metric="cost")
    costs = [3.0, 1.0, 2.0, 5.0, 4.0, 6.0, 7.0, 8.0]
    for step, cost in enumerate(costs):
        ckpt.save(step, {"cost": cost, "blob": "x" * 200_000}, background=True)
    ckpt.wait()
    steps = [c.step for c in ckpt.steps()]
    assert {1, 6, 7} <= set(steps)
    ckpt.save(8, {"cost": 9.0})
    ckpt.wait()
    assert [c.step for c in ckpt.steps()] == [1, 7, 8]


def test_only_the_current_jobs_files_are_deleted(job_env: JobEnv) -> None:
    ckpt = CheckpointManager(keep_last=1)
    ckpt.save(0, {"a": 0})
    ckpt.wait()
    (job_env.checkpoint_dir / f"{job_env.job_name}_ckpt-000000000.json").rename(
        job_env.checkpoint_dir / "previous-job_ckpt-000000000.json"
    )
    for step in range(1, 4):
        ckpt.save(step, {"a": step})
    ckpt.wait()
    assert [(c.job_name, c.step) for c in ckpt.steps()] == [
        ("previous-job", 0),
        (job_env.job_name, 3),
    ]


# --------------------------------------------------------------------------------------------
# Durability before any delete
# --------------------------------------------------------------------------------------------
def test_deferred_fsyncs_are_flushed_before_the_first_delete(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobpersist import _durability

    events: list[str] = []
    real_flush, real_unlink = _durability.flush, os.unlink

    def flush() -> None:
        events.append("flush")
        real_flush()

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        events.append(f"unlink {os.path.basename(path)}")
        real_unlink(path, *args, **kwargs)

    monkeypatch.setenv("JOBPERSIST_DURABILITY", "deferred")
    monkeypatch.delenv("JOBPERSIST_FSYNC", raising=False)
    monkeypatch.setattr(_durability, "flush", flush)
    monkeypatch.setattr(os, "unlink", unlink)
    ckpt = CheckpointManager(keep_last=1)
    ckpt.save(0, {"a": 0})
    ckpt.wait()
    assert "unlink" not in " ".join(events)  # nothing to delete yet
    events.clear()
    ckpt.save(1, {"a": 1})
    ckpt.wait()
    assert events[-2:] == ["flush", f"unlink {job_env.job_name}_ckpt-000000000.json"]


def test_with_fsync_off_the_new_file_is_fsynced_before_a_delete(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_unlink = os.fsync, os.unlink

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        events.append(f"fsync {os.path.basename(target)}")
        real_fsync(fd)

    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        events.append(f"unlink {os.path.basename(path)}")
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "unlink", unlink)
    assert os.environ["JOBPERSIST_FSYNC"] == "0"
    ckpt = CheckpointManager(keep_last=1)
    ckpt.save(0, {"a": 0})
    ckpt.save(1, {"a": 1})
    ckpt.wait()
    job = job_env.job_name
    assert events == [
        f"fsync {job}_ckpt-000000001.json",
        f"fsync {job_env.checkpoint_dir.name}",
        f"unlink {job}_ckpt-000000000.json",
    ]


def test_a_failed_delete_warns_and_the_saves_go_on(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(os, "unlink", unlink)
    ckpt = CheckpointManager(keep_last=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ckpt.save(0, {"a": 0})
        ckpt.save(1, {"a": 1})
        ckpt.wait()
    assert any("could not delete" in str(w.message) for w in caught)
    assert [c.step for c in ckpt.steps()] == [0, 1]


# --------------------------------------------------------------------------------------------
# Restore
# --------------------------------------------------------------------------------------------
def test_a_fresh_job_restores_nothing(job_env: JobEnv) -> None:
    assert CheckpointManager().restore() is None
    shutil.rmtree(job_env.checkpoint_dir)
    assert CheckpointManager().restore() is None  # no directory yet


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("damage", [truncate, zero_middle, lambda p: os.truncate(p, 0)])
def test_a_damaged_newest_file_is_skipped_with_a_warning(
    job_env: JobEnv, fmt: F, damage: Any
) -> None:
    ckpt = CheckpointManager(keep_last=3, data_format=fmt)
    for step in range(3):
        ckpt.save(step, sample(step, fmt))
    ckpt.wait()
    newest = ckpt.steps()[-1]
    damage(newest.path)
    with pytest.warns(DamagedCheckpointWarning) as caught:
        found = ckpt.restore(allow_pickle="safe")
    assert found is not None
    assert found[0] == 1
    assert canon(found[1]) == canon(sample(1, fmt))
    assert ckpt.restored is not None and ckpt.restored.step == 1
    (warning,) = caught
    message = str(warning.message)
    assert newest.path in message
    assert any(word in message for word in ("incomplete", "damaged", "empty"))


def test_a_truncated_file_is_told_from_its_last_bytes(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = CheckpointManager(data_format=F.PICKLED_V4)
    ckpt.save(0, {"w": np.zeros(1000)})
    ckpt.save(1, {"w": np.ones(300_000)})
    ckpt.wait()
    newest = ckpt.steps()[-1]
    truncate(newest.path, 0.9)
    loaded: list[str] = []
    from jobpersist._format.load import load_file as real_load

    def load(path: str, mode: Any) -> dict[str, Any]:
        loaded.append(os.path.basename(path))
        return real_load(path, mode)

    monkeypatch.setattr("jobpersist.checkpoints.load_file", load)
    with pytest.warns(DamagedCheckpointWarning, match="incomplete"):
        found = ckpt.restore(allow_pickle="safe")
    assert found is not None and found[0] == 0
    assert loaded == [ckpt.steps()[0].name]  # the damaged file was never loaded


def test_when_no_checkpoint_loads_restore_raises(job_env: JobEnv) -> None:
    ckpt = CheckpointManager()
    ckpt.save(0, {"a": 0})
    ckpt.save(1, {"a": 1})
    ckpt.wait()
    for c in ckpt.steps():
        truncate(c.path)
    with pytest.warns(DamagedCheckpointWarning), pytest.raises(DamagedCheckpointError) as info:
        ckpt.restore()
    assert "no checkpoint loads (2 tried)" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_the_pickle_policy_is_not_damage(job_env: JobEnv) -> None:
    ckpt = CheckpointManager(data_format=F.PICKLED_V4)
    ckpt.save(0, {"a": 0})
    ckpt.wait()
    with pytest.raises(RuntimeError):
        ckpt.restore()  # allow_pickle=False: refused, not skipped
    ckpt.save(1, {"a": np.ones(2)})
    ckpt.wait()
    found = ckpt.restore(allow_pickle="safe")
    assert found is not None and found[0] == 1


def test_a_previous_jobs_copied_files_are_found(job_env: JobEnv) -> None:
    """A restarted job: copy_checkpoints_from_job copies the previous job's files in under
    the previous job's name."""
    ckpt = CheckpointManager(keep_last=2, metric="cost")
    for step in range(5):
        ckpt.save(step, {"cost": 10.0 - step, "w": [step]})
    ckpt.wait()
    d = job_env.checkpoint_dir
    for p in list(d.iterdir()):
        p.rename(d / p.name.replace(job_env.job_name, "previous-job", 1))
    os.environ["AMZN_BRAKET_JOB_NAME"] = "restarted-job"
    resumed = CheckpointManager(keep_last=2, metric="cost")
    found = resumed.restore()
    assert found == (4, {"cost": 6.0, "w": [4]})
    assert resumed.restored is not None
    assert resumed.restored.job_name == "previous-job"
    assert [(c.job_name, c.step, c.metric) for c in resumed.steps()] == [
        ("previous-job", 3, 7.0),
        ("previous-job", 4, 6.0),
    ]
    # Its own save of the same step is preferred; the copied files are never deleted.
    for step in (4, 5, 6, 7):
        resumed.save(step, {"cost": 1.0 * step, "w": ["new", step]})
    resumed.wait()
    assert [(c.job_name, c.step) for c in resumed.steps()] == [
        ("previous-job", 3),
        ("previous-job", 4),
        ("restarted-job", 6),
        ("restarted-job", 7),
    ]
    assert resumed.restore(step=4) == (4, {"cost": 6.0, "w": [4]})
    assert resumed.restored is not None and resumed.restored.job_name == "previous-job"


def test_the_current_job_wins_a_tie(job_env: JobEnv) -> None:
    ckpt = CheckpointManager()
    ckpt.save(3, {"who": "current"})
    ckpt.wait()
    d = job_env.checkpoint_dir
    (d / "other-job_ckpt-000000003.json").write_bytes(
        (d / f"{job_env.job_name}_ckpt-000000003.json").read_bytes().replace(b"current", b"other")
    )
    assert ckpt.restore() == (3, {"who": "current"})


def test_restore_of_a_given_step(job_env: JobEnv) -> None:
    ckpt = CheckpointManager(metric="cost", keep_best=1, keep_last=1)
    for step, cost in enumerate([2.0, 1.0, 3.0, 4.0]):
        ckpt.save(step, {"cost": cost})
    ckpt.wait()
    assert ckpt.best_step() == 1
    assert ckpt.latest_step() == 3
    best = ckpt.best_step()
    assert best is not None
    assert ckpt.restore(step=best) == (1, {"cost": 1.0})
    with pytest.raises(FileNotFoundError):
        ckpt.restore(step=2)


def test_steps_lists_job_size_format_and_metric(job_env: JobEnv) -> None:
    ckpt = CheckpointManager(metric="cost", data_format=F.PICKLED_V4)
    ckpt.save(2, {"cost": np.float64(0.5), "w": np.ones(10)})
    ckpt.wait()
    (c,) = ckpt.steps()
    assert (c.step, c.job_name, c.data_format, c.metric_name, c.metric, c.problem) == (
        2, job_env.job_name, "pickled_v4", "cost", 0.5, None,
    )  # fmt: skip
    assert c.size == os.path.getsize(c.path)


# --------------------------------------------------------------------------------------------
# Settings, metrics, ranks
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"keep_last": 0},
        {"keep_last": True},
        {"keep_best": -1},
        {"keep_best": 1},  # no metric
        {"keep_every": 0},
        {"mode": "lowest"},
        {"metric": "a/b"},
        {"metric": "a b"},
        {"metric": "_x"},
        {"prefix": "a_b"},
        {"prefix": "../x"},
        {"prefix": ""},
        {"data_format": "pickle"},
        {"rank": -1},
    ],
)
def test_invalid_settings(job_env: JobEnv, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        CheckpointManager(**kwargs)


def test_metric_from_the_data_or_passed(job_env: JobEnv) -> None:
    ckpt = CheckpointManager(metric="cost")
    with pytest.raises(ValueError, match="no 'cost' key"):
        ckpt.save(0, {"a": 1})
    with pytest.raises(TypeError, match="must be a number"):
        ckpt.save(0, {"cost": "low"})
    with pytest.raises(ValueError, match="step"):
        ckpt.save(-1, {"cost": 1.0})
    with pytest.raises(ValueError, match="step"):
        ckpt.save(1.0, {"cost": 1.0})  # type: ignore[arg-type]
    ckpt.save(np.int64(0), {"cost": np.float64(2.5)})
    ckpt.save(1, {"a": 1}, metric=0.75)
    ckpt.wait()
    assert [c.metric for c in ckpt.steps()] == [2.5, 0.75]
    assert names(job_env.checkpoint_dir) == [
        f"{job_env.job_name}_ckpt-000000000_cost_2.5.json",
        f"{job_env.job_name}_ckpt-000000001_cost_0.75.json",
    ]
    with pytest.raises(ValueError, match="metric"):
        CheckpointManager().save(2, {"a": 1}, metric=1.0)


@pytest.mark.parametrize(
    ("environ", "rank"),
    [
        ({}, 0),
        ({"OMPI_COMM_WORLD_RANK": "3", "RANK": "1"}, 3),
        ({"PMI_RANK": "2"}, 2),
        ({"RANK": "5", "SM_HOSTS": '["algo-1", "algo-2"]', "SM_CURRENT_HOST": "algo-1"}, 5),
        ({"SM_HOSTS": '["algo-2", "algo-1", "algo-3"]', "SM_CURRENT_HOST": "algo-2"}, 1),
        ({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"}, 0),
        ({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "elsewhere"}, 0),
    ],
)
def test_rank_from_the_launchers_environment(environ: dict[str, str], rank: int) -> None:
    assert rank_from_environment(environ) == rank


@pytest.mark.parametrize(
    "environ",
    [
        {"RANK": "one"},
        {"RANK": "\u00b2"},  # a digit to str.isdigit, not to int()
        {"OMPI_COMM_WORLD_RANK": "-1"},
        {"SM_HOSTS": "algo-1", "SM_CURRENT_HOST": "algo-1"},
    ],
)
def test_a_rank_variable_that_is_not_a_rank(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="rank="):
        rank_from_environment(environ)


def test_only_rank_zero_writes_and_every_rank_restores(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SM_HOSTS", '["algo-1", "algo-2"]')
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-2")
    worker = CheckpointManager(keep_last=1)
    assert (worker.rank, worker.writes) == (1, False)
    assert worker.save(0, {"a": 0}) is None
    assert worker.save(1, {"a": 1}, background=True) is None
    worker.wait()
    assert names(job_env.checkpoint_dir) == []
    leader = CheckpointManager(keep_last=1, rank=0)
    leader.save(0, {"a": 0})
    leader.wait()
    assert worker.restore() == (0, {"a": 0})


# --------------------------------------------------------------------------------------------
# Background saves
# --------------------------------------------------------------------------------------------
def test_a_background_save_returns_its_future(job_env: JobEnv) -> None:
    ckpt = CheckpointManager(keep_last=1, data_format=F.PICKLED_V4)
    first = ckpt.save(0, {"w": np.zeros(10)}, background=True)
    second = ckpt.save(1, {"w": np.ones(10)}, background=True)
    assert first is not None and second is not None
    assert first.result(30) == str(job_env.checkpoint_file("ckpt-000000000"))
    ckpt.wait(30)
    assert [c.step for c in ckpt.steps()] == [1]


def test_a_failed_background_save_is_raised_by_wait(job_env: JobEnv) -> None:
    ckpt = CheckpointManager(keep_last=1)
    ckpt.save(0, {"a": 0})
    ckpt.wait()
    shutil.rmtree(job_env.checkpoint_dir)
    future = ckpt.save(1, {"a": 1}, background=True)
    assert future is not None
    with pytest.raises(FileNotFoundError):
        ckpt.wait(30)
    ckpt.wait(30)  # raised once


def test_a_forked_child_starts_with_idle_managers(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_retain = checkpoints._retain

    def held(*args: Any) -> None:
        gate.wait(30)
        real_retain(*args)

    monkeypatch.setattr("jobpersist.checkpoints._retain", held)
    ckpt = CheckpointManager(keep_last=1)
    ckpt.save(0, {"a": 0})  # its retention pass now waits for the gate, holding its lock
    with pytest.raises(TimeoutError):
        ckpt.wait(0.05)
    pid = os.fork()
    if pid == 0:  # the child: no retention thread, nothing of the parent's pending
        code = 1
        try:
            ckpt.wait(5)
            monkeypatch.setattr("jobpersist.checkpoints._retain", real_retain)
            ckpt.save(1, {"a": 1})
            ckpt.wait(5)
            code = 0 if [c.step for c in ckpt.steps()] == [1] else 2
        finally:
            os._exit(code)
    gate.set()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ckpt.wait(30)


# --------------------------------------------------------------------------------------------
# jobpersist checkpoints
# --------------------------------------------------------------------------------------------
def test_cli_lists_checkpoints_and_says_which_load(
    job_env: JobEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = CheckpointManager(metric="cost", data_format=F.PICKLED_V4)
    for step in range(3):
        ckpt.save(step, {"cost": 1.0 / (step + 1), "w": np.ones(100)})
    ckpt.wait()
    shutil.copy(
        ckpt.steps()[0].path, job_env.checkpoint_dir / "old-job_ckpt-000000000_cost_1.0.json"
    )
    truncate(ckpt.steps()[-1].path)
    status = cli.main(["checkpoints", str(job_env.checkpoint_dir)])
    out, err = capsys.readouterr()
    assert status == 1
    lines = out.splitlines()
    assert lines[0].split() == ["step", "job", "size", "format", "metric", "status"]
    assert "old-job" in lines[1] and lines[1].split()[-1] == "ok"
    assert "cost=0.5" in lines[3] and lines[3].endswith("ok")
    assert "DAMAGED: incomplete" in lines[4]
    assert lines[-1] == f"restore(): step 1 from {job_env.job_name}_ckpt-000000001_cost_0.5.json"
    assert "1 of 4 checkpoint(s) damaged" in err

    status = cli.main(["checkpoints", "--json", str(job_env.checkpoint_dir)])
    report = json.loads(capsys.readouterr().out)
    assert status == 1
    assert [(c["step"], c["valid"]) for c in report["checkpoints"]] == [
        (0, True), (0, True), (1, True), (2, False),
    ]  # fmt: skip
    assert report["restore"]["step"] == 1


def test_cli_uses_the_checkpoint_directory_and_refuses_nothing_safe_mode_cannot_load(
    job_env: JobEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["checkpoints"]) == 0
    assert capsys.readouterr().out == "no checkpoints\n"
    ckpt = CheckpointManager(data_format=F.PICKLED_V4)
    ckpt.save(0, {"f": Path("/x")})  # a pickle safe mode refuses: intact all the same
    ckpt.wait()
    assert cli.main(["checkpoints"]) == 0
    out = capsys.readouterr().out
    assert "ok (loads with allow_pickle=True only" in out
    assert cli.main(["checkpoints", "--quick"]) == 0
    assert "complete (not loaded)" in capsys.readouterr().out
    assert cli.main(["checkpoints", "--prefix", "a_b"]) == 2
