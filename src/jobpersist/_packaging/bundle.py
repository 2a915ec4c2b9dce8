"""A Braket job's source folder that installs jobpersist offline (``jobpersist bundle DIR``).

Packaging work: wheel tags, choosing wheels, pip downloads. The library never imports it;
the command imports it only when it runs.

A Braket job's container runs ``python -m pip install -r requirements.txt`` in the extracted
source folder. ``bundle`` puts into ``DIR/wheels/`` jobpersist's native wheel for the job
image (CPython 3.12, manylinux x86_64 by default), its pure-Python wheel (the fallback on any
other platform) and orjson's wheel, and writes into ``DIR/requirements.txt`` a block of lines
that installs them from there::

    # >>> jobpersist bundle: rewritten by `jobpersist bundle`
    --find-links wheels
    jobpersist==0.1.0
    orjson==3.13.0
    # <<< jobpersist bundle

pip resolves a relative ``--find-links`` in a requirements file against the requirements
file's directory when that path exists there (else against the current directory), so the
block works whichever directory pip runs in. The user's own lines are kept; re-running
replaces the block only. A user line that already requires jobpersist or orjson otherwise
than the block would is refused, since pip in the job would fail on the conflict.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TextIO

from jobpersist.cli._common import CliError

BEGIN = "# >>> jobpersist bundle: rewritten by `jobpersist bundle`"
END = "# <<< jobpersist bundle"
WHEELS = "wheels"
REQUIREMENTS = "requirements.txt"

_WHEEL_RE = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-(?P<build>\d[^-]*))?"
    r"-(?P<python>[^-]+)-(?P<abi>[^-]+)-(?P<platform>[^-]+)\.whl$"
)
_MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
# PEP 600's names for the legacy manylinux tags.
_LEGACY = {"manylinux2014": (2, 17), "manylinux2010": (2, 12), "manylinux1": (2, 5)}
_REQUIREMENT_NAME_RE = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


def normalize(name: str) -> str:
    """A project name as wheel file names and pip compare it (PEP 503, with ``_``)."""
    return re.sub(r"[-_.]+", "_", name).lower()


@dataclasses.dataclass(frozen=True)
class Wheel:
    """A wheel file, described by its name (PEP 427; tag sets may be compressed)."""

    path: Path
    name: str  # normalized
    version: str
    pythons: tuple[str, ...]
    abis: tuple[str, ...]
    platforms: tuple[str, ...]

    @classmethod
    def parse(cls, path: Path) -> Wheel | None:
        """The wheel named by ``path``, or None when the name is not a wheel's."""
        match = _WHEEL_RE.match(path.name)
        if match is None:
            return None
        return cls(
            path,
            normalize(match["name"]),
            match["version"],
            tuple(match["python"].split(".")),
            tuple(match["abi"].split(".")),
            tuple(match["platform"].split(".")),
        )


def parse_manylinux(tag: str) -> tuple[tuple[int, int], str] | None:
    """``(glibc, arch)`` of a manylinux platform tag (``manylinux_2_17_x86_64``,
    ``manylinux2014_x86_64``), or None for any other tag."""
    match = _MANYLINUX_RE.match(tag)
    if match is not None:
        return (int(match[1]), int(match[2])), match[3]
    prefix, _, arch = tag.partition("_")
    if prefix in _LEGACY and arch:
        return _LEGACY[prefix], arch
    return None


@dataclasses.dataclass(frozen=True)
class Target:
    """The interpreter and platform the job runs: CPython ``3.minor`` on a manylinux
    ``arch`` with glibc ``glibc``."""

    minor: int
    glibc: tuple[int, int]
    arch: str

    @classmethod
    def from_args(cls, python_version: str, platform: str) -> Target:
        """The target of ``--python-version`` and ``--platform``.

        Raises:
            CliError: If either is not of the supported form.
        """
        match = re.fullmatch(r"3\.(\d+)", python_version.strip())
        if match is None:
            raise CliError(f"--python-version {python_version}: use 3.MINOR, e.g. 3.12")
        parsed = parse_manylinux(platform.strip())
        if parsed is None:
            raise CliError(
                f"--platform {platform}: use a manylinux tag, e.g. manylinux_2_35_x86_64"
            )
        return cls(int(match[1]), parsed[0], parsed[1])

    @property
    def python_version(self) -> str:
        return f"3.{self.minor}"

    @property
    def description(self) -> str:
        return (
            f"cp3{self.minor} on manylinux_{self.glibc[0]}_{self.glibc[1]}_{self.arch} "
            "(or an older manylinux)"
        )

    def platform_tags(self) -> list[str]:
        """Every manylinux tag the job's pip accepts, newest first (pip's own order)."""
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 4, -1)]
        for legacy, (lmajor, lminor) in _LEGACY.items():
            if (lmajor, lminor) <= self.glibc:
                tags.append(f"{legacy}_{self.arch}")
        return tags

    def _platform_ok(self, tag: str) -> bool:
        parsed = parse_manylinux(tag)
        return parsed is not None and parsed[1] == self.arch and parsed[0] <= self.glibc

    def native_rank(self, wheel: Wheel) -> tuple[int, int, tuple[int, int]] | None:
        """How well a compiled wheel fits, as pip prefers (higher is better): the exact
        ABI (``cp312-cp312``) before the stable ABI (``cp3X-abi3``, newest X first), then
        the newest manylinux. None when it cannot be installed on the target."""
        platforms = [t for t in wheel.platforms if self._platform_ok(t)]
        if not platforms:
            return None
        best_glibc = max(p for p in (parse_manylinux(t) for t in platforms) if p is not None)[0]
        exact = f"cp3{self.minor}"
        if exact in wheel.pythons and exact in wheel.abis:
            return (1, self.minor, best_glibc)
        if "abi3" in wheel.abis:
            floors = [
                int(p[3:])
                for p in wheel.pythons
                if re.fullmatch(r"cp3\d+", p) and int(p[3:]) <= self.minor
            ]
            if floors:
                return (0, max(floors), best_glibc)
        return None

    def is_pure(self, wheel: Wheel) -> bool:
        """True for a pure-Python wheel the target's Python 3 installs (``py3-none-any``)."""
        pythons_ok = any(
            p == "py3" or (re.fullmatch(r"py3\d+", p) and int(p[3:]) <= self.minor)
            for p in wheel.pythons
        )
        return pythons_ok and "none" in wheel.abis and "any" in wheel.platforms


def find_wheels(dirs: Sequence[str], name: str, version: str) -> list[Wheel]:
    """The wheels of ``name`` ``version`` in the find-links directories, in their order.

    Raises:
        CliError: If a directory does not exist.
    """
    found: list[Wheel] = []
    for directory in dirs:
        if not os.path.isdir(directory):
            raise CliError(f"--find-links {directory}: not a directory")
        for entry in sorted(os.listdir(directory)):
            wheel = Wheel.parse(Path(directory, entry))
            if wheel is not None and wheel.name == name and wheel.version == version:
                found.append(wheel)
    return found


def _names(wheels: Iterable[Wheel]) -> str:
    return ", ".join(w.path.name for w in wheels) or "none"


def pick_native(wheels: Sequence[Wheel], target: Target, what: str) -> Wheel:
    """The compiled wheel pip on the target would prefer.

    Raises:
        CliError: If none installs there (the message lists what was found).
    """
    ranked = [(rank, w) for w in wheels if (rank := target.native_rank(w)) is not None]
    if not ranked:
        raise CliError(
            f"no {what} wheel for {target.description} in the --find-links directories "
            f"(found: {_names(wheels)})"
        )
    return max(ranked, key=lambda item: item[0])[1]


def pick_pure(wheels: Sequence[Wheel], target: Target, what: str) -> Wheel:
    """The pure-Python wheel.

    Raises:
        CliError: If there is none.
    """
    for wheel in wheels:
        if target.is_pure(wheel):
            return wheel
    raise CliError(
        f"no {what} pure-Python wheel (py3-none-any) in the --find-links directories "
        f"(found: {_names(wheels)})"
    )


def download(project: str, version: str, target: Target, directory: str) -> Wheel:
    """Downloads the project's compiled wheel for the target with pip (from PyPI or the
    index pip is configured with).

    Raises:
        CliError: If pip fails or brings no wheel that fits.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"{project}=={version}",
        "--only-binary=:all:",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
        "--implementation",
        "cp",
        "--python-version",
        target.python_version,
        "--abi",
        f"cp3{target.minor}",
        "--abi",
        "abi3",
        "--dest",
        directory,
    ]
    for tag in target.platform_tags():
        command += ["--platform", tag]
    what = f"{project}=={version} for {target.description}"
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CliError(f"cannot download {what}: {exc}") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"pip exited with status {proc.returncode}"
        raise CliError(f"cannot download {what} with pip: {reason}")
    downloaded = [
        w
        for w in (Wheel.parse(Path(directory, e)) for e in sorted(os.listdir(directory)))
        if w is not None and w.name == normalize(project)
    ]
    return pick_native(downloaded, target, f"{project} {version} (downloaded)")


def merge_requirements(existing: str, block: list[str], pins: dict[str, str], path: str) -> str:
    """``existing`` with its ``jobpersist bundle`` block replaced by ``block`` (appended when
    there is none); the user's lines are kept as they are.

    Args:
        existing (str): The requirements file's text ("" when there is none).
        block (list[str]): The lines between the markers.
        pins (dict[str, str]): Normalized project name to the pin the block writes.
        path (str): The file, for error messages.

    Returns:
        str: The new text.

    Raises:
        CliError: If a user line requires a pinned project otherwise, or a marker is
            unpaired.
    """
    kept: list[str] = []
    inside = False
    for number, line in enumerate(existing.splitlines(), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise CliError(f"{path}:{number}: a second {BEGIN!r} before {END!r}")
            inside = True
            continue
        if stripped == END:
            if not inside:
                raise CliError(f"{path}:{number}: {END!r} without {BEGIN!r}")
            inside = False
            continue
        if inside:
            continue
        match = _REQUIREMENT_NAME_RE.match(stripped)
        if match and normalize(match[1]) in pins and stripped != pins[normalize(match[1])]:
            raise CliError(
                f"{path}:{number}: {stripped!r} conflicts with the bundle's "
                f"{pins[normalize(match[1])]!r}; remove that line (the bundle pins it)"
            )
        kept.append(line)
    if inside:
        raise CliError(f"{path}: {BEGIN!r} without {END!r}")
    while kept and not kept[-1].strip():
        kept.pop()
    lines = [*kept, *([""] if kept else []), BEGIN, *block, END]
    return "\n".join(lines) + "\n"


def _write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".requirements-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if os.path.exists(path):
            shutil.copymode(path, tmp)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _check_zip(wheel: Wheel) -> None:
    if not zipfile.is_zipfile(wheel.path):
        raise CliError(f"{wheel.path}: not a wheel (not a zip file)")


def bundle(
    directory: str,
    find_links: Sequence[str],
    target: Target,
    orjson_version: str,
    out: TextIO,
) -> None:
    """Writes ``directory/wheels/`` and the ``jobpersist bundle`` block of
    ``directory/requirements.txt`` (see the module's docstring).

    Args:
        directory (str): The job's source folder; created when missing.
        find_links (Sequence[str]): Directories holding jobpersist's wheels (and, if there,
            orjson's).
        target (Target): The job's Python and platform.
        orjson_version (str): The orjson version to pin and bundle.
        out (TextIO): Where the summary goes.

    Raises:
        CliError: If a needed wheel is not found, the download fails or the requirements
            file conflicts; nothing is written then.
    """
    from jobpersist import __version__

    ours = find_wheels(find_links, "jobpersist", __version__)
    native = pick_native(ours, target, f"jobpersist {__version__}")
    pure = pick_pure(ours, target, f"jobpersist {__version__}")
    requirements = os.path.join(directory, REQUIREMENTS)
    pins = {"jobpersist": f"jobpersist=={__version__}", "orjson": f"orjson=={orjson_version}"}
    existing = ""
    if os.path.isfile(requirements):
        with open(requirements, encoding="utf-8") as f:
            existing = f.read()
    text = merge_requirements(
        existing, [f"--find-links {WHEELS}", *pins.values()], pins, requirements
    )
    with tempfile.TemporaryDirectory(prefix="jobpersist-bundle-") as scratch:
        local = [
            w
            for w in find_wheels(find_links, "orjson", orjson_version)
            if target.native_rank(w) is not None
        ]
        if local:
            orjson = pick_native(local, target, f"orjson {orjson_version}")
            orjson_source = f"from {orjson.path.parent}"
        else:
            orjson = download("orjson", orjson_version, target, scratch)
            orjson_source = "downloaded with pip"
        chosen = [
            (native, f"native, from {native.path.parent}"),
            (pure, f"pure-Python fallback, from {pure.path.parent}"),
            (orjson, orjson_source),
        ]
        for wheel, _ in chosen:
            _check_zip(wheel)
        wheels_dir = os.path.join(directory, WHEELS)
        os.makedirs(wheels_dir, exist_ok=True)
        keep = {w.path.name for w, _ in chosen}
        # Wheels an earlier bundle left (another version) would only bloat the job's upload.
        for entry in os.listdir(wheels_dir):
            old = Wheel.parse(Path(wheels_dir, entry))
            if old is not None and old.name in pins and entry not in keep:
                os.unlink(old.path)
        for wheel, _ in chosen:
            destination = os.path.join(wheels_dir, wheel.path.name)
            if not (os.path.exists(destination) and os.path.samefile(wheel.path, destination)):
                shutil.copyfile(wheel.path, destination)
    _write_atomically(requirements, text)
    print(f"{requirements}: {', '.join(pins.values())} from {WHEELS}/", file=out)
    for wheel, source in chosen:
        print(f"  {WHEELS}/{wheel.path.name}  ({source})", file=out)
    print(
        f"the job installs them with `pip install -r {REQUIREMENTS}` in its source folder "
        f"({target.description})",
        file=out,
    )


def installed_orjson() -> str:
    """The orjson version installed here (the default to bundle)."""
    try:
        return metadata.version("orjson")
    except metadata.PackageNotFoundError:
        raise CliError("orjson is not installed here: pass --orjson-version") from None
