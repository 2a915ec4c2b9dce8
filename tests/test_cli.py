"""The ``jobpersist`` command: inspect, verify, help, ``python -m``; bench, info and bundle
have their own test files."""

from __future__ import annotations

import base64
import builtins
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.jobenv import JobEnv, child_env

import jobpersist
from jobpersist import cli
from jobpersist._pickle.inspect import classify, scan_pickle

F = jobpersist.PersistedJobDataFormat
HEADER = {"name": "braket.jobs_data.persisted_job_data", "version": "1"}


class Hostile:
    """Unpickling this runs ``os.system``: inspect must show it, never run it."""

    def __reduce__(self) -> Any:
        return (os.system, ("touch /tmp/jobpersist-pwned",))


class Evil:
    def __reduce__(self) -> Any:
        return (builtins.eval, ("1+1",))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def envelope(path: Path, dictionary: dict[str, Any], data_format: str) -> Path:
    path.write_text(
        json.dumps(
            {"braketSchemaHeader": HEADER, "dataDictionary": dictionary, "dataFormat": data_format}
        )
    )
    return path


def pickled(value: Any, protocol: int = 4) -> str:
    return base64.encodebytes(pickle.dumps(value, protocol=protocol)).decode()


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------
def test_inspect_pickled_checkpoint(job_env: JobEnv, capsys: pytest.CaptureFixture[str]) -> None:
    jobpersist.save_job_checkpoint(
        {"weights": np.arange(1000.0), "step": 3}, data_format=F.PICKLED_V4
    )
    status, out, _ = run(capsys, "inspect", str(job_env.checkpoint_path))
    assert status == 0
    assert "format:  pickled_v4" in out
    assert "braket.jobs_data.persisted_job_data version 1" in out
    assert "'weights'" in out and "'step'" in out
    assert "numpy.ndarray  [safe]" in out
    assert "every import is on the safe list" in out


def test_inspect_json(job_env: JobEnv, capsys: pytest.CaptureFixture[str]) -> None:
    payload = np.arange(100.0)
    jobpersist.save_job_checkpoint({"a": payload, "b": "x"}, data_format=F.PICKLED_V4)
    status, out, _ = run(capsys, "inspect", "--json", str(job_env.checkpoint_path))
    assert status == 0
    report = json.loads(out)
    assert report["ok"] and report["format"] == "pickled_v4"
    assert report["schema"] == HEADER
    assert report["keys"] == ["a", "b"]
    a = report["values"][0]
    assert a["decoded_size"] == len(pickle.dumps(payload, protocol=4))
    assert a["encoded_size"] > a["decoded_size"]
    assert report["total_decoded_size"] == sum(v["decoded_size"] for v in report["values"])
    assert {g["name"] for g in a["pickle"]["globals"]} >= {"ndarray", "dtype"}
    assert a["pickle"]["calls"]["REDUCE"] >= 1
    assert report["unsafe_globals"] == []


def test_inspect_plaintext(job_env: JobEnv, capsys: pytest.CaptureFixture[str]) -> None:
    jobpersist.save_job_checkpoint({"a": [1, 2, 3], "b": {"c": 1}})
    status, out, _ = run(capsys, "inspect", "--json", str(job_env.checkpoint_path))
    report = json.loads(out)
    assert status == 0 and report["format"] == "plaintext"
    assert [v["kind"] for v in report["values"]] == ["array (3 items)", "object (1 keys)"]
    assert report["values"][0]["encoded_size"] == len("[1, 2, 3]")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_inspect_shows_hostile_global_without_running_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], protocol: int
) -> None:
    marker = Path("/tmp/jobpersist-pwned")
    marker.unlink(missing_ok=True)
    path = envelope(tmp_path / "evil.json", {"x": pickled(Hostile(), protocol)}, "pickled_v4")
    status, out, _ = run(capsys, "inspect", str(path))
    assert status == 0  # not damaged: dangerous
    assert f"{os.system.__module__}.system  [UNSAFE: dangerous]" in out
    assert "outside the safe list" in out
    assert not marker.exists(), "inspect ran the pickle!"
    status, out, _ = run(capsys, "inspect", "--json", str(path))
    assert json.loads(out)["unsafe_globals"] == [f"{os.system.__module__}.system"]
    assert not marker.exists()


def test_scan_classifies_globals() -> None:
    assert classify("posix", "system") == "dangerous"
    assert classify("os", "system") == "dangerous"
    assert classify("builtins", "eval") == "dangerous"
    assert classify("builtins", "exec") == "dangerous"
    assert classify("subprocess", "Popen") == "dangerous"
    assert classify("numpy.core.multiarray", "_reconstruct") == "safe"
    assert classify("numpy._core.multiarray", "_reconstruct") == "safe"
    assert classify("collections", "OrderedDict") == "safe"
    assert classify("copyreg", "_reconstructor") == "unlisted"  # safe mode does not load it
    assert classify("mypackage", "Model") == "unlisted"
    scan = scan_pickle(pickle.dumps(Evil(), protocol=4))
    assert [(g.qualified, g.status) for g in scan.globals] == [("builtins.eval", "dangerous")]
    assert scan.calls == {"REDUCE": 1} and not scan.safe


def test_scan_stack_global_through_memo() -> None:
    # The same global twice: the second STACK_GLOBAL's strings come from the memo.
    import collections

    value = [collections.OrderedDict(a=1), collections.OrderedDict(b=2), np.arange(2), np.arange(3)]
    scan = scan_pickle(pickle.dumps(value, protocol=4))
    assert scan.error is None and scan.safe
    assert "?.?" not in {g.qualified for g in scan.globals}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"dataDictionary": {}}', "dataFormat is missing"),
        (b'{"dataFormat": "plaintext"}', "dataDictionary is missing"),
        (b"", "not valid JSON"),
    ],
)
def test_inspect_damaged_structure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    status, _, err = run(capsys, "inspect", str(path))
    assert status == 1
    assert "damaged" in err and reason in err


def test_inspect_damaged_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truncated = base64.encodebytes(pickle.dumps(list(range(100)), protocol=4)[:-20]).decode()
    path = envelope(
        tmp_path / "bad.json",
        {"ok": pickled(1), "number": 5, "base64": "!!!not base64@@@=", "cut": truncated},
        "pickled_v4",
    )
    status, out, err = run(capsys, "inspect", "--json", str(path))
    assert status == 1
    problems = json.loads(out)["problems"]
    assert any("'number'" in p and "base64 string" in p for p in problems)
    assert any("'base64'" in p for p in problems)
    assert any("'cut'" in p and "opcode stream" in p for p in problems)
    assert "damaged" in err


def test_inspect_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "inspect", str(tmp_path / "missing.json"))
    assert status == 2
    assert "cannot read" in err and "missing.json" in err
    status, _, err = run(capsys, "inspect", str(tmp_path))
    assert status == 2 and "is a directory" in err


# --------------------------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------------------------
def test_verify(job_env: JobEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobpersist.save_job_checkpoint({"a": np.arange(10)}, data_format=F.PICKLED_V4)
    jobpersist.save_job_result({"r": 1.5})
    good = [str(job_env.checkpoint_path), str(job_env.results_path)]
    status, out, _ = run(capsys, "verify", *good)
    assert status == 0
    assert out.count("OK") == 2 and len(out.splitlines()) == 2

    bad = tmp_path / "bad.json"
    bad.write_bytes(job_env.checkpoint_path.read_bytes()[:-40])
    status, out, err = run(capsys, "verify", *good, str(bad), str(tmp_path / "nope.json"))
    assert status == 1
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("FAIL") and "bad.json" in lines[2]
    assert lines[3].startswith("FAIL") and "cannot read" in lines[3]
    assert "2 of 4" in err


def test_verify_safe_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = envelope(tmp_path / "evil.json", {"x": pickled(Hostile())}, "pickled_v4")
    status, out, _ = run(capsys, "verify", str(path))
    assert status == 0 and "unsafe import" in out
    status, out, _ = run(capsys, "verify", "--safe-only", str(path))
    assert status == 1 and "system" in out


def test_verify_reference_files(twin: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Files written by the reference itself verify.
    twin.step(lambda api: api.save_job_checkpoint({"a": [1, 2]}, "", api.Format.PICKLED_V4))
    twin.step(lambda api: api.save_job_result({"b": 2}))
    files = [p for d in twin.dirs["reference"] for p in d.iterdir()]
    status, out, _ = run(capsys, "verify", *map(str, files))
    assert status == 0, out


# --------------------------------------------------------------------------------------------
# As a program
# --------------------------------------------------------------------------------------------
def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["inspect", "--help"], ["verify", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_python_dash_m(job_env: JobEnv) -> None:
    jobpersist.save_job_checkpoint({"a": 1})
    proc = subprocess.run(
        [sys.executable, "-m", "jobpersist", "verify", str(job_env.checkpoint_path)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK")


def test_inspect_needs_only_core_install(job_env: JobEnv) -> None:
    # inspect and verify import neither numpy nor the SDK nor the bench extras.
    jobpersist.save_job_checkpoint({"a": 1}, data_format=F.PICKLED_V4)
    code = (
        "import sys\n"
        "from jobpersist.cli import main\n"
        f"status = main(['inspect', {str(job_env.checkpoint_path)!r}])\n"
        "heavy = [m for m in ('numpy', 'braket', 'matplotlib', 'tqdm', 'rich') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "sys.exit(status)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
