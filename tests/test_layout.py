"""Claims the layout makes, checked: no import circle, one Python twin per Rust core file,
native exceptions built in one place, functions a reader can hold in their head."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "jobpersist"
if not (ROOT / "rust").is_dir() or not PACKAGE.is_dir():  # an installed wheel's test run
    pytest.skip("needs the source tree", allow_module_level=True)

# Rust core files without a Python twin, and why.
NO_TWIN = {
    "lib.rs": "the crate's index",
    "error.rs": "the core's error type; the Python side raises Python exceptions",
    "fault.rs": "fault injection for the Rust tests; Python tests patch os and fcntl",
    "float_repr.rs": "Python has repr(float)",
    "int_format.rs": "Python has str(int)",
    "json_escape.rs": "Python has json's encode_basestring_ascii",
    "nesting.rs": "the Python walk (_format/conversion.py) applies the same limits",
    "base64_decode.rs": "Python has binascii.a2b_base64",
    "simd_isa.rs": "which SIMD code Rust's base64 uses",
    "test_support.rs": "Rust test helpers",
    "write_pipe.rs": "the native writer's second thread; the Python writer has none",
}
TWINS = PACKAGE / "_codec" / "python"
LONGEST = 80
COMPILED = {"jobpersist._native"}  # imports nothing of the package


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The jobpersist modules ``name`` imports, at the top or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            named = {f"{base}.{a.name}" for a in node.names}
            subs = named & (modules.keys() | COMPILED)
            found |= subs if len(subs) == len(named) else subs | {base}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return (found & modules.keys()) - {name}


def test_no_module_imports_itself_through_others() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}

    def reaches(start: str, target: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            current = todo.pop()
            if current == target:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(graph[current])
        return False

    circles = sorted(name for name in graph if reaches(name, name))
    assert circles == []


def test_every_rust_core_file_has_a_python_twin_or_a_reason() -> None:
    core = {p.name for p in (ROOT / "rust" / "core" / "src").glob("*.rs")}
    twins = {p.name for p in TWINS.glob("*.py")}
    missing = sorted(
        name for name in core - NO_TWIN.keys() if name.removesuffix(".rs") + ".py" not in twins
    )
    assert missing == []
    assert NO_TWIN.keys() <= core, "a file named in NO_TWIN is gone: drop it from the list"


def test_native_exceptions_are_built_in_errors_rs() -> None:
    glue = ROOT / "rust" / "src"
    building = sorted(
        p.name for p in glue.glob("*.rs") if p.name != "errors.rs" and "new_err(" in p.read_text()
    )
    assert building == []


def test_functions_are_short() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > LONGEST:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length})")
    assert long == []


def test_no_interpreter_wide_state_is_changed() -> None:
    forbidden = re.compile(
        r"\bgc\.(disable|enable|set_threshold)\(|sys\.setrecursionlimit\(|signal\.signal\("
        r"|warnings\.(simplefilter|filterwarnings)\(|os\.umask\("
    )
    found = [
        f"{path.relative_to(SRC)}:{n}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert found == []
