"""pytest plugin for an interpreter the reference cannot be installed on (amazon-braket-sdk
1.111+ needs Python 3.11+): tests that need the reference are skipped, and say why.

Loaded only by ``tools/check_wheels.py`` (``-p pytest_without_reference``) for such
interpreters. Everywhere else the suite imports the reference unconditionally, so a missing
oracle fails loudly instead of skipping the differential tests.
"""

from __future__ import annotations

import ast
from collections.abc import Generator
from pathlib import Path

import pytest

REASON = "needs the reference (amazon-braket-sdk), which this Python cannot install"


def _needs_reference(node: BaseException | None) -> bool:
    # Follows the chain: jobpersist.patch_braket() raises its own ImportError from braket's.
    while node is not None:
        if isinstance(node, ModuleNotFoundError) and (node.name or "").split(".")[0] == "braket":
            return True
        node = node.__cause__ or node.__context__
    return False


def _module_imports(path: Path) -> set[str]:
    """Top-level module names imported at module level (not inside functions)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _imports_reference(path: Path, seen: frozenset[Path] = frozenset()) -> bool:
    """Whether importing ``path`` imports braket, directly or through a sibling module."""
    imports = _module_imports(path)
    if "braket" in imports:
        return True
    for name in imports:
        sibling = path.with_name(f"{name}.py")
        if sibling.is_file() and sibling not in seen and _imports_reference(sibling, seen | {path}):
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        if _imports_reference(collection_path):
            config.stash.setdefault(_IGNORED, []).append(collection_path.name)
            return True
    return None


_IGNORED = pytest.StashKey[list[str]]()


def _skip_if_reference_missing() -> Generator[None, None, None]:
    """A hook wrapper's body: a test (or its fixture) that imports braket is skipped."""
    try:
        return (yield)
    except ImportError as exc:
        if _needs_reference(exc):
            pytest.skip(REASON)
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _skip_if_reference_missing())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    return (yield from _skip_if_reference_missing())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ignored = terminalreporter.config.stash.get(_IGNORED, [])
    if ignored:
        terminalreporter.write_line(
            f"not collected ({REASON}): {', '.join(sorted(ignored))}", yellow=True
        )
