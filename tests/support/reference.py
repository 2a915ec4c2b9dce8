"""Differential runs against the reference (``braket.jobs.data_persistence``): same calls,
same outcome, same bytes."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jobpersist
from support.jobenv import JOB_NAME, environ, job_variables
from support.values import canon


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
        decoys = self.root / "not-the-checkpoint-dir"
        return environ(**job_variables(checkpoints, results, self.job_name, decoys))

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
