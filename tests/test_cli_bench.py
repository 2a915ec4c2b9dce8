"""``jobpersist bench``: the table, the chart, the JSON, without the extras, bad arguments."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
from support.backends import native_available

import jobpersist
from jobpersist import cli
from jobpersist.cli._common import size_argument


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# --------------------------------------------------------------------------------------------
def test_bench_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    chart = tmp_path / "chart.png"
    data = tmp_path / "timings.json"
    status, out, _ = run(
        capsys,
        "bench",
        "--size",
        "64K",
        "--size",
        "256K",
        "--rounds",
        "1",
        "--plot",
        str(chart),
        "--json",
        str(data),
        "--no-progress",
    )
    assert status == 0
    assert "save vs reference" in out
    for name in ("native", "python", "reference"):
        assert name in out
    assert chart.read_bytes().startswith(b"\x89PNG")
    timings = json.loads(data.read_text())
    assert {t["impl"] for t in timings} == {"native", "python", "reference"}
    assert jobpersist.BACKEND in ("native", "python")


def test_bench_plaintext_without_matplotlib(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "rich.progress", None)
    status, out, err = run(
        capsys,
        "bench",
        "--format",
        "plaintext",
        "--size",
        "32K",
        "--rounds",
        "1",
        "--impl",
        "native",
        "--impl",
        "python",
        "--plot",
        str(tmp_path / "c.png"),
    )
    assert status == 0
    assert "save vs python" in out
    assert "pip install 'jobpersist[bench]'" in out
    # Plain progress lines; bench skips (and says so) the native backend where it is not built.
    assert f"[1/{2 if native_available() else 1}]" in err
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--size", "lots"], "invalid size"),
        (["bench", "--size", "0"], "must be positive"),
        (["bench", "--rounds", "0"], "at least 1"),
        (["bench", "--format", "xml"], "invalid choice"),
        (["bench", "--impl", "other"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
        (["inspect"], "required"),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_bad_plot_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "bench", "--plot", str(tmp_path / "no" / "c.png"))
    assert status == 2 and "does not exist" in err


def test_size_argument() -> None:
    # A bare number is bytes, as for JOBPERSIST_MAX_PENDING_BYTES (one parser, one meaning).
    assert size_argument("16") == 16
    assert size_argument("512K") == 512 << 10
    assert size_argument("1.5M") == 3 << 19
    assert size_argument("2GiB") == 2 << 30
    for bad in ("0", "0M", "lots", "1.5", "-4M"):
        with pytest.raises(argparse.ArgumentTypeError, match="invalid size"):
            size_argument(bad)


def test_bench_small_cases_name_each_rows_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "small.json"
    # The reference cannot be installed everywhere (Python 3.10): its rows then are not asked.
    reference = importlib.util.find_spec("braket") is not None
    impls = ["--impl", "python"] + (["--impl", "reference"] if reference else [])
    if native_available():
        impls += ["--impl", "native"]
    status, out, _ = run(
        capsys, "bench", "--small", "--calls", "3", "--rounds", "1", "--dir", str(tmp_path),
        "--json", str(data), "--no-progress", *impls,
    )  # fmt: skip
    assert status == 0, out
    timings = json.loads(data.read_text())
    rows = {(t["case"], t["impl"], t["mode"]) for t in timings}
    backends = ["python"] + (["native"] if native_available() else [])
    for case in ("checkpoint", "pickled", "merge", "load"):
        assert ((case, "reference", "-") in rows) is reference
        for impl in backends:
            for mode in ("deferred", "full", "none"):
                assert (case, impl, mode) in rows
    assert "deferred is the default" in out and "vs reference" in out
    assert "result merge (one key into 50)" in out
    assert "calls back to back" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.json"]  # all cleaned up


def test_bench_small_pauses_between_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = time.perf_counter()
    status, out, _ = run(
        capsys, "bench", "--small", "--calls", "2", "--rounds", "1", "--dir", str(tmp_path),
        "--pause-ms", "100", "--no-progress", "--impl", "python",
    )  # fmt: skip
    assert status == 0, out
    assert "2 calls 100 ms apart" in out
    # Four cases, three modes, two calls each followed by 0.1 s.
    assert time.perf_counter() - start >= 4 * 3 * 2 * 0.1
