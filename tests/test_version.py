"""The version lives in one place, Cargo.toml's [workspace.package]; everything else reads it."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from support.backends import require_backend

import jobpersist

ROOT = Path(__file__).resolve().parent.parent


def test_version_is_the_installed_metadata() -> None:
    assert jobpersist.__version__ == importlib.metadata.version("jobpersist")
    assert "__version__" in dir(jobpersist)


def test_version_comes_from_cargo_toml() -> None:
    if not (ROOT / "Cargo.toml").is_file():
        pytest.skip("needs a source checkout (an installed wheel has no Cargo.toml)")
    tomllib = pytest.importorskip("tomllib", reason="needs tomllib (Python 3.11+)")

    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert jobpersist.__version__ == cargo["workspace"]["package"]["version"]
    for manifest in (ROOT / "Cargo.toml", ROOT / "rust" / "core" / "Cargo.toml"):
        package = tomllib.loads(manifest.read_text())["package"]
        assert package["version"] == {"workspace": True}, f"{manifest} sets its own version"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in pyproject and "version" in pyproject["dynamic"]


def test_native_module_was_built_as_this_version() -> None:
    require_backend("native")
    from jobpersist import _native

    assert _native.__version__ == jobpersist.__version__
