"""Checkpoint history: a numbered checkpoint per step, retention that never loses the newest or
the best, and a resume from the newest checkpoint that loads.

Each checkpoint is an ordinary checkpoint file, ``{job_name}_{suffix}.json`` in
``AMZN_BRAKET_CHECKPOINT_DIR``, written by ``save_job_checkpoint`` (or its background twin)
with a suffix that carries the step, zero-padded so names sort, and the metric when there is
one::

    my-job_ckpt-000000042.json
    my-job_ckpt-000000042_cost_0.0123.json

so the reference's ``load_job_checkpoint(job_name, checkpoint_file_suffix=...)`` loads any of
them. There is no index file: the directory listing is the truth, and a name is a manager's
only if it reads back exactly as a manager writes it. Files of other suffixes or tools are
never touched.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import json
import logging
import math
import operator
import os
import re
import stat
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Literal

from jobpersist import _durability
from jobpersist._environment import get_checkpoint_dir, get_job_name
from jobpersist._format.data_format import PersistedJobDataFormat
from jobpersist._format.load import load_file
from jobpersist._pickle.policy import ALLOW_PICKLE_DEFAULT, PickleMode, pickle_mode
from jobpersist._pickle.safe import UnsafePickleError
from jobpersist.data_persistence import save_job_checkpoint

if TYPE_CHECKING:
    from jobpersist.background import SaveFuture

__all__ = [
    "Checkpoint",
    "CheckpointManager",
    "DamagedCheckpointError",
    "DamagedCheckpointWarning",
    "list_checkpoints",
    "load_checkpoint",
    "rank_from_environment",
]

_log = logging.getLogger("jobpersist.checkpoints")

#: Digits of the step in a file name, at least (more for steps of 10**9 and beyond).
STEP_DIGITS = 9
# Characters S3 keys take without special handling (AWS's "safe characters"), the rest left
# out: a checkpoint directory is synced to S3.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_METRIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.]*")
_METRIC_VALUE = r"-?(?:inf|nan|[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)"
# What the end of an envelope looks like (the reference's layout and any JSON whitespace).
_TAIL = re.compile(rb'"dataFormat"\s*:\s*"((?:[^"\\]|\\.)*)"\s*}\s*$')
_TAIL_BYTES = 512
_HEAD_BYTES = 64


class DamagedCheckpointError(ValueError):
    """A listed checkpoint that cannot be loaded: truncated, corrupted or unreadable.

    ``path`` is the file, ``reason`` says why.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DamagedCheckpointWarning(UserWarning):
    """``CheckpointManager.restore`` skipped a checkpoint that does not load."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One checkpoint file of a manager, as the directory listing shows it.

    ``problem`` says why the file cannot be a complete checkpoint, judged from its first and
    last bytes only (None when they look right: only loading it tells for sure).
    """

    step: int
    job_name: str
    suffix: str
    path: str
    size: int
    mtime_ns: int
    data_format: str | None
    metric_name: str | None
    metric: float | None
    problem: str | None

    @property
    def name(self) -> str:
        """The file's name."""
        return os.path.basename(self.path)


# ---------------------------------------------------------------------------- file names
def format_metric(value: float) -> str:
    """``value`` as a file name holds it: ``repr`` (which reads back exactly), without ``+``."""
    return repr(float(value)).replace("e+", "e")


def checkpoint_suffix(prefix: str, step: int, metric_name: str | None, metric: float | None) -> str:
    """The ``checkpoint_file_suffix`` of a step (and its metric, when recorded)."""
    suffix = f"{prefix}-{step:0{STEP_DIGITS}d}"
    if metric_name is not None and metric is not None:
        suffix += f"_{metric_name}_{format_metric(metric)}"
    return suffix


def _name_pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(
        rf"(?P<job>.*)_{re.escape(prefix)}-(?P<step>[0-9]{{{STEP_DIGITS},}})"
        rf"(?:_(?P<metric_name>{_METRIC_NAME.pattern})_(?P<metric>{_METRIC_VALUE}))?\.json"
    )


def _parse_name(pattern: re.Pattern[str], prefix: str, name: str) -> tuple[Any, ...] | None:
    """(job, suffix, step, metric name, metric) of a manager's file name, else None: only a
    name that reads back exactly as a manager writes it counts."""
    match = pattern.fullmatch(name)
    if match is None:
        return None
    step = int(match["step"])
    metric_name = match["metric_name"]
    metric = float(match["metric"]) if match["metric"] is not None else None
    suffix = checkpoint_suffix(prefix, step, metric_name, metric)
    if name != f"{match['job']}_{suffix}.json":
        return None  # leading zeros, a metric written otherwise: not a manager's name
    return match["job"], suffix, step, metric_name, metric


# ---------------------------------------------------------------------------- listing
def _probe(path: str) -> tuple[int, int, str | None, str | None] | None:
    """(size, mtime_ns, data format, problem) from the file's first and last bytes; None for
    anything but a regular file (a symlink, a directory: not a manager's).

    A truncated file, one cut off by a copy or an upload, or zeros where its end should be,
    is told from a few hundred bytes, without reading the rest.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if os.path.islink(path) or os.path.isdir(path):
            return None
        return 0, 0, None, f"cannot be opened: {exc.strerror or exc}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        size, mtime_ns = st.st_size, st.st_mtime_ns
        if size == 0:
            return 0, mtime_ns, None, "empty file"
        head = os.pread(fd, _HEAD_BYTES, 0)
        tail = os.pread(fd, min(size, _TAIL_BYTES), max(0, size - _TAIL_BYTES))
    except OSError as exc:
        return 0, 0, None, f"cannot be read: {exc.strerror or exc}"
    finally:
        os.close(fd)
    if not head.lstrip().startswith(b"{"):
        return size, mtime_ns, None, "damaged: it does not start as a checkpoint file does"
    found = _TAIL.search(tail)
    if found is None:
        problem = (
            f"incomplete: it does not end as a checkpoint file does (truncated or damaged, "
            f"{size} bytes)"
        )
        return size, mtime_ns, None, problem
    try:
        label = json.loads(b'"' + found[1] + b'"')
    except ValueError:
        return size, mtime_ns, None, "damaged: its dataFormat is not a JSON string"
    return size, mtime_ns, label, None


def list_checkpoints(directory: str | None = None, prefix: str = "ckpt") -> list[Checkpoint]:
    """The checkpoints managers with ``prefix`` wrote in ``directory``, of every job, oldest
    step first (for one step, a copied job's file before the current job's, then by
    modification time).

    Args:
        directory (str | None): The checkpoint directory. Default: ``AMZN_BRAKET_CHECKPOINT_DIR``
            (else the working directory), read now.
        prefix (str): The managers' prefix. Default: "ckpt"

    Returns:
        list[Checkpoint]: One entry per regular file named as a manager names its files; of
        each, the first and last bytes are read (its format, and whether it is cut short),
        never more.

    Raises:
        ValueError: If ``prefix`` is not a valid prefix.
        OSError: If the directory cannot be listed (a missing directory lists nothing).
    """
    _check_prefix(prefix)
    directory = directory if directory is not None else get_checkpoint_dir()
    pattern = _name_pattern(prefix)
    marker = f"_{prefix}-"
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if marker not in name or not name.endswith(".json"):
            continue
        parsed = _parse_name(pattern, prefix, name)
        if parsed is None:
            continue
        job, suffix, step, metric_name, metric = parsed
        path = os.path.join(directory, name)
        probed = _probe(path)
        if probed is None:
            continue
        size, mtime_ns, data_format, problem = probed
        found.append(
            Checkpoint(
                step, job, suffix, path, size, mtime_ns, data_format, metric_name, metric, problem
            )
        )
    current = get_job_name()
    found.sort(key=lambda c: (c.step, c.job_name == current, c.mtime_ns, c.name))
    return found


# ---------------------------------------------------------------------------- loading
def load_checkpoint(
    checkpoint: Checkpoint, allow_pickle: bool | Literal["safe"] = ALLOW_PICKLE_DEFAULT
) -> dict[str, Any]:
    """Loads one listed checkpoint, as ``CheckpointManager.restore`` does.

    Args:
        checkpoint (Checkpoint): A checkpoint of ``list_checkpoints`` or
            ``CheckpointManager.steps``.
        allow_pickle (bool | Literal["safe"]): As for ``load_job_checkpoint``.

    Returns:
        dict[str, Any]: The checkpoint data.

    Raises:
        DamagedCheckpointError: (a ValueError) If the file is cut short, corrupted, or cannot
            be read; its ``reason`` says which.
        UnsafePickleError: If allow_pickle is "safe" and a value needs more than plain data.
        RuntimeError: If the data is pickled and allow_pickle is False.
    """
    return _load_listed(checkpoint, pickle_mode(allow_pickle))


def _load_listed(checkpoint: Checkpoint, mode: PickleMode) -> dict[str, Any]:
    if checkpoint.problem is not None:
        raise DamagedCheckpointError(checkpoint.path, checkpoint.problem)
    try:
        return load_file(checkpoint.path, mode)
    except (UnsafePickleError, RuntimeError):
        raise  # the pickle policy refused it: not damage, and older files would fare alike
    except FileNotFoundError:
        raise DamagedCheckpointError(checkpoint.path, "removed since it was listed") from None
    except OSError as exc:
        reason = f"cannot be read: {exc.strerror or exc}"
        raise DamagedCheckpointError(checkpoint.path, reason) from exc
    except ValueError as exc:
        raise DamagedCheckpointError(checkpoint.path, f"damaged: {exc}") from exc


# ---------------------------------------------------------------------------- ranks
# The launchers' rank variables, most specific first: OpenMPI's mpirun (SageMaker's
# distributed data parallel library runs under it), MPICH and Intel MPI, then torch's
# (which the Braket container sets for distribution="data_parallel" workers).
_RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "RANK")


def rank_from_environment(environ: Mapping[str, str] | None = None) -> int:
    """This process's rank, as the launcher in use tells it; 0 when none does.

    The launchers' variables (``OMPI_COMM_WORLD_RANK``, ``PMI_RANK``, ``RANK``), then the
    instance's place among the job's hosts (``SM_CURRENT_HOST`` in the sorted ``SM_HOSTS``, as
    the Braket container numbers its nodes).

    Args:
        environ (Mapping[str, str] | None): The environment to read. Default: ``os.environ``.

    Returns:
        int: The rank (>= 0).

    Raises:
        ValueError: If a variable holds something else than what its launcher writes.
    """
    env = os.environ if environ is None else environ
    for name in _RANK_VARIABLES:
        text = env.get(name, "").strip()
        if text:
            if not (text.isascii() and text.isdigit()):
                raise ValueError(f"{name}={text!r} is not a rank: pass rank= to CheckpointManager.")
            return int(text)
    hosts_text = env.get("SM_HOSTS", "").strip()
    current = env.get("SM_CURRENT_HOST", "").strip()
    if hosts_text and current:
        try:
            hosts = json.loads(hosts_text)
        except ValueError:
            hosts = None
        if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
            raise ValueError(
                f"SM_HOSTS={hosts_text!r} is not a JSON list of host names: pass rank= to "
                "CheckpointManager."
            )
        if current in hosts:
            return sorted(hosts).index(current)
    return 0


# ---------------------------------------------------------------------------- retention
@dataclasses.dataclass(frozen=True)
class _Policy:
    keep_last: int | None
    keep_best: int
    mode: Literal["min", "max"]
    keep_every: int | None
    metric_name: str | None


def _best_first(policy: _Policy, files: Iterable[Checkpoint]) -> list[Checkpoint]:
    """The files with a metric of the policy's name, best first (a tie: the newer first)."""
    sign = 1.0 if policy.mode == "min" else -1.0
    ranked = [
        (sign * c.metric, -c.step, -c.mtime_ns, c.name, c)
        for c in files
        if c.metric_name == policy.metric_name and c.metric is not None and not math.isnan(c.metric)
    ]
    ranked.sort(key=lambda entry: entry[:4])
    return [entry[-1] for entry in ranked]


def _plan_deletions(policy: _Policy, files: list[Checkpoint], saved: str) -> list[Checkpoint]:
    """What retention deletes among ``files`` (one job's, listed), ``saved`` the name of the
    last save of the step the pass runs for: once that file is listed, the other files of its
    step (it replaced them); then every file beyond the ``keep_last`` newest that is neither
    one of the ``keep_best`` best, nor a multiple of ``keep_every``, nor the newest, nor
    ``saved`` itself.
    """
    just = next((c for c in files if c.name == saved), None)
    replaced = [c for c in files if just is not None and c.step == just.step and c is not just]
    gone = {c.name for c in replaced}
    rest = sorted(
        (c for c in files if c.name not in gone), key=lambda c: (c.step, c.mtime_ns, c.name)
    )
    if policy.keep_last is None or not rest:
        return replaced
    keep = {c.name for c in rest[-policy.keep_last :]}
    keep.add(rest[-1].name)
    keep.add(saved)
    keep.update(c.name for c in _best_first(policy, rest)[: policy.keep_best])
    if policy.keep_every:
        keep.update(c.name for c in rest if c.step % policy.keep_every == 0)
    return replaced + [c for c in rest if c.name not in keep]


def _make_durable(directory: str, kept: list[Checkpoint]) -> None:
    """Returns once the checkpoints retention keeps survive a power cut: it deletes nothing
    before.

    The deferred fsyncs of the process are flushed (``_durability.flush()``). Unless every
    save is fsynced as it is made (the ``full`` mode), the kept files and their directory are
    fsynced here too: they may come from ``none`` saves, and retention must not trade a lost
    newest file for the loss of every file (a file with nothing left to write costs one quick
    fsync).

    Raises:
        OSError: A failed fsync (nothing is then deleted).
    """
    _durability.flush()
    if _durability.resolve() == _durability.FULL:
        return
    errors = _durability.sync_paths([c.path for c in kept] or [directory])
    if errors:
        raise errors[0]


def _retain(policy: _Policy, directory: str, job: str, prefix: str, saved: str) -> None:
    """One retention pass after a save (``saved``: the name of the last save of its step):
    makes what stays durable, then unlinks what the policy drops among the job's files
    (plain unlinks of complete, named files; a save's temp files have other names)."""
    files = [c for c in list_checkpoints(directory, prefix) if c.job_name == job]
    doomed = _plan_deletions(policy, files, saved)
    if not doomed:
        return
    gone = {c.name for c in doomed}
    _make_durable(directory, [c for c in files if c.name not in gone])
    for checkpoint in doomed:
        try:
            os.unlink(checkpoint.path)
        except FileNotFoundError:
            pass  # another pass (or process) removed it already
        except OSError as exc:
            warnings.warn(
                f"jobpersist: could not delete the old checkpoint {checkpoint.path}: "
                f"{exc.strerror or exc}",
                RuntimeWarning,
                stacklevel=1,
            )


class _Janitor:
    """The one thread that runs retention after synchronous saves, off the caller's path
    (freeing a large file's blocks takes tens of milliseconds)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queue: collections.deque[Callable[[], None]] = collections.deque()
        self.running = False
        self.thread: threading.Thread | None = None

    def submit(self, task: Callable[[], None]) -> None:
        with self.cond:
            self.queue.append(task)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self.run, name="jobpersist-retention", daemon=True
                )
                self.thread.start()
            self.cond.notify_all()

    def run(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                task = self.queue.popleft()
                self.running = True
            try:
                task()
            finally:
                with self.cond:
                    self.running = False
                    self.cond.notify_all()

    def drain(self) -> None:
        with self.cond:
            while (self.queue or self.running) and self.thread is not None:
                if not self.thread.is_alive():
                    return
                self.cond.wait(1.0)

    def reset_after_fork(self) -> None:
        self.cond = threading.Condition()
        self.queue = collections.deque()
        self.running = False
        self.thread = None


_JANITOR = _Janitor()
# Managers with saves whose retention has not run yet.
_BUSY: weakref.WeakSet[CheckpointManager] = weakref.WeakSet()


def _reset_after_fork() -> None:
    # Neither the retention thread nor the background writer exists in a forked child: the
    # parent's pending passes are the parent's; the child's managers start idle.
    _JANITOR.reset_after_fork()
    for manager in list(_BUSY):
        manager._reset_after_fork()
    _BUSY.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _drain_at_exit() -> None:
    # Every manager's saves and their retention. The background writer runs until the
    # interpreter is gone, so the background saves made before exit get their retention too.
    for manager in list(_BUSY):
        try:
            manager._wait_idle(None)
        except BaseException:  # the interpreter is exiting
            return


atexit.register(_drain_at_exit)


# ---------------------------------------------------------------------------- the manager
def _check_prefix(prefix: str) -> None:
    if not isinstance(prefix, str) or not _NAME.fullmatch(prefix):
        raise ValueError(
            f"prefix {prefix!r} must be letters, digits, '.' and '-' (starting with a letter "
            "or digit): checkpoint names are synced to S3."
        )


def _count(name: str, value: Any, minimum: int, optional: bool) -> Any:
    """``value`` as an int of at least ``minimum`` (any integer type: a numpy step counter
    too), or None where ``optional``."""
    if value is None and optional:
        return None
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < minimum:
        allowed = f"an int >= {minimum}" + (" or None" if optional else "")
        raise ValueError(f"{name} must be {allowed}, not {value!r}.")
    return number


_FORMATS = {f.value: f for f in PersistedJobDataFormat}


class CheckpointManager:
    """Numbered checkpoints with retention, and a resume from the newest one that loads.

    ::

        ckpt = CheckpointManager(keep_last=3, keep_best=1, metric="cost", mode="min",
                                 data_format=PersistedJobDataFormat.PICKLED_V4)
        found = ckpt.restore(allow_pickle="safe")  # None on a fresh job, else (step, data)
        start = 0 if found is None else found[0] + 1
        for step in range(start, n_steps):
            ...
            ckpt.save(step, {"params": params, "cost": cost})
        ckpt.wait()

    Each step is saved by ``save_job_checkpoint`` under the suffix
    ``{prefix}-{step:09d}`` (``_{metric}_{value}`` appended when a metric is recorded), so
    every file is one the reference loads. After a save is complete and durable, retention
    deletes the job's checkpoints beyond the ``keep_last`` newest, except the ``keep_best``
    best by ``metric``, the steps that are multiples of ``keep_every``, and the newest.

    Only rank 0 writes by default (``rank``, else the launcher's environment: see
    ``rank_from_environment``); every rank can restore.
    """

    def __init__(
        self,
        keep_last: int | None = None,
        keep_best: int = 0,
        metric: str | None = None,
        mode: Literal["min", "max"] = "min",
        keep_every: int | None = None,
        data_format: Any = "plaintext",
        prefix: str = "ckpt",
        rank: int | None = None,
    ) -> None:
        """Args:
            keep_last (int | None): How many of the newest checkpoints retention keeps (at
                least 1). Default: None, which keeps every checkpoint.
            keep_best (int): How many of the best checkpoints by ``metric`` are kept beyond
                them. Default: 0
            metric (str | None): The metric recorded with each checkpoint: the value under
                this key in the saved data, or the ``metric`` passed to ``save``. Letters,
                digits, ``_`` and ``.``. Default: None (no metric)
            mode (Literal["min", "max"]): Whether a lower or a higher metric is better.
                Default: "min"
            keep_every (int | None): Also keep every step that is a multiple of it.
                Default: None
            data_format (PersistedJobDataFormat): PLAINTEXT or PICKLED_V4 (or their values).
                Default: PersistedJobDataFormat.PLAINTEXT
            prefix (str): The start of every suffix; managers of different prefixes share a
                directory without touching each other's files. Default: "ckpt"
            rank (int | None): This process's rank; only rank 0 writes. Default: from the
                launcher's environment, else 0.

        Raises:
            ValueError: For a setting out of range, ``keep_best`` without a ``metric``, or a
                rank variable of the environment that is not a number.
        """
        _check_prefix(prefix)
        self.keep_last: int | None = _count("keep_last", keep_last, 1, True)
        self.keep_best: int = _count("keep_best", keep_best, 0, False)
        self.keep_every: int | None = _count("keep_every", keep_every, 1, True)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}.")
        if metric is not None and (
            not isinstance(metric, str) or not _METRIC_NAME.fullmatch(metric)
        ):
            raise ValueError(
                f"metric {metric!r} must be letters, digits, '_' and '.' (starting with a "
                "letter or digit): it is part of each checkpoint's file name."
            )
        if self.keep_best and metric is None:
            raise ValueError("keep_best needs a metric to rank checkpoints by.")
        fmt = _FORMATS.get(getattr(data_format, "value", data_format))
        if fmt is None:
            raise ValueError(
                f"data_format must be PersistedJobDataFormat.PLAINTEXT or PICKLED_V4, not "
                f"{data_format!r}."
            )
        self.data_format: PersistedJobDataFormat = fmt
        self.metric: str | None = metric
        self.mode: Literal["min", "max"] = mode
        self.prefix: str = prefix
        self.rank: int = rank_from_environment() if rank is None else _count("rank", rank, 0, False)
        #: The checkpoint the last ``restore()`` returned, or None.
        self.restored: Checkpoint | None = None
        self._policy = _Policy(self.keep_last, self.keep_best, mode, self.keep_every, metric)
        self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        self._cond = threading.Condition()
        self._pending = 0  # saves whose retention has not finished
        self._futures: list[SaveFuture] = []
        # Per step with a retention pass to come: the name of its last save, and the passes.
        self._last_saved: dict[int, str] = {}
        self._passes: collections.Counter[int] = collections.Counter()
        self._retention_lock = threading.Lock()

    @property
    def writes(self) -> bool:
        """Whether this process writes checkpoints (rank 0)."""
        return self.rank == 0

    # ---- saving -----------------------------------------------------------------------
    def _metric_value(self, data: Any, metric: Any) -> float | None:
        if metric is None and self.metric is None:
            return None
        if self.metric is None:
            raise ValueError("save(metric=...) needs CheckpointManager(metric=...): its name.")
        if metric is None:
            if not isinstance(data, dict) or self.metric not in data:
                raise ValueError(
                    f"The checkpoint data has no {self.metric!r} key: save it in the data, or "
                    "pass save(..., metric=value)."
                )
            metric = data[self.metric]
        try:
            return float(metric)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"The metric {self.metric!r} must be a number, not {metric!r}."
            ) from exc

    def save(
        self,
        step: int,
        data: dict[str, Any],
        *,
        metric: float | None = None,
        background: bool = False,
    ) -> SaveFuture | None:
        """Saves ``data`` as the checkpoint of ``step``, then applies retention.

        Saving a step again replaces its checkpoint. Retention runs once the new file is
        complete and durable, off the caller's path, and deletes only the current job's files
        of this manager's prefix.

        Args:
            step (int): The step (>= 0); names sort by it.
            data (dict[str, Any]): The checkpoint data, as for ``save_job_checkpoint``.
            metric (float | None): The metric of this checkpoint. Default: ``data[metric]``
                when the manager has a metric.
            background (bool): Snapshot now and write in the background, as
                ``save_job_checkpoint_async`` does. Default: False

        Returns:
            SaveFuture | None: With ``background``, the save's Future (the path written, or
            its error); None otherwise, and on a rank that does not write.

        Raises:
            ValueError: A negative step, empty data, a missing metric, or as
                ``save_job_checkpoint``.
            TypeError: A metric that is not a number, or a value the format cannot hold.
            OSError: If the file cannot be written (synchronous saves).
        """
        step = _count("step", step, 0, False)
        value = self._metric_value(data, metric)
        if not self.writes:
            return None
        suffix = checkpoint_suffix(self.prefix, step, self.metric, value)
        directory, job = get_checkpoint_dir(), get_job_name()
        # Registered before the file exists: a pending pass of an older save of this step
        # must never take the new file for one its own save replaced.
        self._started(step, f"{job}_{suffix}.json")
        try:
            if background:
                from jobpersist.background import save_job_checkpoint_async

                future = save_job_checkpoint_async(data, suffix, self.data_format)
            else:
                save_job_checkpoint(data, suffix, self.data_format)
        except BaseException:
            self._finished(step)
            raise
        if background:
            future.add_done_callback(lambda f: self._after_background(f, directory, job, step))
            with self._cond:
                self._futures.append(future)
            return future
        _JANITOR.submit(lambda: self._retention(directory, job, step))
        return None

    def _after_background(self, future: Future[str], directory: str, job: str, step: int) -> None:
        # On the writer thread as the save completes (or on the caller's, if it completed
        # first): the pass itself goes to the retention thread. Future's own methods, not
        # SaveFuture's: looking must not count as retrieving an error.
        if future.cancelled() or Future.exception(future, 0) is not None:
            self._finished(step)
            return
        from jobpersist.background import SUPERSEDED

        if Future.result(future, 0) == SUPERSEDED:
            self._finished(step)  # the newer save of the same step runs retention
            return
        _JANITOR.submit(lambda: self._retention(directory, job, step))

    def _retention(self, directory: str, job: str, step: int) -> None:
        try:
            with self._retention_lock:
                with self._cond:
                    saved = self._last_saved[step]
                _retain(self._policy, directory, job, self.prefix, saved)
        except Exception as exc:  # retention never fails a save; say why it did not run
            warnings.warn(
                f"jobpersist: checkpoint retention after the save of step {step} did not run: "
                f"{type(exc).__name__}: {exc}",
                RuntimeWarning,
                stacklevel=1,
            )
        finally:
            self._finished(step)

    def _started(self, step: int, name: str) -> None:
        with self._cond:
            self._pending += 1
            self._last_saved[step] = name
            self._passes[step] += 1
            _BUSY.add(self)

    def _finished(self, step: int) -> None:
        with self._cond:
            self._pending -= 1
            self._passes[step] -= 1
            if not self._passes[step]:
                del self._passes[step], self._last_saved[step]
            if not self._pending:
                _BUSY.discard(self)
            self._cond.notify_all()

    def _wait_idle(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Waits until this manager's saves are written and their retention is done.

        Raises:
            TimeoutError: If ``timeout`` seconds pass first.
            Exception: The error of the first background save of this manager that failed
                since the last ``wait``.
        """
        if not self._wait_idle(timeout):
            raise TimeoutError(
                f"CheckpointManager.wait: {self._pending} save(s) still pending after {timeout} s."
            )
        with self._cond:
            futures, self._futures = self._futures, []
        for future in futures:
            exc = future.exception(0)
            if exc is not None:
                raise exc

    # ---- reading ----------------------------------------------------------------------
    def steps(self) -> list[Checkpoint]:
        """The checkpoints in the checkpoint directory, of every job (a restarted job's copied
        ones too), oldest step first: step, job name, size, format, metric where recorded.

        Raises:
            OSError: If the directory cannot be listed.
        """
        return list_checkpoints(None, self.prefix)

    def latest_step(self) -> int | None:
        """The highest step in the directory (of any job), or None."""
        found = self.steps()
        return found[-1].step if found else None

    def best_step(self) -> int | None:
        """The step of the best checkpoint by this manager's metric (of any job), or None."""
        best = _best_first(self._policy, self.steps())
        return best[0].step if best else None

    def restore(
        self,
        allow_pickle: bool | Literal["safe"] = ALLOW_PICKLE_DEFAULT,
        *,
        step: int | None = None,
    ) -> tuple[int, dict[str, Any]] | None:
        """Loads the newest checkpoint that loads completely: newest step first, the current
        job's file before a copied one of the same step. A damaged or unreadable file is
        skipped with a ``DamagedCheckpointWarning`` naming it and why. ``restored`` tells
        which file (and so which job's) was used.

        Args:
            allow_pickle (bool | Literal["safe"]): As for ``load_job_checkpoint``.
            step (int | None): Load this step only. Default: the newest that loads.

        Returns:
            tuple[int, dict[str, Any]] | None: The step and its data; None when there is no
            checkpoint (a fresh job).

        Raises:
            DamagedCheckpointError: (a ValueError) If there are checkpoints (of ``step``) but
                none loads; the message lists each and why.
            FileNotFoundError: If ``step`` is given and has no checkpoint.
            UnsafePickleError: If allow_pickle is "safe" and a value needs more than plain
                data (newer files are not skipped for it: older ones would be refused alike).
            RuntimeError: If the data is pickled and allow_pickle is False.
        """
        mode = pickle_mode(allow_pickle)
        candidates = self.steps()
        if step is not None:
            candidates = [c for c in candidates if c.step == step]
            if not candidates:
                raise FileNotFoundError(f"No checkpoint of step {step} in {get_checkpoint_dir()}.")
        failures = []
        for checkpoint in reversed(candidates):
            try:
                data = _load_listed(checkpoint, mode)
            except DamagedCheckpointError as exc:
                failures.append(exc)
                warnings.warn(
                    f"jobpersist: skipped checkpoint {exc.path}: {exc.reason}",
                    DamagedCheckpointWarning,
                    stacklevel=2,
                )
                continue
            self.restored = checkpoint
            _log.info(
                "restored step %d from %s (job %r)",
                checkpoint.step,
                checkpoint.path,
                checkpoint.job_name,
            )
            return checkpoint.step, data
        self.restored = None
        if failures:
            listed = "; ".join(str(f) for f in failures)
            raise DamagedCheckpointError(
                get_checkpoint_dir(), f"no checkpoint loads ({len(failures)} tried): {listed}"
            )
        return None
