"""jobpersist's documented semantics: where files go, the formats it accepts, the values it
refuses (and how), the names it keeps inside their directory, and ``serialization``."""

from __future__ import annotations

import base64
import inspect
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from _corpus import PLAINTEXT_CORPUS, texts, values
from braket.jobs import data_persistence as reference
from braket.jobs import serialization as reference_serialization
from braket.jobs_data import PersistedJobDataFormat as ReferenceFormat
from hypothesis import given
from hypothesis import strategies as st
from support.files import temp_leftovers
from support.jobenv import JobEnv
from support.reference import snapshot
from support.values import canon

import jobpersist
from jobpersist import PersistedJobDataFormat, _environment

pytestmark = pytest.mark.usefixtures("backend")

FORMATS = ["plaintext", "pickled_v4"]


def nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def nested_dict(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


# --------------------------------------------------------------------------------------------
# API surface
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["save_job_checkpoint", "load_job_checkpoint", "save_job_result", "load_job_result"]
)
def test_signatures_match_reference(name: str) -> None:
    ours = inspect.signature(getattr(jobpersist, name))
    theirs = inspect.signature(getattr(reference, name))
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()
    ]
    assert getattr(jobpersist.data_persistence, name) is getattr(jobpersist, name)


@pytest.mark.parametrize("name", ["serialize_values", "deserialize_values"])
def test_serialization_signatures_match_reference(name: str) -> None:
    ours = inspect.signature(getattr(jobpersist.serialization, name))
    theirs = inspect.signature(getattr(reference_serialization, name))
    assert [(p.name, p.default) for p in ours.parameters.values()] == [
        (p.name, p.default) for p in theirs.parameters.values()
    ]


def test_backend_attribute_is_live(backend: str) -> None:
    assert jobpersist.BACKEND == backend


# --------------------------------------------------------------------------------------------
# Where files go
# --------------------------------------------------------------------------------------------
def test_checkpoint_file_names(job_env: JobEnv) -> None:
    jobpersist.save_job_checkpoint({"a": 1})
    jobpersist.save_job_checkpoint({"b": 2}, "epoch_3")
    assert sorted(p.name for p in job_env.checkpoint_dir.iterdir()) == [
        "test-job.json",
        "test-job_epoch_3.json",
    ]
    assert jobpersist.load_job_checkpoint() == {"a": 1}
    assert jobpersist.load_job_checkpoint(checkpoint_file_suffix="epoch_3") == {"b": 2}
    assert jobpersist.load_job_checkpoint("test-job", "epoch_3") == {"b": 2}
    assert list(job_env.results_dir.iterdir()) == []


def test_load_other_job_checkpoint(job_env: JobEnv) -> None:
    (job_env.checkpoint_dir / "other.json").write_bytes(
        b'{"braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", '
        b'"version": "1"}, "dataDictionary": {"o": 1}, "dataFormat": "plaintext"}'
    )
    assert jobpersist.load_job_checkpoint("other") == {"o": 1}
    assert jobpersist.load_job_checkpoint(job_name="other") == {"o": 1}
    with pytest.raises(FileNotFoundError):
        jobpersist.load_job_checkpoint()


def test_results_file_name(job_env: JobEnv) -> None:
    jobpersist.save_job_result({"a": 1})
    assert [p.name for p in job_env.results_dir.iterdir()] == ["results.json"]
    assert jobpersist.load_job_result() == {"a": 1}
    assert jobpersist.load_job_result(job_env.results_path) == {"a": 1}
    assert jobpersist.load_job_result(str(job_env.results_path)) == {"a": 1}
    assert jobpersist.load_job_result(job_env.results_dir / "missing.json") == {}


def test_non_dict_result_is_wrapped(job_env: JobEnv) -> None:
    jobpersist.save_job_result([1, 2])
    assert jobpersist.load_job_result() == {"result": [1, 2]}
    jobpersist.save_job_result(None)
    assert jobpersist.load_job_result() == {"result": None}
    jobpersist.save_job_result({"x": 1})
    assert jobpersist.load_job_result() == {"result": None, "x": 1}


def test_short_variable_names_are_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the reference, whose code reads only the AMZN_BRAKET_* names (its docstrings say
    # CHECKPOINT_DIR and JOB_NAME). CI servers set JOB_NAME (Jenkins, for every build): a
    # script run there writes "./.json" with the reference, and so must jobpersist.
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    for key in ("AMZN_BRAKET_CHECKPOINT_DIR", "AMZN_BRAKET_JOB_NAME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CHECKPOINT_DIR", str(elsewhere))
    monkeypatch.setenv("JOB_NAME", "nightly")
    written = {}
    for name, api in (("reference", reference), ("ours", jobpersist)):
        api.save_job_checkpoint({"by": name})
        written[name] = snapshot(work, elsewhere)
        assert api.load_job_checkpoint() == {"by": name}
        (work / ".json").unlink()
    assert list(written["ours"]) == list(written["reference"]) == ["work/.json"]
    assert written["ours"]["work/.json"] == written["reference"]["work/.json"].replace(
        b"reference", b"ours"
    )

    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(elsewhere))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "braket-job")
    jobpersist.save_job_checkpoint({"a": 1})
    assert [p.name for p in elsewhere.iterdir()] == ["braket-job.json"]
    assert list(work.iterdir()) == []


def test_empty_checkpoint_dir_is_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Documented difference: the reference would write "/job.json", at the root.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", "")
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "job")
    jobpersist.save_job_checkpoint({"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["job.json"]
    assert jobpersist.load_job_checkpoint() == {"a": 1}


def test_checkpoint_dir_default_is_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AMZN_BRAKET_CHECKPOINT_DIR", raising=False)
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path / "not-this-one"))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", "job")
    jobpersist.save_job_checkpoint({"a": 1})
    assert (tmp_path / "job.json").exists()
    assert jobpersist.load_job_checkpoint() == {"a": 1}


def test_no_job_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As the reference: the checkpoint of a nameless job is "<dir>/.json".
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.delenv("AMZN_BRAKET_JOB_NAME", raising=False)
    monkeypatch.setenv("JOB_NAME", "not-this-one")
    jobpersist.save_job_checkpoint({"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == [".json"]
    assert jobpersist.load_job_checkpoint() == {"a": 1}


def test_results_dir_default_is_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AMZN_BRAKET_JOB_RESULTS_DIR", raising=False)
    jobpersist.save_job_result({"a": 1})
    assert (tmp_path / "results.json").exists()
    assert jobpersist.load_job_result() == {"a": 1}


@pytest.mark.parametrize(
    "value", [None, "", "job-1", " spaced ", "caf\u00e9", "\udcff-not-utf8", "a=b"]
)
def test_variables_read_as_os_environ_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    # variable() reads os.environ's dict directly (os.environ.get of an unset name costs two
    # exceptions): set, unset, non-ASCII and undecodable values, changes made through
    # os.environ, and an os.environ replaced by a plain mapping read as os.environ.get does.
    name = "JOBPERSIST_TEST_VARIABLE"
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)
    assert _environment.variable(name) == os.environ.get(name) == value
    monkeypatch.setenv(name, "changed")
    assert _environment.variable(name) == "changed"
    monkeypatch.delenv(name)
    assert _environment.variable(name) is None
    replaced = {name: "from a dict", "AMZN_BRAKET_JOB_NAME": "dict-job"}
    monkeypatch.setattr(os, "environ", replaced)
    assert _environment.variable(name) == "from a dict"
    assert _environment.get_job_name() == "dict-job"


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------
FORMAT_SPELLINGS = {
    "plaintext": [PersistedJobDataFormat.PLAINTEXT, ReferenceFormat.PLAINTEXT, "plaintext"],
    "pickled_v4": [PersistedJobDataFormat.PICKLED_V4, ReferenceFormat.PICKLED_V4, "pickled_v4"],
}


def test_format_enum_matches_reference() -> None:
    assert [m.value for m in PersistedJobDataFormat] == [m.value for m in ReferenceFormat]
    assert [m.name for m in PersistedJobDataFormat] == [m.name for m in ReferenceFormat]
    for ours, theirs in zip(PersistedJobDataFormat, ReferenceFormat, strict=True):
        assert ours == theirs == ours.value
        assert isinstance(ours, str)


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_spellings_write_the_same_bytes(job_env: JobEnv, fmt: str) -> None:
    written = set()
    for spelling in FORMAT_SPELLINGS[fmt]:
        jobpersist.save_job_checkpoint({"a": [1, "x"]}, data_format=spelling)
        written.add(job_env.checkpoint_path.read_bytes())
        job_env.results_path.unlink(missing_ok=True)
        jobpersist.save_job_result({"a": [1, "x"]}, data_format=spelling)
        written.add(job_env.results_path.read_bytes().replace(b"results", b""))
    assert len(written) == 1
    assert f'"dataFormat": "{fmt}"'.encode() in written.pop()


# Other data_format values, checked against the reference: test_formats.py.


def test_result_format_follows_existing(job_env: JobEnv) -> None:
    jobpersist.save_job_result({"a": 1}, PersistedJobDataFormat.PICKLED_V4)
    jobpersist.save_job_result({"b": 2})  # stays pickled
    assert b'"dataFormat": "pickled_v4"' in job_env.results_path.read_bytes()
    assert jobpersist.load_job_result(allow_pickle=True) == {"a": 1, "b": 2}
    with pytest.raises(TypeError, match="Cannot update results object serialized with"):
        jobpersist.save_job_result({"c": 3}, "plaintext")
    assert jobpersist.load_job_result(allow_pickle=True) == {"a": 1, "b": 2}


# --------------------------------------------------------------------------------------------
# Values refused, and how
# --------------------------------------------------------------------------------------------
def cyclic_dict() -> dict[str, Any]:
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    return d


def cyclic_list() -> list[Any]:
    v: list[Any] = [1]
    v.append(v)
    return v


def cyclic_deep() -> dict[str, Any]:
    inner: list[Any] = [1, {"x": []}]
    inner[1]["x"].append((inner,))
    return {"outer": [inner]}


CYCLES = {"dict": cyclic_dict, "list": cyclic_list, "deep": cyclic_deep}


@pytest.mark.parametrize("kind", list(CYCLES))
def test_circular_reference_is_a_value_error(job_env: JobEnv, kind: str) -> None:
    jobpersist.save_job_checkpoint({"old": 1})
    jobpersist.save_job_result({"old": 1})
    before = snapshot(job_env.checkpoint_dir, job_env.results_dir)
    with pytest.raises(ValueError, match=r"[Cc]ircular"):
        jobpersist.save_job_checkpoint({"ok": 1, "bad": CYCLES[kind]()})
    with pytest.raises(ValueError, match=r"[Cc]ircular"):
        jobpersist.save_job_result({"bad": CYCLES[kind]()})
    assert snapshot(job_env.checkpoint_dir, job_env.results_dir) == before


def test_shared_but_acyclic_values_are_fine(job_env: JobEnv) -> None:
    shared = [1, 2]
    jobpersist.save_job_checkpoint({"a": [shared, shared], "b": shared})
    assert jobpersist.load_job_checkpoint() == {"a": [[1, 2], [1, 2]], "b": [1, 2]}


@pytest.mark.parametrize("kind", list(CYCLES))
def test_circular_reference_pickled_roundtrips(job_env: JobEnv, kind: str) -> None:
    value = CYCLES[kind]()
    jobpersist.save_job_checkpoint({"v": value}, data_format="pickled_v4")
    loaded = jobpersist.load_job_checkpoint(allow_pickle=True)["v"]
    assert canon(loaded) == canon(value)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("build", [nested_list, nested_dict], ids=["list", "dict"])
def test_very_deep_nesting(job_env: JobEnv, fmt: str, build: Any) -> None:
    # 100000 levels: a ValueError, or a file written that loads back; never a RecursionError
    # (nor a crash of the interpreter). The old files stay as they were on a refusal.
    # Regression (bug found by this suite, fixed in 00066fc): with pickled_v4, pickle's
    # RecursionError escaped save_job_checkpoint/save_job_result;
    # their docstrings promise ValueError for too deep nesting. Repro:
    #   v = []; [v := [v] for _ in range(100_000)]
    #   save_job_checkpoint({"a": v}, data_format="pickled_v4")  -> RecursionError
    value = build(100_000)
    jobpersist.save_job_checkpoint({"old": 1}, data_format=fmt)
    jobpersist.save_job_result({"old": 1}, data_format=fmt)
    before = snapshot(job_env.checkpoint_dir, job_env.results_dir)
    for save, load in (
        (
            lambda: jobpersist.save_job_checkpoint({"deep": value}, data_format=fmt),
            lambda: jobpersist.load_job_checkpoint(allow_pickle=True),
        ),
        (
            lambda: jobpersist.save_job_result({"deep": value}, data_format=fmt),
            lambda: jobpersist.load_job_result(allow_pickle=True),
        ),
    ):
        try:
            save()
        except ValueError:
            assert snapshot(job_env.checkpoint_dir, job_env.results_dir) == before
        except RecursionError as exc:
            pytest.fail(f"RecursionError escaped: {exc}")
        else:
            assert "deep" in load()
        assert temp_leftovers(job_env.checkpoint_dir) == []
        assert temp_leftovers(job_env.results_dir) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_moderate_nesting_roundtrips(job_env: JobEnv, fmt: str) -> None:
    value = {"l": nested_list(200), "d": nested_dict(200)}
    jobpersist.save_job_checkpoint(value, data_format=fmt)
    assert jobpersist.load_job_checkpoint(allow_pickle=True) == value


def test_deeply_nested_file_is_a_value_error(job_env: JobEnv) -> None:
    head = (
        b'{"braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", '
        b'"version": "1"}, "dataDictionary": {"a": '
    )
    tail = b'}, "dataFormat": "plaintext"}'
    job_env.checkpoint_path.write_bytes(head + b"[" * 100_000 + b"]" * 100_000 + tail)
    with pytest.raises(ValueError):
        jobpersist.load_job_checkpoint()
    job_env.results_path.write_bytes(head + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + tail)
    with pytest.raises(ValueError):
        jobpersist.load_job_result()
    with pytest.raises(ValueError):
        jobpersist.save_job_result({"b": 1})


def test_plaintext_not_utf8_bytes_is_a_type_error(job_env: JobEnv) -> None:
    # The reference raises UnicodeDecodeError; jobpersist documents TypeError for values the
    # format cannot hold, and keeps the old file.
    jobpersist.save_job_checkpoint({"a": 1})
    before = job_env.checkpoint_path.read_bytes()
    with pytest.raises(TypeError):
        jobpersist.save_job_checkpoint({"a": 2, "b": b"\xff"})
    assert job_env.checkpoint_path.read_bytes() == before


@pytest.mark.parametrize("key", [None, (1, 2), object(), b"\xff"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_top_level_key_is_a_value_error(job_env: JobEnv, key: Any, fmt: str) -> None:
    # As the reference's schema validation (a pydantic ValidationError, a ValueError).
    with pytest.raises(ValueError):
        jobpersist.save_job_checkpoint({"a": 1, key: 2}, data_format=fmt)
    with pytest.raises(ValueError):
        jobpersist.save_job_result({key: 2}, data_format=fmt)
    assert list(job_env.checkpoint_dir.iterdir()) == []
    assert list(job_env.results_dir.iterdir()) == []


@pytest.mark.parametrize(
    "value",
    [object(), 1 + 2j, {(1, 2): 3}, range(3), bytearray(b"x")],
    ids=["object", "complex", "tuple_key", "range", "bytearray"],
)
def test_plaintext_unconvertible_is_a_type_error_naming_the_path(
    job_env: JobEnv, value: Any
) -> None:
    with pytest.raises(TypeError) as info:
        jobpersist.save_job_checkpoint({"outer": {"inner": [0, value]}})
    assert "outer" in str(info.value)
    assert list(job_env.checkpoint_dir.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Names that would leave their directory
# --------------------------------------------------------------------------------------------
BAD_NAMES = ["a/b", "/etc/passwd", "../escape", "..", "a\0b", "x/"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_suffix_refused(job_env: JobEnv, name: str) -> None:
    with pytest.raises(ValueError):
        jobpersist.save_job_checkpoint({"a": 1}, name)
    with pytest.raises(ValueError):
        jobpersist.load_job_checkpoint(checkpoint_file_suffix=name)
    assert list(job_env.checkpoint_dir.iterdir()) == []
    assert list(job_env.checkpoint_dir.parent.glob("*.json")) == []


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_job_name_refused_on_load(job_env: JobEnv, name: str) -> None:
    (job_env.checkpoint_dir.parent / "escape.json").write_bytes(b"{}")
    with pytest.raises(ValueError):
        jobpersist.load_job_checkpoint(name)
    with pytest.raises(ValueError):
        jobpersist.load_job_checkpoint(name, "sfx")


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if "\0" not in n])
def test_bad_job_name_from_environment_refused(
    job_env: JobEnv, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", name)
    with pytest.raises(ValueError):
        jobpersist.save_job_checkpoint({"a": 1})
    with pytest.raises(ValueError):
        jobpersist.load_job_checkpoint()
    assert list(job_env.checkpoint_dir.iterdir()) == []


@pytest.mark.parametrize("name", ["a..b", "...", ".", ".hidden", "name with spaces", "\u00e9"])
def test_odd_but_harmless_names_accepted(job_env: JobEnv, name: str) -> None:
    jobpersist.save_job_checkpoint({"n": name}, name)
    assert jobpersist.load_job_checkpoint(checkpoint_file_suffix=name) == {"n": name}
    assert (job_env.checkpoint_dir / f"test-job_{name}.json").exists()


# --------------------------------------------------------------------------------------------
# serialize_values / deserialize_values
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"), PLAINTEXT_CORPUS, ids=[name for name, _ in PLAINTEXT_CORPUS]
)
@pytest.mark.parametrize("fmt", FORMATS)
def test_serialize_values_matches_reference(name: str, value: Any, fmt: str) -> None:
    data = {"v": value, "w": 1}
    for spelling in FORMAT_SPELLINGS[fmt]:
        ours = jobpersist.serialize_values(data, spelling)
        theirs = reference_serialization.serialize_values(data, ReferenceFormat(fmt))
        if fmt == "plaintext":
            assert ours is data or ours == data
            assert canon(ours) == canon(theirs)
        else:
            assert ours == theirs
            assert all(isinstance(v, str) for v in ours.values())


@pytest.mark.parametrize("fmt", FORMATS)
def test_deserialize_values_matches_reference(fmt: str) -> None:
    data = {"a": [1, 2.5, None], "b": "\ud800", "c": {"d": float("nan")}}
    serialized = reference_serialization.serialize_values(data, ReferenceFormat(fmt))
    for spelling in FORMAT_SPELLINGS[fmt]:
        ours = jobpersist.deserialize_values(serialized, spelling, allow_pickle=True)
        theirs = reference_serialization.deserialize_values(
            serialized, ReferenceFormat(fmt), allow_pickle=True
        )
        assert canon(ours) == canon(theirs) == canon(data)


def test_deserialize_pickled_requires_allow_pickle() -> None:
    serialized = jobpersist.serialize_values({"a": 1}, "pickled_v4")
    with pytest.raises(RuntimeError) as ours:
        jobpersist.deserialize_values(serialized, "pickled_v4")
    with pytest.raises(RuntimeError) as theirs:
        reference_serialization.deserialize_values(serialized, ReferenceFormat.PICKLED_V4)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    "bad", [5, None, "!!!", "gARLAS4", "\ud800", base64.encodebytes(b"garbage").decode()]
)
def test_deserialize_values_garbage_is_a_value_error(bad: Any) -> None:
    with pytest.raises(ValueError) as info:
        jobpersist.deserialize_values({"k": bad}, "pickled_v4", allow_pickle=True)
    assert "'k'" in str(info.value)


@given(data=st.dictionaries(texts(6), values(), max_size=4))
def test_serialization_hypothesis(data: dict[str, Any]) -> None:
    for fmt in FORMATS:
        ours = jobpersist.serialize_values(data, fmt)
        theirs = reference_serialization.serialize_values(data, ReferenceFormat(fmt))
        if fmt == "pickled_v4":
            assert ours == theirs
        back = jobpersist.deserialize_values(ours, fmt, allow_pickle=True)
        back_theirs = reference_serialization.deserialize_values(
            theirs, ReferenceFormat(fmt), allow_pickle=True
        )
        assert canon(back) == canon(back_theirs)
        assert pickle.dumps(list(back)) == pickle.dumps(list(data))


# --------------------------------------------------------------------------------------------
# Misc
# --------------------------------------------------------------------------------------------
def test_checkpoint_data_not_mutated(job_env: JobEnv) -> None:
    data = {1: [1, (2, 3)], "s": {4}}
    snapshot_before = canon(data)
    jobpersist.save_job_checkpoint(data)
    jobpersist.save_job_checkpoint(data, data_format="pickled_v4")
    jobpersist.save_job_result(data)
    assert canon(data) == snapshot_before


def test_mapping_that_is_not_a_dict(job_env: JobEnv) -> None:
    # save_job_result wraps anything that is not a dict, as the reference does.
    from collections import UserDict

    jobpersist.save_job_result(UserDict({"a": 1}), "pickled_v4")
    loaded = jobpersist.load_job_result(allow_pickle=True)
    assert list(loaded) == ["result"]
    assert dict(loaded["result"]) == {"a": 1}


def test_env_paths_are_read_at_call_time(
    job_env: JobEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    jobpersist.save_job_result({"a": 1})
    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(other))
    jobpersist.save_job_result({"b": 2})
    assert jobpersist.load_job_result() == {"b": 2}
    assert jobpersist.load_job_result(job_env.results_path) == {"a": 1}
    assert os.listdir(other) == ["results.json"]
