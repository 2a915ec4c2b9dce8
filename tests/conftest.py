"""Shared fixtures of the jobpersist test suite.

* ``backend``: runs a test once per codec ("native", "python"). The native leg FAILS when the
  compiled ``jobpersist._native`` cannot be imported. An explicit pure-Python run
  (``JOBPERSIST_BACKEND=python``) skips the native leg.
* ``job_env``: the job's environment variables pointing at fresh temp directories (and the
  short names the reference ignores, ``CHECKPOINT_DIR`` and ``JOB_NAME``, at decoys).
* ``twin``: runs the same operation through jobpersist and through the reference
  (``braket.jobs.data_persistence``), each in its own directories, and compares the outcome
  and the bytes of every file written.
* ``JOBPERSIST_FSYNC=0`` for every test (fsync itself is tested by overriding it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import jobpersist
from jobpersist import _codec

# --------------------------------------------------------------------------------------------
# Hypothesis profiles: modest example counts, no deadline, derandomized (deterministic).
# --------------------------------------------------------------------------------------------
_COMMON = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("default", max_examples=80, **_COMMON)
settings.register_profile("ci", max_examples=120, print_blob=True, **_COMMON)
settings.register_profile("quick", max_examples=20, **_COMMON)
# For bug hunting: HYPOTHESIS_PROFILE=thorough (randomized, many examples).
settings.register_profile("thorough", **{**_COMMON, "derandomize": False}, max_examples=1500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

BACKENDS = ("native", "python")
# The variables jobpersist reads, as the reference does.
ENV_KEYS = (
    "AMZN_BRAKET_CHECKPOINT_DIR",
    "AMZN_BRAKET_JOB_NAME",
    "AMZN_BRAKET_JOB_RESULTS_DIR",
)
# Set in every job environment below to prove they are ignored: the reference reads only the
# AMZN_BRAKET_* names, and CI servers set JOB_NAME (Jenkins does, for every build).
DECOY_JOB_NAME = "ci-build-17"
JOB_NAME = "test-job"


def python_only_run() -> bool:
    """True when the run explicitly asked for the pure-Python backend only."""
    return os.environ.get("JOBPERSIST_BACKEND", "").strip().lower() == "python"


def native_available() -> bool:
    try:
        importlib.import_module("jobpersist._native")
    except ImportError:
        return False
    return True


def require_backend(name: str) -> None:
    """Skips the native leg on an explicit pure-Python run (JOBPERSIST_BACKEND=python);
    otherwise fails it when the compiled module cannot be imported."""
    if name != "native":
        return
    if python_only_run():
        pytest.skip("JOBPERSIST_BACKEND=python: the native leg is skipped")
    if not native_available():
        pytest.fail(
            "the compiled module jobpersist._native cannot be imported; set "
            "JOBPERSIST_BACKEND=python to run the pure-Python backend only",
            pytrace=False,
        )


def pennylane_available() -> bool:
    try:
        importlib.import_module("pennylane")
    except ImportError:
        return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pennylane: needs PennyLane (real-script cases with pennylane.numpy tensors); "
        "skipped only when pennylane cannot be imported",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if pennylane_available():
        return
    skip = pytest.mark.skip(
        reason="pennylane is not installed (pip install pennylane): the real-script cases "
        "with PennyLane tensors need it"
    )
    for item in items:
        if item.get_closest_marker("pennylane") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Speed: skip fsyncs everywhere (renames stay atomic). Tests of fsync override it."""
    monkeypatch.setenv("JOBPERSIST_FSYNC", "0")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """Switches jobpersist to one codec for the test; restores the previous one after."""
    name = request.param
    require_backend(name)
    previous = (_codec.BACKEND, _codec.CODEC)
    _codec.use(name)
    try:
        yield name
    finally:
        _codec.BACKEND, _codec.CODEC = previous


def child_env(backend: str | None = None, **extra: str) -> dict[str, str]:
    """An environment for a subprocess that imports the jobpersist this process imported."""
    env = dict(os.environ)
    package_root = str(Path(jobpersist.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env.pop("JOBPERSIST_BACKEND", None)
    if backend is not None:
        env["JOBPERSIST_BACKEND"] = backend
    env.setdefault("JOBPERSIST_FSYNC", "0")
    env.update(extra)
    return env


_PEAK_HARNESS = """
import json, os

def _peak():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

{setup}
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak to the current resident size
with open("/proc/self/statm") as f:
    _base = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
{action}
print(json.dumps({{"extra": _peak() - _base}}))
"""


def peak_extra_memory(backend: str, directory: Path, setup: str, action: str) -> int:
    """How far the peak resident memory of a fresh interpreter on ``backend`` (checkpoints in
    ``directory``) grows during ``action`` (Python source), run after ``setup``. Linux only
    (``/proc/self/clear_refs``): skipped elsewhere, as the native leg of a pure-Python run."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("Linux /proc only")
    require_backend(backend)
    env = child_env(backend, AMZN_BRAKET_CHECKPOINT_DIR=str(directory), AMZN_BRAKET_JOB_NAME="peak")
    script = _PEAK_HARNESS.format(
        setup=textwrap.dedent(setup).strip(), action=textwrap.dedent(action).strip()
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    if env.get("JOBPERSIST_BACKEND") == "native" and "_native" in out.stderr:
        pytest.fail(out.stderr)
    assert out.returncode == 0, out.stderr
    extra: int = json.loads(out.stdout.strip().splitlines()[-1])["extra"]
    return extra


# --------------------------------------------------------------------------------------------
# The job environment
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class JobEnv:
    checkpoint_dir: Path
    results_dir: Path
    job_name: str

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint_dir / f"{self.job_name}.json"

    def checkpoint_file(self, suffix: str = "") -> Path:
        name = f"{self.job_name}_{suffix}.json" if suffix else f"{self.job_name}.json"
        return self.checkpoint_dir / name

    @property
    def results_path(self) -> Path:
        return self.results_dir / "results.json"


@pytest.fixture
def job_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobEnv:
    checkpoint_dir = tmp_path / "checkpoints"
    results_dir = tmp_path / "results"
    checkpoint_dir.mkdir()
    results_dir.mkdir()
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path / "not-the-checkpoint-dir"))
    monkeypatch.setenv("JOB_NAME", DECOY_JOB_NAME)
    monkeypatch.setenv("AMZN_BRAKET_CHECKPOINT_DIR", str(checkpoint_dir))
    monkeypatch.setenv("AMZN_BRAKET_JOB_NAME", JOB_NAME)
    monkeypatch.setenv("AMZN_BRAKET_JOB_RESULTS_DIR", str(results_dir))
    return JobEnv(checkpoint_dir, results_dir, JOB_NAME)


@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """Sets (or with None, removes) environment variables, restoring them after."""
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --------------------------------------------------------------------------------------------
# Comparing values: NaN-aware, -0.0-aware, type-aware, identity-blind.
# --------------------------------------------------------------------------------------------
def canon(value: Any, _active: frozenset[int] = frozenset()) -> Any:
    """A hashable, comparable form of ``value``; equal forms mean equal loads.

    NaN-aware (NaN equals NaN), -0.0-aware, type-aware, blind to object identity, and safe
    on cycles.
    """
    cls = type(value)
    if cls is float:
        return ("float", value.hex() if not math.isnan(value) else "nan")
    if cls is int:
        return ("int", hex(value))  # repr() refuses ints of more than 4300 digits
    if isinstance(value, (dict, list, tuple, deque, set, frozenset)):
        if id(value) in _active:
            return ("<cycle>",)
        active = _active | {id(value)}
        if isinstance(value, dict):
            items = tuple((canon(k, active), canon(v, active)) for k, v in value.items())
            return (cls.__qualname__, items)
        if isinstance(value, (set, frozenset)):
            return (cls.__qualname__, tuple(sorted(repr(canon(v, active)) for v in value)))
        return (cls.__qualname__, tuple(canon(v, active) for v in value))
    if all(hasattr(value, a) for a in ("dtype", "shape", "tobytes")):
        # numpy arrays and scalars, and their subclasses (PennyLane's tensor, whose
        # requires_grad must survive a round trip too).
        return (
            "array",
            cls.__module__,
            cls.__qualname__,
            str(value.dtype),
            value.shape,
            value.tobytes(),
            getattr(value, "requires_grad", None),
        )
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            cls.__qualname__,
            tuple(
                (f.name, canon(getattr(value, f.name), _active)) for f in dataclasses.fields(value)
            ),
        )
    return (cls.__module__, cls.__qualname__, repr(value))


def pickle_stable(value: Any) -> bool:
    """Whether pickling the unpickled pickle of ``value`` gives the same bytes.

    The reference re-pickles old results on a merge, jobpersist copies them: both files are
    byte-identical only for values whose pickles survive a round trip.
    """
    try:
        first = pickle.dumps(value, protocol=4)
        return pickle.dumps(pickle.loads(first), protocol=4) == first
    except Exception:
        return True


# --------------------------------------------------------------------------------------------
# Differential runs against the reference
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Api:
    """One implementation: the module whose functions run, and its format enum."""

    name: str
    mod: ModuleType
    Format: Any

    def __getattr__(self, item: str) -> Any:
        return getattr(self.mod, item)


def ours_api() -> Api:
    return Api("ours", jobpersist, jobpersist.PersistedJobDataFormat)


def reference_api() -> Api:
    from braket.jobs import data_persistence
    from braket.jobs_data import PersistedJobDataFormat

    return Api("reference", data_persistence, PersistedJobDataFormat)


@dataclasses.dataclass
class Outcome:
    ok: bool
    value: Any = None
    error: BaseException | None = None


def _call(fn: Callable[[Api], Any], api: Api) -> Outcome:
    try:
        return Outcome(True, value=fn(api))
    except Exception as exc:
        return Outcome(False, error=exc)


def snapshot(*directories: Path) -> dict[str, bytes]:
    """Every file under the directories, by relative path (prefixed by the directory role)."""
    files: dict[str, bytes] = {}
    for directory in directories:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                files[f"{directory.name}/{path.relative_to(directory)}"] = path.read_bytes()
    return files


def assert_same_files(ours: dict[str, bytes], reference: dict[str, bytes]) -> None:
    """Equal file sets with equal bytes; on a difference, shows where it starts."""
    assert sorted(ours) == sorted(reference), "different files written"
    for name in ours:
        a, b = ours[name], reference[name]
        if a == b:
            continue
        at = next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        lo = max(0, at - 60)
        raise AssertionError(
            f"{name} differs from the reference's at byte {at} (sizes {len(a)}, {len(b)}):\n"
            f"  jobpersist: {a[lo : at + 60]!r}\n  reference:  {b[lo : at + 60]!r}"
        )


# The reference's exceptions and what jobpersist raises in their place, as documented (README
# "Differences", the API's docstrings). A subclass maps as its nearest listed base (pydantic's
# ValidationError, json's JSONDecodeError and binascii.Error are ValueErrors; IsADirectoryError
# is an OSError). Any other exception is not an outcome the suite expects of the reference: the
# step itself is broken, and the comparison fails instead of passing on a shared error.
DOCUMENTED_ERRORS: dict[type[BaseException], type[BaseException]] = {
    RecursionError: ValueError,  # nesting too deep, circular references
    RuntimeError: RuntimeError,  # pickled data and allow_pickle=False
    TypeError: TypeError,  # a value with no JSON form
    FileNotFoundError: FileNotFoundError,
    OSError: OSError,
    ValueError: ValueError,  # damaged files, invalid names and formats
}


def expected_error_class(reference_error: BaseException) -> type[BaseException]:
    """The class jobpersist must raise where the reference raised ``reference_error``.

    Raises:
        AssertionError: If the reference's exception is none of ``DOCUMENTED_ERRORS``.
    """
    for cls in type(reference_error).__mro__:
        if cls in DOCUMENTED_ERRORS:
            return DOCUMENTED_ERRORS[cls]
    raise AssertionError(
        f"the reference raised {reference_error!r}, which has no documented counterpart: "
        "a broken step?"
    )


def raised_inside(error: BaseException, package: ModuleType) -> bool:
    """Whether ``error`` was raised inside ``package``'s code (or code it called), not by the
    test's own step (a typo, a wrong signature) before reaching it."""
    root = str(Path(package.__file__ or "").resolve().parent)
    tb = error.__traceback__
    while tb is not None:
        if str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(root):
            return True
        tb = tb.tb_next
    return False


class Twin:
    """Two job environments, one per implementation, driven through the same steps."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        # AMZN_BRAKET_JOB_NAME on both sides: a script may run as several jobs in turn.
        self.job_name = JOB_NAME
        self.last_reference: Outcome | None = None
        self.ours = ours_api()
        self.reference = reference_api()
        self.reset()

    def reset(self) -> None:
        """Fresh, empty directories for both sides."""
        self.count += 1
        base = self.root / f"twin{self.count}"
        self.dirs: dict[str, tuple[Path, Path]] = {}
        for side in ("ours", "reference"):
            checkpoints = base / side / "checkpoints"
            results = base / side / "results"
            checkpoints.mkdir(parents=True)
            results.mkdir(parents=True)
            self.dirs[side] = (checkpoints, results)

    def env(self, side: str) -> contextlib.AbstractContextManager[None]:
        checkpoints, results = self.dirs[side]
        return environ(
            AMZN_BRAKET_CHECKPOINT_DIR=str(checkpoints),
            AMZN_BRAKET_JOB_NAME=self.job_name,
            AMZN_BRAKET_JOB_RESULTS_DIR=str(results),
            CHECKPOINT_DIR=str(self.root / "not-the-checkpoint-dir"),
            JOB_NAME=DECOY_JOB_NAME,
        )

    def files(self, side: str) -> dict[str, bytes]:
        return snapshot(*self.dirs[side])

    def run(self, side: str, fn: Callable[[Api], Any], api: Api | None = None) -> Outcome:
        with self.env(side):
            return _call(fn, api or (self.ours if side == "ours" else self.reference))

    def step(
        self,
        fn: Callable[[Api], Any],
        *,
        match_message: bool = False,
        expect: type[BaseException] | None = None,
    ) -> Outcome:
        """Runs ``fn`` on both sides and asserts the same outcome and the same files.

        When both fail, jobpersist must have left its files untouched (atomicity), and the
        reference side is resynchronised from ours (the reference may have truncated its file).
        jobpersist's error must be of ``expect`` if given (a documented difference), else of
        ``expected_error_class`` of the reference's.
        """
        before = self.files("ours")
        ours = self.run("ours", fn)
        reference = self.run("reference", fn)
        self.last_reference = reference
        if ours.ok and reference.ok:
            assert_same_files(self.files("ours"), self.files("reference"))
            assert canon(ours.value) == canon(reference.value)
            return ours
        if not ours.ok and not reference.ok:
            assert reference.error is not None and ours.error is not None
            # Both raised: only errors of the implementations themselves count.
            assert raised_inside(ours.error, jobpersist), f"step failed outside: {ours.error!r}"
            assert raised_inside(reference.error, self.reference.mod), (
                f"step failed outside the reference: {reference.error!r}"
            )
            expected = expect or expected_error_class(reference.error)
            assert isinstance(ours.error, expected), (
                f"reference raised {reference.error!r}, jobpersist raised {ours.error!r}"
            )
            if match_message:
                assert str(ours.error) == str(reference.error)
            assert self.files("ours") == before, "a failed jobpersist call changed files"
            self.resync()
            return ours
        raise AssertionError(
            f"outcomes differ: jobpersist {'returned' if ours.ok else 'raised'} "
            f"{ours.value if ours.ok else ours.error!r}; reference "
            f"{'returned' if reference.ok else 'raised'} "
            f"{reference.value if reference.ok else reference.error!r}"
        )

    def cross(self, fn: Callable[[Api], Any]) -> None:
        """Each implementation reads what the other wrote: the outcomes must agree."""
        ours_reads_reference = self.run("reference", fn, self.ours)
        reference_reads_ours = self.run("ours", fn, self.reference)
        ours_reads_ours = self.run("ours", fn, self.ours)
        reference_reads_reference = self.run("reference", fn, self.reference)
        for a, b in (
            (ours_reads_reference, reference_reads_reference),
            (reference_reads_ours, ours_reads_ours),
        ):
            assert a.ok == b.ok, (a, b)
            if a.ok:
                assert canon(a.value) == canon(b.value)

    def resync(self) -> None:
        """Makes the reference's directories a copy of ours."""
        for ours_dir, reference_dir in zip(self.dirs["ours"], self.dirs["reference"], strict=True):
            shutil.rmtree(reference_dir)
            shutil.copytree(ours_dir, reference_dir)


@pytest.fixture
def twin(tmp_path: Path) -> Twin:
    return Twin(tmp_path)


def temp_leftovers(directory: Path) -> list[str]:
    """jobpersist's temp files (``.<name>.jptmp.<pid>.<random>``) in ``directory``."""
    return sorted(p.name for p in directory.iterdir() if ".jptmp." in p.name)
