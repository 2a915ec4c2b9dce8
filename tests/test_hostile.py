"""Hostile and damaged files: planted pickles, truncations, bit flips, malformed envelopes,
and files that are valid without being what ``json.dumps`` writes.

Documented behaviour: loading damaged files raises ValueError (RuntimeError only for a valid
pickled envelope loaded without ``allow_pickle``); merging results never unpickles; a merge
over a damaged file raises ValueError and leaves it as it was.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
from braket.jobs import data_persistence as reference
from hypothesis import given
from hypothesis import strategies as st
from support.files import temp_leftovers
from support.jobenv import JobEnv, environ
from support.values import canon

import jobpersist

pytestmark = pytest.mark.usefixtures("backend")

HEADER = {"name": "braket.jobs_data.persisted_job_data", "version": "1"}


def envelope(data_dictionary: Any, data_format: Any = "plaintext", **json_kwargs: Any) -> bytes:
    """An envelope laid out as json.dumps writes it (or as ``json_kwargs`` say)."""
    obj = {
        "braketSchemaHeader": HEADER,
        "dataDictionary": data_dictionary,
        "dataFormat": data_format,
    }
    return json.dumps(obj, **json_kwargs).encode()


def b64(value: Any) -> str:
    return base64.encodebytes(pickle.dumps(value, protocol=4)).decode()


def pickled_envelope(values: dict[str, Any], **json_kwargs: Any) -> bytes:
    return envelope({k: b64(v) for k, v in values.items()}, "pickled_v4", **json_kwargs)


def reference_load(path: Path, allow_pickle: bool) -> Any:
    """The reference's load of a file (its checkpoint loader reads any path we point at)."""
    with environ(
        AMZN_BRAKET_CHECKPOINT_DIR=str(path.parent), AMZN_BRAKET_JOB_NAME=path.name[: -len(".json")]
    ):
        return reference.load_job_checkpoint(allow_pickle=allow_pickle)


# --------------------------------------------------------------------------------------------
# A planted pickle that would run code
# --------------------------------------------------------------------------------------------
class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch '{self.marker}'",))


LAYOUTS = {
    "canonical": {},
    "indented": {"indent": 1},
    "compact": {"separators": (",", ":")},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_planted_pickle_never_runs(job_env: JobEnv, tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "MARKER"
    evil_text = b64(RunsCode(marker))
    planted = envelope({"evil": evil_text, "ok": b64(1)}, "pickled_v4", **LAYOUTS[layout])
    job_env.results_path.write_bytes(planted)
    job_env.checkpoint_path.write_bytes(planted)

    for load in (jobpersist.load_job_result, jobpersist.load_job_checkpoint):
        with pytest.raises(RuntimeError, match="allow_pickle=True"):
            load()
        assert not marker.exists()

    # Merges keep the results pickled and never unpickle what was there.
    jobpersist.save_job_result({"new": [1, 2]}, "pickled_v4")
    assert not marker.exists()
    jobpersist.save_job_result({"newer": 3})
    assert not marker.exists()
    merged = job_env.results_path.read_bytes()
    dictionary = json.loads(merged)["dataDictionary"]
    assert list(dictionary) == ["evil", "ok", "new", "newer"]
    assert dictionary["evil"] == evil_text  # carried over as it was
    if layout == "canonical":
        assert json.dumps({"evil": evil_text})[1:-1].encode() in merged  # byte for byte
    assert json.loads(merged)["dataFormat"] == "pickled_v4"
    with pytest.raises(RuntimeError):
        jobpersist.load_job_result()
    assert not marker.exists()
    assert temp_leftovers(job_env.results_dir) == []

    # Sanity: the planted pickle really runs code once allowed.
    jobpersist.load_job_result(allow_pickle=True)
    assert marker.exists()


def test_planted_pickle_plaintext_merge_refused(job_env: JobEnv, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    planted = pickled_envelope({"evil": RunsCode(marker)})
    job_env.results_path.write_bytes(planted)
    with pytest.raises(TypeError):
        jobpersist.save_job_result({"new": 1}, "plaintext")
    assert job_env.results_path.read_bytes() == planted
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# Truncations and bit flips
# --------------------------------------------------------------------------------------------
SMALL_FILES = {
    "plaintext": envelope({"a": [1, "x", None], "b": 2.5, "\u00e9": {"c": True}}),
    "pickled_v4": pickled_envelope({"a": [1, "x"], "b": 2.5}),
}


def is_valid_pickled_envelope(data: bytes) -> bool:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return isinstance(obj, dict) and obj.get("dataFormat") == "pickled_v4"


def load_problems(job_env: JobEnv, data: bytes) -> list[str]:
    """What is wrong with loading ``data``: it must return a dict or raise only what
    jobpersist documents (ValueError; RuntimeError for a valid pickled envelope loaded
    without allow_pickle)."""
    problems = []
    job_env.results_path.write_bytes(data)
    job_env.checkpoint_path.write_bytes(data)
    for load in (jobpersist.load_job_result, jobpersist.load_job_checkpoint):
        for allow_pickle in (False, True):
            try:
                loaded = load(allow_pickle=allow_pickle)
            except ValueError:
                pass
            except RuntimeError:
                if allow_pickle:
                    problems.append("RuntimeError with allow_pickle=True")
                elif not is_valid_pickled_envelope(data):
                    problems.append("RuntimeError (not ValueError) for a damaged file")
            except Exception as exc:
                problems.append(f"{type(exc).__name__} escaped")
            else:
                if not isinstance(loaded, dict):
                    problems.append("not a dict")
    return problems


def merge_problems(job_env: JobEnv, data: bytes) -> list[str]:
    """A merge over ``data`` raises ValueError leaving it intact, or writes a valid file."""
    problems = []
    job_env.results_path.write_bytes(data)
    try:
        jobpersist.save_job_result({"merged_key": 1})
    except ValueError:
        if job_env.results_path.read_bytes() != data:
            problems.append("a failed merge changed the file")
    except Exception as exc:
        problems.append(f"merge: {type(exc).__name__} escaped")
    else:
        written = job_env.results_path.read_bytes()
        try:
            obj = json.loads(written.decode("utf-8"))
        except ValueError:
            problems.append("a merge over a damaged file wrote invalid JSON")
        else:
            if "merged_key" not in obj.get("dataDictionary", {}):
                problems.append("the merged key is missing")
    if temp_leftovers(job_env.results_dir):
        problems.append("temp files left")
    return problems


@pytest.mark.parametrize("fmt", list(SMALL_FILES))
def test_every_truncation(job_env: JobEnv, fmt: str) -> None:
    data = SMALL_FILES[fmt]
    for n in range(len(data)):
        prefix = data[:n]
        job_env.results_path.write_bytes(prefix)
        job_env.checkpoint_path.write_bytes(prefix)
        for allow_pickle in (False, True):
            with pytest.raises(ValueError):
                jobpersist.load_job_result(allow_pickle=allow_pickle)
            with pytest.raises(ValueError):
                jobpersist.load_job_checkpoint(allow_pickle=allow_pickle)
        for fmt_arg in (None, "pickled_v4", "plaintext"):
            with pytest.raises(ValueError):
                jobpersist.save_job_result({"x": 1}, fmt_arg)
            assert job_env.results_path.read_bytes() == prefix
        assert temp_leftovers(job_env.results_dir) == []


@pytest.mark.parametrize("fmt", list(SMALL_FILES))
def test_random_bit_flips(job_env: JobEnv, fmt: str) -> None:
    # Regression (bug found by this suite, fixed in 00066fc; the canonical-envelope scan,
    # scan_pickled, in both codecs): it checks the layout
    # but not the content of the values, so a pickled file whose value holds what a JSON
    # string cannot (a flipped bit turning a base64 "X"/"T"/"L" into a backslash, i.e. an
    # invalid escape; a control character; bytes that are not UTF-8) is taken as a valid
    # pickled envelope: loading it without allow_pickle raises RuntimeError ("pass
    # allow_pickle=True") where the reference, and jobpersist with allow_pickle=True, raise
    # ValueError; and a merge copies the damage into a new file that is no longer JSON,
    # instead of raising ValueError. See test_merge_over_invalid_escape_in_value and
    # test_damaged_value_without_allow_pickle.
    rng = random.Random(f"bitflips-{fmt}")
    original = SMALL_FILES[fmt]
    problems: dict[str, list[bytes]] = {}
    for _ in range(150):
        data = bytearray(original)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        for problem in load_problems(job_env, bytes(data)) + merge_problems(job_env, bytes(data)):
            problems.setdefault(problem, []).append(bytes(data))
    assert not problems, "\n".join(
        f"{problem}: {len(files)} files, e.g. {files[0]!r}" for problem, files in problems.items()
    )


def test_merge_over_invalid_escape_in_value(job_env: JobEnv) -> None:
    # Regression: see test_random_bit_flips. Repro:
    #   results.json = '{"braketSchemaHeader": {...}, "dataDictionary": {"a": "gAR\\qAS4=\\n"},
    #                   "dataFormat": "pickled_v4"}'   (an invalid JSON escape "\q")
    #   save_job_result({"b": 1}) succeeds and writes a file json.loads cannot read.
    text = envelope({"a": b64(1)}, "pickled_v4").replace(b'"gAR', b'"gAR\\q', 1)
    with pytest.raises(ValueError):
        json.loads(text)
    for damaged in (text, text.replace(b"gAR\\q", b"gAR\x01")):
        job_env.results_path.write_bytes(damaged)
        with pytest.raises(ValueError):
            jobpersist.load_job_result(allow_pickle=True)
        with pytest.raises(ValueError):
            jobpersist.save_job_result({"b": 1})
        assert job_env.results_path.read_bytes() == damaged


def test_damaged_value_without_allow_pickle(job_env: JobEnv) -> None:
    # Regression: see test_random_bit_flips. Repro: a pickled results.json with one byte of a value
    # replaced by 0xE7 (not UTF-8): load_job_result() raises RuntimeError (asking for
    # allow_pickle=True), the reference a ValueError (UnicodeDecodeError).
    good = envelope({"a": b64(1), "b": b64("x")}, "pickled_v4")
    for damaged in (
        good.replace(b'"gAS', b'"g' + b"\\" + b"qAS", 1),  # an invalid escape
        good.replace(b'"gAS', b'"g' + bytes([1]) + b"AS", 1),  # a raw control character
        good.replace(b'"gAS', b'"g' + bytes([0xE7]) + b"AS", 1),  # not UTF-8
    ):
        job_env.results_path.write_bytes(damaged)
        with pytest.raises(ValueError):
            reference.load_job_result(job_env.results_path)
        with pytest.raises(ValueError):
            jobpersist.load_job_result(allow_pickle=True)
        with pytest.raises(ValueError):
            jobpersist.load_job_result()


# --------------------------------------------------------------------------------------------
# Malformed envelopes
# --------------------------------------------------------------------------------------------
def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()


GARBAGE_PICKLES = {
    "empty": b"",
    "not_a_pickle": b"hello world",
    "truncated": pickle.dumps({"a": [1, 2, 3]}, protocol=4)[:-3],
    "bad_opcode": b"\x80\x04\xff.",
    "unknown_global": b"\x80\x04\x8c\x0bno_such_mod\x94\x8c\x01x\x94\x93\x94.",
    "stop_only": b".",
}

MALFORMED: dict[str, bytes] = {
    "empty_file": b"",
    "whitespace": b"  \n",
    "null": b"null",
    "number": b"5",
    "string": b'"text"',
    "array": b"[1, 2]",
    "not_json": b"{not json}",
    "invalid_utf8": envelope({"a": "x"}).replace(b'"x"', b'"\xff\xfe"'),
    "bom": b"\xef\xbb\xbf" + envelope({"a": 1}),
    "trailing_garbage": envelope({"a": 1}) + b" x",
    "two_documents": envelope({"a": 1}) + envelope({"a": 1}),
    "missing_data_dictionary": raw({"braketSchemaHeader": HEADER, "dataFormat": "plaintext"}),
    "missing_data_format": raw({"braketSchemaHeader": HEADER, "dataDictionary": {}}),
    "missing_both": raw({"braketSchemaHeader": HEADER}),
    "empty_object": b"{}",
    "wrong_header_name": raw(
        {
            "braketSchemaHeader": {**HEADER, "name": "x"},
            "dataDictionary": {},
            "dataFormat": "plaintext",
        }
    ),
    "wrong_header_version": raw(
        {
            "braketSchemaHeader": {**HEADER, "version": "2"},
            "dataDictionary": {},
            "dataFormat": "plaintext",
        }
    ),
    "header_missing_version": raw(
        {
            "braketSchemaHeader": {"name": HEADER["name"]},
            "dataDictionary": {},
            "dataFormat": "plaintext",
        }
    ),
    "header_string": raw(
        {"braketSchemaHeader": "braket", "dataDictionary": {}, "dataFormat": "plaintext"}
    ),
    "header_null": raw(
        {"braketSchemaHeader": None, "dataDictionary": {}, "dataFormat": "plaintext"}
    ),
    "header_number": raw(
        {"braketSchemaHeader": 1, "dataDictionary": {}, "dataFormat": "plaintext"}
    ),
    "data_dictionary_string": envelope("abc"),
    "data_dictionary_number": envelope(5),
    "data_dictionary_null": envelope(None),
    "data_dictionary_list_of_numbers": envelope([1, 2]),
    "data_dictionary_null_key_pairs": envelope([[None, 1]]),
    "data_format_null": envelope({}, None),
    "data_format_list": envelope({}, ["pickled_v4"]),
    "data_format_object": envelope({}, {"f": "pickled_v4"}),
    "deep": b"[" * 50_000 + b"]" * 50_000,
    "huge_int": envelope({}).replace(b"{}", b'{"a": ' + b"9" * 5000 + b"}"),
}

PICKLED_MALFORMED: dict[str, bytes] = {
    "value_number": envelope({"a": 5}, "pickled_v4"),
    "value_null": envelope({"a": None}, "pickled_v4"),
    "value_list": envelope({"a": ["gARLAS4=\n"]}, "pickled_v4"),
    "value_object": envelope({"a": {"b": "gARLAS4=\n"}}, "pickled_v4"),
    "value_bool": envelope({"a": True}, "pickled_v4"),
    "bad_base64_padding": envelope({"a": "gAR"}, "pickled_v4"),
    "bad_base64_chars": envelope({"a": "!!!!"}, "pickled_v4"),
    "base64_lone_surrogate": envelope({"a": "gAR\ud800LAS4=\n"}, "pickled_v4"),
    **{
        f"garbage_pickle_{name}": envelope(
            {"ok": b64(1), "bad": base64.encodebytes(payload).decode()}, "pickled_v4"
        )
        for name, payload in GARBAGE_PICKLES.items()
    },
    **{
        f"garbage_pickle_{name}_no_newlines": envelope(
            {"bad": base64.b64encode(payload).decode()}, "pickled_v4", indent=0
        )
        for name, payload in GARBAGE_PICKLES.items()
    },
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_envelope_is_a_value_error(job_env: JobEnv, name: str) -> None:
    data = MALFORMED[name]
    job_env.checkpoint_path.write_bytes(data)
    job_env.results_path.write_bytes(data)
    for allow_pickle in (False, True):
        with pytest.raises(ValueError):
            jobpersist.load_job_checkpoint(allow_pickle=allow_pickle)
        with pytest.raises(ValueError):
            jobpersist.load_job_result(allow_pickle=allow_pickle)
    for fmt in (None, "plaintext", "pickled_v4"):
        with pytest.raises(ValueError):
            jobpersist.save_job_result({"x": 1}, fmt)
        assert job_env.results_path.read_bytes() == data
    assert temp_leftovers(job_env.results_dir) == []


@pytest.mark.parametrize("name", list(PICKLED_MALFORMED))
def test_malformed_pickled_values(job_env: JobEnv, name: str) -> None:
    data = PICKLED_MALFORMED[name]
    job_env.checkpoint_path.write_bytes(data)
    job_env.results_path.write_bytes(data)
    for load in (jobpersist.load_job_checkpoint, jobpersist.load_job_result):
        # Without allow_pickle: the reference's RuntimeError, before any value is looked at.
        with pytest.raises(RuntimeError, match="allow_pickle=True"):
            load()
        with pytest.raises(ValueError) as info:
            load(allow_pickle=True)
        if name.startswith("garbage_pickle"):
            assert info.value.__cause__ is not None, "the unpickling error is kept as cause"
            assert "'bad'" in str(info.value), "the message names the key"
    # A merge never unpickles: values that are strings are carried as they are; values that
    # are not strings make the file damaged (ValueError, file intact).
    try:
        jobpersist.save_job_result({"x": 1})
    except ValueError:
        assert job_env.results_path.read_bytes() == data
        assert name.startswith("value_"), "a string value was refused on merge"
    else:
        assert not name.startswith("value_"), "a non-string pickled value was carried over"
        merged = json.loads(job_env.results_path.read_bytes())
        old = json.loads(data)["dataDictionary"]
        assert merged["dataFormat"] == "pickled_v4"
        assert {k: v for k, v in merged["dataDictionary"].items() if k != "x"} == old
    assert temp_leftovers(job_env.results_dir) == []


def test_garbage_pickle_cause_types(job_env: JobEnv) -> None:
    for payload in GARBAGE_PICKLES.values():
        job_env.checkpoint_path.write_bytes(
            envelope({"bad": base64.encodebytes(payload).decode()}, "pickled_v4")
        )
        with pytest.raises(ValueError) as info:
            jobpersist.load_job_checkpoint(allow_pickle=True)
        assert isinstance(info.value.__cause__, Exception)


# --------------------------------------------------------------------------------------------
# Valid files that json.dumps would not write: loaded as the reference loads them
# --------------------------------------------------------------------------------------------
VALUES = {"a": [1, "x", {"n": None}], "b\u00e9": 2.5, "long": "y" * 300, "k\ud800": -0.0}


def canonical_pickled() -> bytes:
    return pickled_envelope(VALUES)


def _replace_b64(data: bytes, fn: Any) -> bytes:
    obj = json.loads(data)
    obj["dataDictionary"] = {k: fn(v) for k, v in obj["dataDictionary"].items()}
    return json.dumps(obj).encode()


def _escape_all(text: bytes, char: bytes, escape: bytes) -> bytes:
    """Replaces ``char`` by ``escape`` inside the dataDictionary's string values only."""
    head, sep, rest = text.partition(b'"dataDictionary": {')
    body, sep2, tail = rest.rpartition(b'}, "dataFormat"')
    return head + sep + body.replace(char, escape) + sep2 + tail


NONCANONICAL_PICKLED: dict[str, bytes] = {
    "no_newlines": _replace_b64(canonical_pickled(), lambda v: v.replace("\n", "")),
    "crlf_escapes": _replace_b64(canonical_pickled(), lambda v: v.replace("\n", "\r\n")),
    "u000a_escapes": canonical_pickled().replace(b"\\n", b"\\u000a"),
    "u000A_escapes": canonical_pickled().replace(b"\\n", b"\\u000A"),
    "solidus_escapes": _escape_all(pickled_envelope({"s": "/" * 200, **VALUES}), b"/", b"\\/"),
    "unicode_escaped_base64": canonical_pickled().replace(b"gAS", b"\\u0067AS"),
    "short_lines": _replace_b64(
        canonical_pickled(),
        lambda v: "\n".join(v.replace("\n", "")[i : i + 4] for i in range(0, len(v), 4)),
    ),
    "spaces_in_base64": _replace_b64(canonical_pickled(), lambda v: v.replace("\n", " ")),
    # Characters outside the alphabet are skipped by base64.decodebytes, as the reference
    # decodes.
    "non_alphabet_chars_in_base64": _replace_b64(
        canonical_pickled(), lambda v: v[:3] + "\u00e9!*" + v[3:]
    ),
    "trailing_newline": canonical_pickled() + b"\n",
    "trailing_crlf_and_tabs": canonical_pickled() + b"\r\n\t \r\n",
    "indented": pickled_envelope(VALUES, indent=2),
    "compact": pickled_envelope(VALUES, separators=(",", ":")),
    "crlf_indented": pickled_envelope(VALUES, indent=2).replace(b"\n", b"\r\n"),
    "leading_whitespace": b" \n\t" + canonical_pickled(),
    "extra_spaces": canonical_pickled().replace(b'": "', b'"  :   "').replace(b", ", b" ,  "),
    "reordered_fields": json.dumps(
        {
            "dataFormat": "pickled_v4",
            "dataDictionary": {k: b64(v) for k, v in VALUES.items()},
            "braketSchemaHeader": HEADER,
        }
    ).encode(),
    "no_header": json.dumps(
        {
            "dataDictionary": {k: b64(v) for k, v in VALUES.items()},
            "dataFormat": "pickled_v4",
        }
    ).encode(),
    "extra_fields": json.dumps(
        {
            "braketSchemaHeader": {**HEADER, "extra": 1},
            "x": [1],
            "dataDictionary": {k: b64(v) for k, v in VALUES.items()},
            "dataFormat": "pickled_v4",
        }
    ).encode(),
    "header_version_int": json.dumps(
        {
            "braketSchemaHeader": {**HEADER, "version": 1},
            "dataDictionary": {k: b64(v) for k, v in VALUES.items()},
            "dataFormat": "pickled_v4",
        }
    ).encode(),
    "raw_utf8_keys": json.dumps(
        {
            "braketSchemaHeader": HEADER,
            "dataDictionary": {"b\u00e9\U0001f600": b64(1), "\u65e5": b64(2)},
            "dataFormat": "pickled_v4",
        },
        ensure_ascii=False,
    ).encode(),
    "escaped_keys": canonical_pickled().replace(b'"a": ', b'"\\u0061": '),
    "key_with_escaped_quote": pickled_envelope({'q"uote': 1, "back\\slash": 2, "end\\": 3}),
    "duplicate_keys": canonical_pickled().replace(
        b'"dataDictionary": {',
        b'"dataDictionary": {"a": "' + b64("first").encode().replace(b"\n", b"\\n") + b'", ',
    ),
    "empty_dictionary": envelope({}, "pickled_v4"),
    "empty_dictionary_spaced": envelope({}, "pickled_v4", indent=1),
    "data_dictionary_pairs": envelope([["a", b64(1)], ["b", b64(2)]], "pickled_v4"),
}

NONCANONICAL_PLAINTEXT: dict[str, bytes] = {
    "indented": envelope({"a": [1, 2.5, None], "b": {"c": "d"}}, indent=2),
    "compact": envelope({"a": [1, 2.5, None]}, separators=(",", ":")),
    "unicode_raw": envelope({"\u00e9": "\U0001f600"}, ensure_ascii=False),
    "escapes": envelope({"a": "x"}).replace(b'"x"', b'"\\u0078\\/\\n\\ud800"'),
    "nan_inf": envelope({"a": [float("nan"), float("inf"), float("-inf")]}),
    "big_numbers": envelope({"a": [2**100, -(2**70), 1e308, 5e-324, 123456789012345678901]}),
    "big_exponents": envelope({"a": 1}).replace(b"1}", b'1e400, "b": -1E+400, "c": 1e-400}'),
    "negative_zero": envelope({"a": -0.0, "b": 0}).replace(b'"b": 0', b'"b": -0'),
    "duplicate_keys": envelope({"a": 1}).replace(b'{"a": 1}', b'{"a": 1, "b": 2, "a": 3}'),
    "no_header": raw({"dataDictionary": {"a": 1}, "dataFormat": "plaintext"}),
    "unknown_format": envelope({"a": "gARLAS4=\n"}, "pickled_v5"),
    "format_number": envelope({"a": 1}, 5),
    "format_uppercase": envelope({"a": 1}, "PICKLED_V4"),
    "data_dictionary_pairs": envelope([["a", 1], [2, "two"], [1.5, None], [True, "t"]]),
    "data_dictionary_string_pairs": envelope(["ab", "cd"]),
    "crlf": envelope({"a": [1, 2]}, indent=1).replace(b"\n", b"\r\n"),
    # Regression (bug found by this suite, fixed in dd2bcf5; _envelope.validate_envelope):
    # the reference's pydantic v1
    # schema accepts anything dict() accepts for the envelope and for its header (lists of
    # pairs); jobpersist refuses them with ValueError. Repro: a results.json holding
    #   [["dataDictionary", {"a": 1}], ["dataFormat", "plaintext"]]
    # loads as {"a": 1} with the reference, raises ValueError with jobpersist.
    "envelope_pairs": raw([["dataDictionary", {"a": 1}], ["dataFormat", "plaintext"]]),
    "header_pairs": raw(
        {
            "braketSchemaHeader": [["name", HEADER["name"]], ["version", "1"]],
            "dataDictionary": {"a": 1},
            "dataFormat": "plaintext",
        }
    ),
}


def load_both(path: Path, allow_pickle: bool) -> tuple[Any, Any]:
    ours: Any
    theirs: Any
    try:
        ours = ("ok", canon(jobpersist.load_job_result(path, allow_pickle=allow_pickle)))
    except Exception as exc:
        ours = ("error", type(exc).__name__, str(exc))
    try:
        theirs = ("ok", canon(reference.load_job_result(path, allow_pickle=allow_pickle)))
    except Exception as exc:
        theirs = ("error", type(exc).__name__, str(exc))
    return ours, theirs


@pytest.mark.parametrize("name", list(NONCANONICAL_PICKLED))
def test_noncanonical_pickled_loads_as_reference(job_env: JobEnv, name: str) -> None:
    data = NONCANONICAL_PICKLED[name]
    path = job_env.results_path
    path.write_bytes(data)
    ours, theirs = load_both(path, allow_pickle=True)
    assert theirs[0] == "ok", theirs  # the file is valid for the reference
    assert ours == theirs
    ours, theirs = load_both(path, allow_pickle=False)
    assert ours == theirs
    assert ours[0] == "error" and ours[1] == "RuntimeError"
    # The checkpoint loader agrees.
    job_env.checkpoint_path.write_bytes(data)
    assert canon(jobpersist.load_job_checkpoint(allow_pickle=True)) == canon(
        reference_load(job_env.checkpoint_path, True)
    )
    # A merge carries every old value (by its decoded text) and adds the new one.
    expected = reference.load_job_result(path, allow_pickle=True)
    jobpersist.save_job_result({"new": [1]})
    merged = jobpersist.load_job_result(allow_pickle=True)
    assert canon(merged) == canon({**expected, "new": [1]})
    assert canon(reference.load_job_result(path, allow_pickle=True)) == canon(merged)


@pytest.mark.parametrize("name", list(NONCANONICAL_PLAINTEXT))
def test_noncanonical_plaintext_loads_as_reference(
    job_env: JobEnv, tmp_path: Path, name: str
) -> None:
    data = NONCANONICAL_PLAINTEXT[name]
    path = job_env.results_path
    path.write_bytes(data)
    ours, theirs = load_both(path, allow_pickle=False)
    assert theirs[0] == "ok", theirs
    assert ours == theirs
    assert load_both(path, allow_pickle=True) == (ours, theirs)
    job_env.checkpoint_path.write_bytes(data)
    assert canon(jobpersist.load_job_checkpoint()) == canon(
        reference_load(job_env.checkpoint_path, False)
    )
    # A merge writes what the reference's merge writes.
    reference_dir = tmp_path / "reference_results"
    reference_dir.mkdir()
    (reference_dir / "results.json").write_bytes(data)
    jobpersist.save_job_result({"new": 1})
    with environ(AMZN_BRAKET_JOB_RESULTS_DIR=str(reference_dir)):
        reference.save_job_result({"new": 1})
    assert path.read_bytes() == (reference_dir / "results.json").read_bytes()


# --------------------------------------------------------------------------------------------
# Fuzzed envelopes: jobpersist accepts what the reference accepts, with the same result, and
# refuses the rest with ValueError (RuntimeError where the reference refuses to unpickle)
# --------------------------------------------------------------------------------------------
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["plaintext", "pickled_v4", "1", HEADER["name"], "", "PLAINTEXT"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=4), children, max_size=3),
    ),
    max_leaves=8,
)
headers = st.one_of(
    st.just(HEADER),
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(st.just(HEADER["name"]), json_scalars),
            "version": st.one_of(st.sampled_from(["1", 1, 1.0, "01", "1 "]), json_scalars),
            "extra": json_values,
        },
    ),
    st.lists(st.tuples(st.sampled_from(["name", "version"]), json_scalars), max_size=2),
    json_values,
)
dictionaries = st.one_of(
    st.dictionaries(st.text(max_size=5), json_values, max_size=4),
    st.lists(st.tuples(json_scalars, json_values), max_size=3),
    json_values,
)
envelopes = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "braketSchemaHeader": headers,
            "dataDictionary": dictionaries,
            "dataFormat": st.one_of(st.sampled_from(["plaintext", "pickled_v4"]), json_scalars),
            "other": json_values,
        },
    ),
    st.lists(
        st.tuples(
            st.sampled_from(["braketSchemaHeader", "dataDictionary", "dataFormat"]), json_values
        ),
        max_size=3,
    ),
    json_values,
)


@given(obj=envelopes, indent=st.sampled_from([None, 0, 2]))
def test_fuzzed_envelopes_load_as_reference(job_env: JobEnv, obj: Any, indent: Any) -> None:
    data = json.dumps(obj, indent=indent).encode()
    path = job_env.results_path
    path.write_bytes(data)
    ours, theirs = load_both(path, allow_pickle=False)
    if theirs[0] == "ok":
        assert ours == theirs
    elif theirs[1] == "RuntimeError":
        assert ours[:2] == ("error", "RuntimeError"), (ours, theirs)
    else:
        assert ours[:2] == ("error", "ValueError"), (ours, theirs)
    if ours[0] == "ok":
        # And a merge over it writes what the reference's merge writes.
        reference_dir = path.parent.parent / "reference_results"
        reference_dir.mkdir(exist_ok=True)
        (reference_dir / "results.json").write_bytes(data)
        jobpersist.save_job_result({"new": 1})
        with environ(AMZN_BRAKET_JOB_RESULTS_DIR=str(reference_dir)):
            reference.save_job_result({"new": 1})
        assert path.read_bytes() == (reference_dir / "results.json").read_bytes()
