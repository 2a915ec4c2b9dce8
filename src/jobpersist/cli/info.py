"""``jobpersist info``: the version, the backend in use and why, the wheel installed, the
Python, and the instruction set of the base64 code."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import jobpersist
from jobpersist import _codec

NOT_FROM_WHEEL = "not installed from a wheel (source tree / editable)"
PYTHON_SIMD = "none (pure-Python fallback: binascii)"
PURE_TAG = "py3-none-any"


def native_module() -> dict[str, Any]:
    """Whether the compiled module is there and imports.

    Returns:
        dict[str, Any]: ``status`` ("importable", "missing" or "import-error"), ``path`` (the
        module file, or None when missing) and ``error`` (the ImportError's text, or None).
    """
    try:
        spec = importlib.util.find_spec("jobpersist._native")
    except ImportError as exc:
        return {"status": "import-error", "path": None, "error": str(exc)}
    if spec is None:
        return {"status": "missing", "path": None, "error": None}
    try:
        importlib.import_module("jobpersist._native")
    except ImportError as exc:
        return {"status": "import-error", "path": spec.origin, "error": str(exc)}
    return {"status": "importable", "path": spec.origin, "error": None}


def _same_file(a: str | os.PathLike[str], b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def wheel_info() -> dict[str, Any]:
    """The wheel the imported package was installed from, read from its dist-info.

    An editable install also has a dist-info with a ``WHEEL`` file (the editable wheel's),
    and a source tree on ``sys.path`` may shadow an installed wheel: neither counts.

    Returns:
        dict[str, Any]: ``tags`` (the ``Tag:`` lines of ``WHEEL``; empty when the package
        was not installed from a wheel), ``dist_info`` (its directory, or None) and
        ``note`` (:data:`NOT_FROM_WHEEL`, or None).
    """
    not_from_wheel: dict[str, Any] = {"tags": [], "dist_info": None, "note": NOT_FROM_WHEEL}
    try:
        dist = metadata.distribution("jobpersist")
    except metadata.PackageNotFoundError:
        return not_from_wheel
    direct_url = dist.read_text("direct_url.json")
    if direct_url:
        try:
            editable = json.loads(direct_url).get("dir_info", {}).get("editable", False)
        except (ValueError, AttributeError):
            editable = False
        if editable:
            return not_from_wheel
    wheel = dist.read_text("WHEEL")
    if wheel is None or not _same_file(
        Path(str(dist.locate_file("jobpersist/__init__.py"))), jobpersist.__file__ or ""
    ):
        return not_from_wheel
    tags = [
        line.partition(":")[2].strip()
        for line in wheel.splitlines()
        if line.partition(":")[0].strip() == "Tag"
    ]
    record = next(
        (f for f in dist.files or () if f.name == "WHEEL" and f.parent.name.endswith(".dist-info")),
        None,
    )
    location = str(Path(str(dist.locate_file(record))).parent) if record else None
    return {"tags": tags, "dist_info": location, "note": None}


def _forced() -> str | None:
    return os.environ.get("JOBPERSIST_BACKEND", "").strip().lower() or None


def _reason(backend: str, native: dict[str, Any], tags: list[str]) -> str | None:
    if backend == "native":
        return None
    forced = _forced()
    if forced == "python":
        if native["status"] == "importable":
            return "forced by JOBPERSIST_BACKEND=python (the native module is importable)"
        return f"forced by JOBPERSIST_BACKEND=python (the native module: {native['status']})"
    if native["status"] == "missing":
        if tags and all(tag == PURE_TAG for tag in tags):
            return (
                f"pure-Python wheel installed ({PURE_TAG}): the package has no compiled "
                "module jobpersist._native"
            )
        return (
            "no compiled module jobpersist._native in "
            f"{os.path.dirname(jobpersist.__file__ or '')} (build it with `pip install .` or "
            "install a native wheel)"
        )
    if native["status"] == "import-error":
        return f"jobpersist._native ({native['path']}) failed to import: {native['error']}"
    return "switched in this process (jobpersist._codec.use)"


def _simd(backend: str) -> str:
    if backend != "native":
        return PYTHON_SIMD
    from jobpersist import _native

    return _native.base64_isa()


def collect() -> dict[str, Any]:
    """Everything ``jobpersist info`` prints.

    Returns:
        dict[str, Any]: The ``--json`` document: ``version``, ``backend``, ``reason`` (why
        the backend is not native, or None), ``forced`` (``JOBPERSIST_BACKEND``, or None),
        ``native_module``, ``package_dir``, ``wheel``, ``python`` and ``base64_simd``.
    """
    backend = _codec.BACKEND
    native = native_module()
    wheel = wheel_info()
    libc, libc_version = platform.libc_ver()
    return {
        "version": jobpersist.__version__,
        "backend": backend,
        "reason": _reason(backend, native, wheel["tags"]),
        "forced": _forced(),
        "native_module": native,
        "package_dir": os.path.dirname(jobpersist.__file__ or ""),
        "wheel": wheel,
        "python": {
            "implementation": platform.python_implementation(),
            "version": platform.python_version(),
            "platform": sysconfig.get_platform(),
            "libc": f"{libc} {libc_version}" if libc else None,
        },
        "base64_simd": _simd(backend),
    }


def format_info(info: dict[str, Any]) -> str:
    """The text ``jobpersist info`` prints for ``info`` (as :func:`collect` returns it)."""
    native = info["native_module"]
    backend = info["backend"]
    if backend == "native":
        backend += f" ({native['path']})"
        if info["forced"] == "native":
            backend += ", forced by JOBPERSIST_BACKEND=native"
    lines = [f"jobpersist {info['version']}", f"backend:  {backend}"]
    if info["reason"]:
        lines.append(f"  why:    {info['reason']}")
    wheel = info["wheel"]
    lines.append(f"wheel:    {', '.join(wheel['tags']) if wheel['tags'] else wheel['note']}")
    lines.append(f"package:  {info['package_dir']}")
    python = info["python"]
    details = ", ".join(filter(None, [python["platform"], python["libc"]]))
    lines.append(f"python:   {python['implementation']} {python['version']} ({details})")
    simd = info["base64_simd"]
    if backend.startswith("native"):
        simd += " (base64-simd, chosen at run time)"
    lines.append(f"base64:   {simd}")
    return "\n".join(lines)


NAME = "info"
HELP = "show the version, backend (and why), wheel tags, Python and SIMD in use"
DESCRIPTION = (
    "Shows the jobpersist version; the backend in use and, when it is not\n"
    "native, why (a pure-Python wheel, the compiled module failing to import, or\n"
    "JOBPERSIST_BACKEND); the tags of the installed wheel; the Python; and the\n"
    "instruction set of the base64 code (detected at run time, as base64-simd does)."
)
EPILOG = (
    "examples:\n  jobpersist info\n  JOBPERSIST_BACKEND=python jobpersist info\n"
    "  jobpersist info --json | jq .backend"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``info`` subcommand's arguments."""
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Prints the installation report."""
    info = collect()
    if args.json:
        json.dump(info, out, indent=2)
        out.write("\n")
    else:
        print(format_info(info), file=out)
    return 0
