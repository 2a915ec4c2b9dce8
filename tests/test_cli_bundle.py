"""``jobpersist bundle DIR``: which wheels it picks, what it writes, what it refuses.

The wheels are small but well-formed fakes (a module and a dist-info), named like the real
ones, so pip can install them; no test reaches the network (``PIP_NO_INDEX=1``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import jobpersist
from jobpersist import cli
from jobpersist._packaging.bundle import BEGIN, END, Target, Wheel

VERSION = jobpersist.__version__
ORJSON = "3.10.7"
NATIVE_312 = f"jobpersist-{VERSION}-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
ABI3_311 = f"jobpersist-{VERSION}-cp311-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
PURE = f"jobpersist-{VERSION}-py3-none-any.whl"
ORJSON_312 = f"orjson-{ORJSON}-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
BLOCK = [BEGIN, "--find-links wheels", f"jobpersist=={VERSION}", f"orjson=={ORJSON}", END]


def make_wheel(directory: Path, filename: str) -> Path:
    """A minimal installable wheel named ``filename``; its module says which file it was."""
    parsed = Wheel.parse(Path(filename))
    assert parsed is not None, filename
    name, version = parsed.name, parsed.version
    dist_info = f"{name}-{version}.dist-info"
    tags = [f"{p}-{a}-{t}" for p in parsed.pythons for a in parsed.abis for t in parsed.platforms]
    files = {
        f"{name}/__init__.py": f"WHEEL = {filename!r}\n".encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
            + "".join(f"Tag: {tag}\n" for tag in tags)
        ).encode(),
    }
    record = [
        f"{path},sha256="
        + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        + f",{len(data)}"
        for path, data in files.items()
    ]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in files.items():
            archive.writestr(member, data)
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def links(tmp_path: Path, *names: str) -> Path:
    directory = tmp_path / "dist"
    directory.mkdir(exist_ok=True)
    for name in names:
        make_wheel(directory, name)
    return directory


def bundle(
    capsys: pytest.CaptureFixture[str], job: Path, *find_links: Path, extra: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    argv = ["bundle", "--orjson-version", ORJSON, *extra]
    for directory in find_links:
        argv += ["--find-links", str(directory)]
    return run(capsys, *argv, str(job))


def wheels(job: Path) -> set[str]:
    return {p.name for p in (job / "wheels").iterdir()}


# --------------------------------------------------------------------------------------------
# Picking the wheels
# --------------------------------------------------------------------------------------------
def test_writes_wheels_and_requirements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = links(tmp_path, NATIVE_312, ABI3_311, PURE, ORJSON_312)
    (dist / "README.txt").write_text("not a wheel")
    job = tmp_path / "job"
    status, out, err = bundle(capsys, job, dist)
    assert status == 0, err
    assert (job / "requirements.txt").read_text() == "\n".join(BLOCK) + "\n"
    # The exact ABI is preferred over the stable ABI, as pip prefers it.
    assert wheels(job) == {NATIVE_312, PURE, ORJSON_312}
    for name in (NATIVE_312, PURE, ORJSON_312):
        assert (job / "wheels" / name).read_bytes() == (dist / name).read_bytes()
        assert f"wheels/{name}" in out


def test_stable_abi_wheel_serves_a_newer_python(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dist = links(tmp_path, ABI3_311, PURE, ORJSON_312)
    status, _, err = bundle(capsys, tmp_path / "job", dist)
    assert status == 0, err
    assert wheels(tmp_path / "job") == {ABI3_311, PURE, ORJSON_312}


def test_find_links_repeatable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ours = links(tmp_path, ABI3_311, PURE)
    theirs = tmp_path / "vendor"
    make_wheel(theirs, ORJSON_312)
    status, out, err = bundle(capsys, tmp_path / "job", ours, theirs)
    assert status == 0, err
    assert wheels(tmp_path / "job") == {ABI3_311, PURE, ORJSON_312}
    assert f"from {theirs}" in out


@pytest.mark.parametrize(
    "native",
    [
        f"jobpersist-{VERSION}-cp311-cp311-manylinux_2_17_x86_64.whl",  # another Python
        f"jobpersist-{VERSION}-cp313-abi3-manylinux_2_17_x86_64.whl",  # needs 3.13+
        f"jobpersist-{VERSION}-cp312-cp312-linux_x86_64.whl",  # not portable
        f"jobpersist-{VERSION}-cp312-cp312-manylinux_2_39_x86_64.whl",  # glibc too new
        f"jobpersist-{VERSION}-cp312-cp312-manylinux_2_17_aarch64.whl",  # another CPU
        f"jobpersist-{VERSION}-cp312-cp312-musllinux_1_2_x86_64.whl",
        "jobpersist-0.0.1-cp312-cp312-manylinux_2_17_x86_64.whl",  # another version
    ],
)
def test_no_native_wheel_for_the_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], native: str
) -> None:
    dist = links(tmp_path, native, PURE, ORJSON_312)
    job = tmp_path / "job"
    status, out, err = bundle(capsys, job, dist)
    assert status == 2 and out == ""
    assert err.count("\n") == 1, err
    assert err.startswith(f"jobpersist: error: no jobpersist {VERSION} wheel for cp312 on ")
    assert not job.exists()


def test_no_pure_wheel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = links(tmp_path, NATIVE_312, ORJSON_312)
    status, _, err = bundle(capsys, tmp_path / "job", dist)
    assert status == 2
    assert "no jobpersist" in err and "pure-Python wheel (py3-none-any)" in err
    assert NATIVE_312 in err  # what was found
    assert not (tmp_path / "job").exists()


def test_other_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    native = f"jobpersist-{VERSION}-cp310-cp310-manylinux_2_28_aarch64.whl"
    orjson = f"orjson-{ORJSON}-cp310-cp310-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    dist = links(tmp_path, NATIVE_312, native, PURE, orjson)
    extra = ("--python-version", "3.10", "--platform", "manylinux_2_28_aarch64")
    status, _, err = bundle(capsys, tmp_path / "job", dist, extra=extra)
    assert status == 0, err
    assert wheels(tmp_path / "job") == {native, PURE, orjson}


def test_target_tags() -> None:
    target = Target.from_args("3.12", "manylinux_2_35_x86_64")
    tags = target.platform_tags()
    assert tags[0] == "manylinux_2_35_x86_64" and "manylinux_2_5_x86_64" in tags
    assert "manylinux_2_4_x86_64" not in tags and "manylinux_2_36_x86_64" not in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert Target.from_args("3.12", "manylinux2014_x86_64").glibc == (2, 17)
    assert (
        "manylinux2014_x86_64"
        not in Target.from_args("3.12", "manylinux_2_12_x86_64").platform_tags()
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--python-version", "312"], "--python-version 312: use 3.MINOR"),
        (["--python-version", "2.7"], "use 3.MINOR"),
        (["--platform", "linux_x86_64"], "--platform linux_x86_64: use a manylinux tag"),
        (["--platform", "win_amd64"], "use a manylinux tag"),
    ],
)
def test_bad_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    dist = links(tmp_path, NATIVE_312, PURE, ORJSON_312)
    status, _, err = bundle(capsys, tmp_path / "job", dist, extra=tuple(argv))
    assert status == 2 and message in err


def test_bad_find_links_and_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = bundle(capsys, tmp_path / "job", tmp_path / "missing")
    assert status == 2 and "missing: not a directory" in err
    dist = links(tmp_path, NATIVE_312, PURE, ORJSON_312)
    (tmp_path / "file").write_text("")
    status, _, err = bundle(capsys, tmp_path / "file", dist)
    assert status == 2 and "file: not a directory" in err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bundle", str(tmp_path / "job")])
    assert exit_info.value.code == 2
    assert "--find-links" in capsys.readouterr().err


def test_damaged_wheel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = links(tmp_path, PURE, ORJSON_312)
    (dist / NATIVE_312).write_bytes(b"truncated download")
    status, _, err = bundle(capsys, tmp_path / "job", dist)
    assert status == 2 and f"{NATIVE_312}: not a wheel" in err


# --------------------------------------------------------------------------------------------
# orjson: from --find-links, else pip download
# --------------------------------------------------------------------------------------------
def test_orjson_downloaded_with_pip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # pip finds it through its own configuration (an "index" here), not --find-links.
    index = tmp_path / "index"
    make_wheel(index, ORJSON_312)
    make_wheel(index, f"orjson-{ORJSON}-cp311-cp311-manylinux_2_17_x86_64.whl")
    make_wheel(index, f"orjson-{ORJSON}-cp312-cp312-manylinux_2_39_x86_64.whl")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    dist = links(tmp_path, NATIVE_312, PURE)
    status, out, err = bundle(capsys, tmp_path / "job", dist)
    assert status == 0, err
    assert wheels(tmp_path / "job") == {NATIVE_312, PURE, ORJSON_312}
    assert f"{ORJSON_312}  (downloaded with pip)" in out


def test_orjson_download_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = links(tmp_path, NATIVE_312, PURE)
    status, _, err = bundle(capsys, tmp_path / "job", dist)
    assert status == 2
    assert err.startswith(f"jobpersist: error: cannot download orjson=={ORJSON} for cp312")
    assert err.count("\n") == 1
    assert not (tmp_path / "job").exists()


# --------------------------------------------------------------------------------------------
# requirements.txt: the user's lines are kept, the block is replaced
# --------------------------------------------------------------------------------------------
def test_merges_into_user_requirements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = links(tmp_path, NATIVE_312, PURE, ORJSON_312)
    job = tmp_path / "job"
    make_wheel(job / "wheels", "mylib-1.0-py3-none-any.whl")
    user = "# my job\nnumpy>=1.24\nmylib==1.0\n\n"
    (job / "requirements.txt").write_text(user)
    assert bundle(capsys, job, dist)[0] == 0
    first = (job / "requirements.txt").read_text()
    assert first == "# my job\nnumpy>=1.24\nmylib==1.0\n\n" + "\n".join(BLOCK) + "\n"
    assert bundle(capsys, job, dist)[0] == 0
    assert (job / "requirements.txt").read_text() == first  # idempotent

    # Another orjson: the block is replaced, the old orjson wheel goes, the user's stays.
    newer = "orjson-3.11.0-cp312-cp312-manylinux_2_17_x86_64.whl"
    make_wheel(dist, newer)
    argv = ["bundle", "--orjson-version", "3.11.0", "--find-links", str(dist), str(job)]
    status, _, err = run(capsys, *argv)
    assert status == 0, err
    text = (job / "requirements.txt").read_text()
    assert text.count(BEGIN) == 1 and "orjson==3.11.0" in text and ORJSON not in text
    assert text.startswith(user.rstrip("\n") + "\n\n" + BEGIN)
    assert wheels(job) == {NATIVE_312, PURE, newer, "mylib-1.0-py3-none-any.whl"}


@pytest.mark.parametrize(
    "line", ["orjson==3.9.0", "orjson", "jobpersist>=0.2", "JobPersist", "orjson[extra]~=3.9"]
)
def test_refuses_conflicting_user_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    dist = links(tmp_path, NATIVE_312, PURE, ORJSON_312)
    job = tmp_path / "job"
    job.mkdir()
    original = f"numpy\n{line}\n"
    (job / "requirements.txt").write_text(original)
    status, _, err = bundle(capsys, job, dist)
    assert status == 2
    assert f"requirements.txt:2: {line!r} conflicts with the bundle's" in err
    assert (job / "requirements.txt").read_text() == original
    assert not (job / "wheels").exists()


def test_accepts_the_same_pin(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dist = links(tmp_path, NATIVE_312, PURE, ORJSON_312)
    job = tmp_path / "job"
    job.mkdir()
    (job / "requirements.txt").write_text(f"orjson=={ORJSON}\n")
    assert bundle(capsys, job, dist)[0] == 0


@pytest.mark.parametrize("text", [f"{BEGIN}\nx\n", f"x\n{END}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"])
def test_refuses_broken_markers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    dist = links(tmp_path, NATIVE_312, PURE, ORJSON_312)
    job = tmp_path / "job"
    job.mkdir()
    (job / "requirements.txt").write_text(text)
    status, _, err = bundle(capsys, job, dist)
    assert status == 2 and "requirements.txt:" in err
    assert (job / "requirements.txt").read_text() == text


# --------------------------------------------------------------------------------------------
# pip installs the bundle offline, from any directory
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("cwd", ["job", "elsewhere"])
def test_pip_installs_the_bundle_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cwd: str
) -> None:
    dist = links(tmp_path, NATIVE_312, ABI3_311, PURE, ORJSON_312)
    job = tmp_path / "job"
    assert bundle(capsys, job, dist)[0] == 0
    (tmp_path / "elsewhere").mkdir()
    target = Target.from_args("3.12", "manylinux_2_35_x86_64")
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(tmp_path / "site"), "--only-binary=:all:", "--implementation", "cp",
        "--python-version", "3.12", "--abi", "cp312", "--abi", "abi3",
        *[arg for tag in target.platform_tags() for arg in ("--platform", tag)],
        "-r", str(job / "requirements.txt"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_NO_INDEX"] = "1"
    proc = subprocess.run(
        command, cwd=tmp_path / cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    site = tmp_path / "site"
    assert f"WHEEL = {NATIVE_312!r}" in (site / "jobpersist" / "__init__.py").read_text()
    assert f"WHEEL = {ORJSON_312!r}" in (site / "orjson" / "__init__.py").read_text()
