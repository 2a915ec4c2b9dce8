"""``data_format`` values other than the two members, with the reference as the oracle.

The reference pickles when ``data_format == PICKLED_V4`` and labels the file with whatever
pydantic v1 turns ``data_format`` into (``PersistedJobDataFormat | str``): ``"pickle"``,
``"PICKLED_V4"``, ``3`` or ``b"x"`` write plaintext files labelled ``"pickle"``,
``"PICKLED_V4"``, ``"3"``, ``"x"``; ``None`` and objects are pydantic ValidationErrors
(ValueErrors). AWS's own PennyLane hybrid-jobs notebook passes ``data_format="pickle"``
(amazon-braket/amazon-braket-examples,
examples/hybrid_jobs/2_Using_PennyLane_with_Braket_Hybrid_Jobs/
Using_PennyLane_with_Braket_Hybrid_Jobs.ipynb, since its PR #888).
"""

from __future__ import annotations

import enum
import json
import subprocess
import sys
import textwrap
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from braket.jobs import serialization as reference_serialization
from braket.jobs_data import PersistedJobDataFormat as ReferenceFormat
from hypothesis import given
from hypothesis import strategies as st
from support.jobenv import JobEnv, child_env
from support.reference import Twin
from support.values import canon

import jobpersist
from jobpersist import PersistedJobDataFormat, serialization
from jobpersist.background import save_job_checkpoint_async, save_job_result_async

pytestmark = [
    pytest.mark.usefixtures("backend"),
    # The warning is tested below; elsewhere in this file it is expected, not news.
    pytest.mark.filterwarnings("ignore:data_format=.* is not PersistedJobDataFormat:UserWarning"),
]


class Named:
    def __str__(self) -> str:
        return "pickled_v4"


class Level(enum.IntEnum):
    THREE = 3


class ForeignFormat(str, enum.Enum):
    PICKLED = "pickled_v4"
    WEIRD = "weird"


class PlainEnum(enum.Enum):
    PICKLED = "pickled_v4"


class Label(str):
    pass


# Each value is passed, as the same object, to both implementations.
FORMAT_VALUES: dict[str, Any] = {
    "pickle": "pickle",
    "member_name": "PICKLED_V4",
    "mixed_case": "Pickled_V4",
    "pickled": "pickled",
    "plaintext_str": "plaintext",
    "plaintext_name": "PLAINTEXT",
    "empty_str": "",
    "json": "json",
    "escapes": 'é"\\\n\ud800\x00\u2028 </script>',
    "int": 3,
    "zero": 0,
    "negative": -1,
    "big_int": 10**30,
    "float": 1.5,
    "float_zero": 0.0,
    "nan": float("nan"),
    "true": True,
    "false": False,
    "decimal": Decimal("1.50"),
    "bytes": b"x",
    "bytes_empty": b"",
    "bytearray": bytearray(b"plain"),
    "bytes_not_utf8": b"\xff",
    "str_subclass": Label("pickle"),
    "str_subclass_pickled": Label("pickled_v4"),
    "int_enum": Level.THREE,
    "foreign_str_enum_pickled": ForeignFormat.PICKLED,
    "foreign_str_enum_other": ForeignFormat.WEIRD,
    "plain_enum": PlainEnum.PICKLED,
    "reference_plaintext": ReferenceFormat.PLAINTEXT,
    "reference_pickled": ReferenceFormat.PICKLED_V4,
    "ours_plaintext": PersistedJobDataFormat.PLAINTEXT,
    "ours_pickled": PersistedJobDataFormat.PICKLED_V4,
    "none": None,
    "object": object(),
    "object_with_str": Named(),
    "empty_list": [],
    "list": ["pickled_v4"],
}
# Labelled "pickled_v4" by pydantic's str coercion, but not == PICKLED_V4: the reference
# writes the values as plaintext under a pickled label, a file it cannot load back (with
# allow_pickle, AttributeError or a base64/unpickling error); jobpersist writes the same
# bytes and, as documented for damaged files, raises ValueError on the load.
LABELLED_PICKLED_NOT_PICKLED = {
    "bytes_pickled": b"pickled_v4",
    "bytearray_pickled": bytearray(b"pickled_v4"),
}
ALL_VALUES = {**FORMAT_VALUES, **LABELLED_PICKLED_NOT_PICKLED}
IDS = list(ALL_VALUES)
DATA = {"a": 1, "b": "s", "c": [1.5, None, {"d": True}]}
PREFIXES = ["none", "plaintext", "pickled", "odd_label"]


def load_checkpoint(allow_pickle: bool) -> Any:
    return lambda api: api.load_job_checkpoint(allow_pickle=allow_pickle)


def load_result(allow_pickle: bool) -> Any:
    return lambda api: api.load_job_result(allow_pickle=allow_pickle)


def load_error(name: str) -> type[BaseException] | None:
    return ValueError if name in LABELLED_PICKLED_NOT_PICKLED else None


def leaves_damaged_results(name: str, prefix: str) -> bool:
    """Whether saving results with this format leaves plaintext values labelled pickled
    (over pickled results the values are pickled whatever the format)."""
    return name in LABELLED_PICKLED_NOT_PICKLED and prefix != "pickled"


def prepare_results(twin: Twin, prefix: str) -> None:
    """Results saved before the call under test: none, plaintext, pickled, or odd-labelled."""
    if prefix == "plaintext":
        twin.step(lambda api: api.save_job_result({"old": [1, 2]}))
    elif prefix == "pickled":
        twin.step(lambda api: api.save_job_result({"old": {1, 2}}, api.Format.PICKLED_V4))
    elif prefix == "odd_label":
        twin.step(lambda api: api.save_job_result({"old": "x"}, "pickle"))


@pytest.mark.parametrize("name", IDS)
def test_checkpoint(twin: Twin, name: str) -> None:
    value = ALL_VALUES[name]
    twin.step(lambda api: api.save_job_checkpoint(DATA, "sfx", value))
    twin.step(lambda api: api.save_job_checkpoint(DATA, data_format=value))
    for allow_pickle in (False, True):
        twin.step(load_checkpoint(allow_pickle), expect=load_error(name) if allow_pickle else None)
    if name not in LABELLED_PICKLED_NOT_PICKLED:
        twin.cross(load_checkpoint(True))


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("name", IDS)
def test_result(twin: Twin, name: str, prefix: str) -> None:
    value = ALL_VALUES[name]
    prepare_results(twin, prefix)
    plain = value == "plaintext" and not isinstance(value, enum.Enum)
    # The reference's message for plaintext over pickled results reads data_format.value,
    # which a str lacks (AttributeError); jobpersist raises the TypeError it means.
    expect: type[BaseException] | None = TypeError if plain and prefix == "pickled" else None
    twin.step(lambda api: api.save_job_result({"new": DATA, "old": 0}, value), expect=expect)
    damaged = leaves_damaged_results(name, prefix)
    if damaged:
        expect = ValueError  # merging over it: documented ValueError for a damaged file
    twin.step(lambda api: api.save_job_result(7, value), expect=expect)
    for allow_pickle in (False, True):
        twin.step(
            load_result(allow_pickle), expect=ValueError if damaged and allow_pickle else None
        )
    if not damaged:
        twin.cross(load_result(True))
        # A later default save merges over whatever the call left.
        twin.step(lambda api: api.save_job_result({"later": 1}))
        twin.step(load_result(True))


@pytest.mark.parametrize("name", IDS)
def test_serialize_values(name: str) -> None:
    value = ALL_VALUES[name]
    data = {"a": [1, 2], "b": {"c"}}
    ours = serialization.serialize_values(data, value)
    theirs = reference_serialization.serialize_values(data, value)
    assert ours == theirs
    assert (ours is data) == (theirs is data)
    loaded = serialization.deserialize_values(ours, value, allow_pickle=True)
    assert canon(loaded) == canon(
        reference_serialization.deserialize_values(theirs, value, allow_pickle=True)
    )
    assert (loaded is ours) == (ours is data)


@pytest.mark.parametrize(
    "label", ['"pickle"', '"PICKLED_V4"', '""', "3", "1.5", "true", '"\\u00e9\\ud800"']
)
def test_load_file_with_odd_label(twin: Twin, label: str) -> None:
    text = (
        '{"braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", "version": '
        '"1"}, "dataDictionary": {"a": "gARLAS4=\\n", "b": [1]}, "dataFormat": ' + label + "}"
    ).encode()
    for side in ("ours", "reference"):
        checkpoints, results = twin.dirs[side]
        (checkpoints / "test-job.json").write_bytes(text)
        (results / "results.json").write_bytes(text)
    twin.step(load_checkpoint(False))
    twin.step(load_result(False))
    twin.cross(load_result(True))
    # A merge keeps the values as they are and relabels the file as requested.
    twin.step(lambda api: api.save_job_result({"c": 2}))
    twin.step(lambda api: api.save_job_result({"d": 3}, api.Format.PICKLED_V4))
    twin.step(load_result(True))


@given(
    st.one_of(
        st.text(max_size=12),
        st.integers(),
        st.floats(),
        st.binary(max_size=6),
        st.decimals(allow_nan=False),
        st.sampled_from(list(FORMAT_VALUES.values())),
    )
)
def test_any_format_value(twin: Twin, value: Any) -> None:
    twin.reset()
    twin.step(lambda api: api.save_job_checkpoint(DATA, data_format=value))
    twin.step(lambda api: api.save_job_result(DATA, value))
    twin.step(lambda api: api.save_job_result({"x": 1}, value))


# --------------------------------------------------------------------------------------------
# Background saves write what the synchronous saves (and so the reference) write
# --------------------------------------------------------------------------------------------
def checkpoint_async_or_sync(value: Any) -> Any:
    def op(api: Any) -> None:
        if api.name == "ours":
            save_job_checkpoint_async(DATA, "bg", value).result(30)
        else:
            api.save_job_checkpoint(DATA, "bg", value)

    return op


def result_async_or_sync(data: Any, value: Any) -> Any:
    def op(api: Any) -> None:
        if api.name == "ours":
            save_job_result_async(data, value).result(30)
        else:
            api.save_job_result(data, value)

    return op


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    "name",
    ["pickle", "member_name", "int", "empty_str", "bytes", "bytes_pickled", "none", "object"],
)
def test_background_saves(twin: Twin, name: str, prefix: str) -> None:
    value = ALL_VALUES[name]
    prepare_results(twin, prefix)
    twin.step(checkpoint_async_or_sync(value))
    twin.step(result_async_or_sync({"new": DATA}, value))
    damaged = leaves_damaged_results(name, prefix)
    twin.step(result_async_or_sync(5, None), expect=ValueError if damaged else None)
    if not damaged:
        twin.step(load_result(True))


def test_background_result_format_follows_queued_odd_label(job_env: JobEnv) -> None:
    # A queued save that labels the file "pickle" leaves it plaintext: a save queued after
    # it with data_format=None snapshots plaintext values and merges.
    first = save_job_result_async({"a": 1}, "pickle")  # type: ignore[arg-type]
    second = save_job_result_async({"b": 2})
    assert first.result(30) == second.result(30) == str(job_env.results_path)
    assert jobpersist.load_job_result() == {"a": 1, "b": 2}
    assert job_env.results_path.read_bytes().endswith(b'"dataFormat": "plaintext"}')


# --------------------------------------------------------------------------------------------
# The warning for a plaintext save that looks like a request to pickle
# --------------------------------------------------------------------------------------------
WARNS = ["pickle", "member_name", "mixed_case", "pickled", "str_subclass", "bytes_pickled"]
SILENT = [
    "plaintext_str",
    "json",
    "int",
    "empty_str",
    "bytes",
    "reference_pickled",
    "ours_plaintext",
]


def warnings_of(call: Any) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if issubclass(w.category, UserWarning)]


@pytest.mark.parametrize("name", WARNS + SILENT)
def test_warning_names_the_call_site(job_env: JobEnv, name: str) -> None:
    value = ALL_VALUES[name]
    calls = [
        lambda: jobpersist.save_job_checkpoint(DATA, data_format=value),
        lambda: jobpersist.save_job_result(DATA, value),
        lambda: save_job_checkpoint_async(DATA, "bg", value).result(30),
        lambda: save_job_result_async(DATA, value).result(30),
        lambda: jobpersist.serialize_values(DATA, value),
    ]
    for call in calls:
        job_env.results_path.unlink(missing_ok=True)  # each result save starts afresh
        caught = warnings_of(call)
        if name in SILENT:
            assert caught == []
            continue
        assert len(caught) == 1, [str(w.message) for w in caught]
        warning = caught[0]
        # The lambda's line in this file: the user's call, not jobpersist's.
        assert warning.filename == __file__
        assert warning.lineno == call.__code__.co_firstlineno
        message = str(warning.message)
        assert repr(value) in message and "PersistedJobDataFormat.PICKLED_V4" in message


def test_warning_text_says_what_was_written(job_env: JobEnv) -> None:
    with pytest.warns(UserWarning) as caught:
        jobpersist.save_job_checkpoint(DATA, data_format="pickle")  # type: ignore[arg-type]
    assert str(caught[0].message) == (
        "data_format='pickle' is not PersistedJobDataFormat.PICKLED_V4: the values are written "
        'as plaintext JSON, in a file labelled "dataFormat": "pickle", as amazon-braket-sdk '
        "does. To pickle them, pass data_format=PersistedJobDataFormat.PICKLED_V4 (or the "
        "string 'pickled_v4')."
    )
    assert jobpersist.load_job_checkpoint() == DATA


def test_no_warning_when_results_stay_pickled(job_env: JobEnv) -> None:
    # Over pickled results the reference pickles whatever format was asked (but plaintext).
    jobpersist.save_job_result({"a": 1}, PersistedJobDataFormat.PICKLED_V4)
    assert warnings_of(lambda: jobpersist.save_job_result({"b": 2}, "pickle")) == []  # type: ignore[arg-type]
    assert job_env.results_path.read_bytes().endswith(b'"dataFormat": "pickled_v4"}')


def test_patched_braket_warns_at_the_user_call(job_env: JobEnv) -> None:
    import braket.jobs

    with jobpersist.patch_braket():
        caught = warnings_of(lambda: braket.jobs.save_job_checkpoint(DATA, "", "pickle"))
    assert len(caught) == 1 and caught[0].filename == __file__


def test_warned_once_per_call_site_by_default(tmp_path: Path) -> None:
    # A fresh interpreter with Python's default warning filters: a loop warns once per line.
    script = tmp_path / "user_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import jobpersist

            for step in range(3):
                jobpersist.save_job_checkpoint({"step": step}, data_format="pickle")
            for step in range(2):
                jobpersist.save_job_result({"step": step}, data_format="PICKLED_V4")
            jobpersist.save_job_checkpoint({"step": 9}, "other", data_format="pickle")
            """
        )
    )
    env = child_env(
        AMZN_BRAKET_CHECKPOINT_DIR=str(tmp_path),
        AMZN_BRAKET_JOB_NAME="job",
        AMZN_BRAKET_JOB_RESULTS_DIR=str(tmp_path),
    )
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "UserWarning" in line]
    assert [line.split(":")[1] for line in lines] == ["5", "7", "8"], done.stderr
    assert all(line.startswith(str(script)) for line in lines)
    assert json.loads((tmp_path / "job.json").read_text())["dataFormat"] == "pickle"
