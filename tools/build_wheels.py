"""Builds jobpersist's release set into one folder (``make wheels``):

* the native wheel: ``cp311-abi3`` (one wheel for CPython 3.11, 3.12, 3.13...) tagged
  ``manylinux_2_17_x86_64``, linked by ``zig`` (the ``ziglang`` package) so that it runs on
  glibc 2.17+ without a manylinux container; ``--per-version`` builds one wheel per CPython
  found instead (the abi3 decision and its figures are in the README);
* the pure-Python wheel ``py3-none-any``: the same package without the compiled module, built
  by setuptools from a staged copy of ``src/jobpersist`` (no Rust involved), which pip picks
  where no native wheel fits (Python 3.10, aarch64, musl, ...);
* the sdist, which builds the native module with maturin.

Every native wheel's tag is checked with ``auditwheel show``; the pure wheel is checked to
hold no compiled file. ``SOURCE_DATE_EPOCH`` defaults to the last commit's time, so two builds
of one commit give the same archives' timestamps.

    python tools/build_wheels.py [--out dist] [--per-version] [--no-sdist]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "jobpersist"
MANYLINUX = "manylinux_2_17"
# Cargo output of release builds, apart from the developer's `target/` so that switching
# between the editable build and the zig-linked wheels does not rebuild both every time.
TARGET_DIR = ROOT / "target" / "wheels"
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")


def run(cmd: list[str], **kwargs: object) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def find_interpreters() -> dict[str, str]:
    """CPython 3.10-3.13 executables on this machine, by "3.x" (pyenv's, else on PATH)."""
    found: dict[str, str] = {}
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in (10, 11, 12, 13):
        version = f"3.{minor}"
        candidates = sorted(
            pyenv_root.glob(f"{version}.*/bin/python{version}"),
            key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.parent.name)],
        )
        # The newest patch release under pyenv, else whatever PATH offers.
        path = str(candidates[-1]) if candidates else shutil.which(f"python{version}")
        if path:
            found[version] = path
    return found


def build_native(out: Path, interpreters: list[str], abi3: bool) -> list[Path]:
    before = set(out.glob("*.whl"))
    cmd = [
        sys.executable, "-m", "maturin", "build", "--release", "--zig",
        "--compatibility", MANYLINUX, "--out", str(out),
    ]  # fmt: skip
    if abi3:
        # Any 3.11+ interpreter serves: the limited API does not depend on which.
        cmd += ["--features", "abi3", "--interpreter", interpreters[0]]
    else:
        cmd += ["--interpreter", *interpreters]
    # maturin finds zig through `python -m ziglang` of the first python on PATH: ours.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    run(cmd, cwd=ROOT, env={**os.environ, "CARGO_TARGET_DIR": str(TARGET_DIR), "PATH": path})
    wheels = sorted(set(out.glob("*.whl")) - before)
    for wheel in wheels:
        check_manylinux(wheel)
    return wheels


def check_manylinux(wheel: Path) -> None:
    """``auditwheel show`` must find the wheel consistent with the tag in its name."""
    result = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    report = " ".join(result.stdout.split())
    if f'consistent with the following platform tag: "{MANYLINUX}_x86_64"' not in report:
        raise SystemExit(f"auditwheel disagrees with the tag of {wheel.name}:\n{result.stdout}")
    if f"{MANYLINUX}_x86_64" not in wheel.name:
        raise SystemExit(f"{wheel.name} is not tagged {MANYLINUX}_x86_64")
    print(f"auditwheel: {wheel.name} is {MANYLINUX}_x86_64")


def cargo_version() -> str:
    """The project's version, from its one home: Cargo.toml's ``[workspace.package]``."""
    text = (ROOT / "Cargo.toml").read_text()
    match = re.search(
        r'^\[workspace\.package\]\n(?:[^\[\n].*\n|\n)*?version = "([^"]+)"', text, re.M
    )
    if match is None:
        raise SystemExit("Cargo.toml: no version in [workspace.package]")
    return match.group(1)


def pure_pyproject() -> str:
    """Our pyproject.toml with setuptools in maturin's place, packaging ``src/jobpersist``.

    The [project] table is kept as it is, so both wheels carry the same metadata, except for
    the version: maturin reads it from Cargo.toml (``dynamic``), setuptools is given it here.
    """
    text = (ROOT / "pyproject.toml").read_text()
    text, count = re.subn(
        r'^dynamic = \["version"\]\n', f'version = "{cargo_version()}"\n', text, count=1, flags=re.M
    )
    if count != 1:
        raise SystemExit('pyproject.toml: [project] has no dynamic = ["version"] to fill in')
    text, count = re.subn(
        r"\[build-system\]\n(?:.+\n)+?\n",
        "[build-system]\n"
        'requires = ["setuptools>=68"]\n'
        'build-backend = "setuptools.build_meta"\n\n',
        text,
        count=1,
    )
    if count != 1:
        raise SystemExit("pyproject.toml: no [build-system] table to replace")
    text = re.sub(r"\[tool\.maturin\]\n(?:.+\n)+", "", text)
    return text + (
        "\n[tool.setuptools.packages.find]\n"
        'where = ["src"]\n'
        "\n[tool.setuptools.package-data]\n"
        'jobpersist = ["py.typed"]\n'
    )


def build_pure(out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="jobpersist-pure-") as staging_name:
        staging = Path(staging_name)
        (staging / "pyproject.toml").write_text(pure_pyproject())
        shutil.copy(ROOT / "README.md", staging / "README.md")
        shutil.copy(ROOT / "LICENSE", staging / "LICENSE")  # setuptools ships it
        # Only the Python sources: no compiled module an editable build may have left, and
        # no stub of a module the wheel does not have.
        shutil.copytree(
            PACKAGE,
            staging / "src" / "jobpersist",
            ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", "_native.pyi", *(f"*{s}" for s in COMPILED_SUFFIXES)
            ),
        )
        before = set(out.glob("*.whl"))
        run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), "."],
            cwd=staging,
        )
    (wheel,) = sorted(set(out.glob("*.whl")) - before)
    if not wheel.name.endswith("-py3-none-any.whl"):
        raise SystemExit(f"the pure wheel is tagged wrongly: {wheel.name}")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    compiled = [n for n in names if n.endswith(COMPILED_SUFFIXES) or "_native" in n]
    if compiled:
        raise SystemExit(f"{wheel.name} holds compiled files: {compiled}")
    # Every Python module of the package, subpackages included, and the typing marker.
    expected = {
        path.relative_to(PACKAGE.parent).as_posix()
        for path in PACKAGE.rglob("*")
        if path.suffix == ".py" or path.name == "py.typed"
    }
    missing = sorted(expected - set(names))
    if missing:
        raise SystemExit(f"{wheel.name} lacks {missing}")
    print(f"pure wheel: {wheel.name} ({len(names)} files, none compiled)")
    return wheel


def build_sdist(out: Path) -> Path:
    before = set(out.glob("*.tar.gz"))
    run([sys.executable, "-m", "maturin", "sdist", "--out", str(out)], cwd=ROOT)
    (sdist,) = sorted(set(out.glob("*.tar.gz")) - before)
    return sdist


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument(
        "--per-version", action="store_true", help="one native wheel per CPython, not abi3"
    )
    parser.add_argument("--no-sdist", action="store_true")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    os.environ.setdefault(
        "SOURCE_DATE_EPOCH",
        subprocess.run(
            ["git", "log", "-1", "--format=%ct"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        or "315532800",
    )

    interpreters = find_interpreters()
    native_versions = [v for v in interpreters if int(v.split(".")[1]) >= 11]
    if not native_versions:
        raise SystemExit("no CPython 3.11+ found to build the native wheel with")
    built = build_native(out, [interpreters[v] for v in native_versions], abi3=not args.per_version)
    built.append(build_pure(out))
    if not args.no_sdist:
        built.append(build_sdist(out))
    print(f"\nrelease set in {out}:")
    for path in built:
        print(f"  {path.name}  ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
