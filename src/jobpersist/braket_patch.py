"""``patch_braket()``: unchanged Braket code saves and loads through jobpersist.

It points ``braket.jobs.data_persistence.{save,load}_job_{checkpoint,result}`` at
jobpersist's functions, and so every name bound to the originals in the SDK's loaded
modules (``braket.jobs`` re-exports them; ``braket.aws.aws_quantum_job`` imports
``load_job_result``). Code that runs ``from braket.jobs import save_job_checkpoint`` after
the patch gets jobpersist's function.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType, TracebackType
from typing import Any

from jobpersist import data_persistence

__all__ = ["BraketNotInstalledError", "BraketPatch", "patch_braket"]

_NAMES = ("save_job_checkpoint", "load_job_checkpoint", "save_job_result", "load_job_result")


class BraketNotInstalledError(ImportError):
    """``patch_braket()`` was called without amazon-braket-sdk installed."""


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0  # handles not undone yet
        # (module, name) -> the original function it held.
        self.replaced: dict[tuple[str, str], Any] = {}


_STATE = _State()


class BraketPatch:
    """The handle ``patch_braket()`` returns: ``undo()`` it, or use it as a context manager.

    Patches nest: the originals come back when every handle is undone. ``undo()`` twice is
    harmless.
    """

    def __init__(self) -> None:
        self._undone = False

    @property
    def active(self) -> bool:
        """True until this handle is undone."""
        return not self._undone

    def undo(self) -> None:
        """Gives Braket its own functions back (once the last active handle is undone).

        A name that someone else re-pointed since the patch is left as they set it.
        """
        with _STATE.lock:
            if self._undone:
                return
            self._undone = True
            _STATE.active -= 1
            if _STATE.active:
                return
            for (module_name, name), original in _STATE.replaced.items():
                module = sys.modules.get(module_name)
                if module is not None and getattr(module, name, None) is getattr(
                    data_persistence, name
                ):
                    setattr(module, name, original)
            _STATE.replaced.clear()

    def __enter__(self) -> BraketPatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.undo()

    def __repr__(self) -> str:
        return f"<BraketPatch {'active' if self.active else 'undone'}>"


def _import_sdk() -> ModuleType:
    try:
        module = importlib.import_module("braket.jobs.data_persistence")
        importlib.import_module("braket.jobs")
    except ImportError as exc:
        raise BraketNotInstalledError(
            "patch_braket() needs the Amazon Braket SDK, which cannot be imported "
            f"({exc}). Install it with `pip install amazon-braket-sdk`, or call "
            "jobpersist's functions directly: `from jobpersist import save_job_checkpoint`."
        ) from exc
    return module


def patch_braket() -> BraketPatch:
    """Points the Braket SDK's persistence functions at jobpersist's.

    Replaces ``save_job_checkpoint``, ``load_job_checkpoint``, ``save_job_result`` and
    ``load_job_result`` in ``braket.jobs.data_persistence`` and wherever a loaded
    ``braket`` module holds the originals (``braket.jobs`` re-exports them). Names imported
    into your own modules *before* the call keep the originals: call it first.

    Returns:
        BraketPatch: ``.undo()`` restores the originals; also a context manager.

    Raises:
        BraketNotInstalledError: (an ImportError) If amazon-braket-sdk cannot be imported.
    """
    reference = _import_sdk()
    with _STATE.lock:
        if not _STATE.active:
            originals = {name: getattr(reference, name) for name in _NAMES}
            ours = {name: getattr(data_persistence, name) for name in _NAMES}
            for module_name, module in list(sys.modules.items()):
                if module is None or not (
                    module_name == "braket" or module_name.startswith("braket.")
                ):
                    continue
                for name in _NAMES:
                    if getattr(module, name, None) is originals[name]:
                        _STATE.replaced[(module_name, name)] = originals[name]
                        setattr(module, name, ours[name])
        _STATE.active += 1
    return BraketPatch()
