"""``jobpersist info``: each reason the backend may not be native, the wheel tags, the SIMD.

Every case runs ``python -m jobpersist info`` in a fresh interpreter. The pure wheel, the
broken compiled module and the installed native wheel are simulated with a copy of the
package (without its compiled module, with a garbage one, with it) first on ``PYTHONPATH``,
next to a dist-info like the one pip writes when it installs a wheel.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.backends import native_available, python_only_run
from support.jobenv import child_env

import jobpersist
from jobpersist.cli import info

native_only = pytest.mark.skipif(
    python_only_run(), reason="JOBPERSIST_BACKEND=python: the native backend is not required"
)
PACKAGE = Path(jobpersist.__file__).resolve().parent


def run_info(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "jobpersist", "info", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def info_json(env: dict[str, str], cwd: Path | None = None) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(run_info(env, "--json", cwd=cwd))
    return result


def expected_simd() -> str | None:
    """What base64-simd picks here, from the kernel's CPU flags (x86 Linux only)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "i686", "AMD64"):
        return None
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    if "avx2" in flags:
        return "avx2"
    return "ssse3" if "ssse3" in flags else "fallback"


def is_compiled_module(name: str) -> bool:
    return name.startswith("_native.") and any(
        name.endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES
    )


def installed_copy(
    root: Path, *, native: bool, tags: list[str] | None, garbage_native: bool = False
) -> dict[str, str]:
    """A copy of the package in ``root/site`` (with or without its compiled module, or with
    a garbage one), with the dist-info pip writes for a wheel of ``tags`` (none when None).

    Returns the environment of a child that imports the copy.
    """
    site = root / "site"
    shutil.copytree(
        PACKAGE,
        site / "jobpersist",
        ignore=lambda _, names: [
            n for n in names if n == "__pycache__" or (not native and is_compiled_module(n))
        ],
    )
    if garbage_native:
        suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
        (site / "jobpersist" / f"_native{suffix}").write_bytes(b"not a shared object\n" * 8)
    if tags is not None:
        dist_info = site / f"jobpersist-{jobpersist.__version__}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.4\nName: jobpersist\nVersion: {jobpersist.__version__}\n"
        )
        (dist_info / "WHEEL").write_text(
            "Wheel-Version: 1.0\nGenerator: maturin\nRoot-Is-Purelib: false\n"
            + "".join(f"Tag: {tag}\n" for tag in tags)
        )
        (dist_info / "INSTALLER").write_text("pip\n")
        files = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
        (dist_info / "RECORD").write_text(
            "".join(f"{f},,\n" for f in [*files, f"{dist_info.name}/RECORD"])
        )
    env = {k: v for k, v in os.environ.items() if k != "JOBPERSIST_BACKEND"}
    env["PYTHONPATH"] = str(site)
    return env


@native_only
def test_native() -> None:
    from jobpersist import _native

    report = info_json(child_env())
    assert report["backend"] == "native" and report["reason"] is None
    assert report["native_module"]["status"] == "importable"
    assert report["version"] == jobpersist.__version__
    assert report["base64_simd"] == _native.base64_isa()
    expected = expected_simd()
    if expected is not None:
        assert report["base64_simd"] == expected
    wheel = report["wheel"]
    if wheel["tags"]:  # run against an installed wheel
        assert "py3-none-any" not in wheel["tags"]
    else:  # the source tree or an editable install
        assert wheel["note"] == info.NOT_FROM_WHEEL
    text = run_info(child_env())
    assert f"base64:   {report['base64_simd']} (base64-simd, chosen at run time)" in text
    assert "backend:  native (" in text and "why:" not in text
    assert f"python:   {platform.python_implementation()} {platform.python_version()}" in text


@native_only
def test_forced_native() -> None:
    report = info_json(child_env("native"))
    assert report["backend"] == "native" and report["forced"] == "native"
    assert report["reason"] is None
    assert ", forced by JOBPERSIST_BACKEND=native\n" in run_info(child_env("native"))


def test_forced_python() -> None:
    report = info_json(child_env("python"))
    assert report["backend"] == "python" and report["forced"] == "python"
    assert report["reason"].startswith("forced by JOBPERSIST_BACKEND=python")
    assert report["base64_simd"] == info.PYTHON_SIMD
    text = run_info(child_env("python"))
    assert "backend:  python\n  why:    forced by JOBPERSIST_BACKEND=python" in text
    assert "base64:   none (pure-Python fallback: binascii)" in text


def test_pure_wheel(tmp_path: Path) -> None:
    env = installed_copy(tmp_path, native=False, tags=["py3-none-any"])
    report = info_json(env, cwd=tmp_path)
    assert report["package_dir"] == str(tmp_path / "site" / "jobpersist")
    assert report["backend"] == "python" and report["forced"] is None
    assert report["native_module"] == {"status": "missing", "path": None, "error": None}
    assert report["reason"].startswith("pure-Python wheel installed (py3-none-any)")
    assert report["wheel"]["tags"] == ["py3-none-any"]
    assert report["wheel"]["dist_info"].endswith(f"jobpersist-{jobpersist.__version__}.dist-info")
    assert report["base64_simd"] == info.PYTHON_SIMD
    text = run_info(env, cwd=tmp_path)
    assert "wheel:    py3-none-any" in text and "why:    pure-Python wheel installed" in text


def test_module_missing_from_source_tree(tmp_path: Path) -> None:
    # No compiled module and no wheel of this copy: a source tree nobody built.
    env = installed_copy(tmp_path, native=False, tags=None)
    report = info_json(env, cwd=tmp_path)
    assert report["backend"] == "python"
    assert report["reason"].startswith("no compiled module jobpersist._native in ")
    assert report["wheel"] == {"tags": [], "dist_info": None, "note": info.NOT_FROM_WHEEL}


def test_native_fails_to_import(tmp_path: Path) -> None:
    env = installed_copy(tmp_path, native=False, tags=None, garbage_native=True)
    report = info_json(env, cwd=tmp_path)
    native = report["native_module"]
    assert report["backend"] == "python"
    assert native["status"] == "import-error"
    assert native["path"].startswith(str(tmp_path))
    probe = subprocess.run(
        [sys.executable, "-c", "import jobpersist._native"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0
    assert native["error"] and native["error"] in probe.stderr  # the ImportError's own text
    expected = f"jobpersist._native ({native['path']}) failed to import: {native['error']}"
    assert report["reason"] == expected


@pytest.mark.skipif(not native_available(), reason="needs the compiled module")
@native_only
def test_native_wheel_tags(tmp_path: Path) -> None:
    tags = ["cp311-abi3-manylinux_2_17_x86_64", "cp311-abi3-manylinux2014_x86_64"]
    env = installed_copy(tmp_path, native=True, tags=tags)
    report = info_json(env, cwd=tmp_path)
    assert report["backend"] == "native"
    assert report["native_module"]["path"].startswith(str(tmp_path))
    assert report["wheel"]["tags"] == tags
    assert "wheel:    " + ", ".join(tags) in run_info(env, cwd=tmp_path)
