"""Background saves: checkpoints and results written off the caller's critical path.

``save_job_checkpoint_async`` and ``save_job_result_async`` take a snapshot of the data before
they return (each value pickled, or encoded as the reference's JSON, in the caller) and hand
it to one writer thread, which base64-encodes, writes, fsyncs and renames with the GIL
released (native backend). The caller may mutate its data as soon as the call returns.

Guarantees:

* **Same bytes.** The file written equals what the synchronous save would write.
* **Order.** Saves complete in the order they were made. A newer checkpoint save of the same
  file may *supersede* an older one still waiting (not yet started): the older one is never
  written, and its Future resolves with ``SUPERSEDED`` once the newer one is written (or with
  the newer one's error). Result saves are merges and are never superseded.
* **Back-pressure.** The snapshots waiting or being written hold at most
  ``JOBPERSIST_MAX_PENDING_BYTES`` bytes (default: a quarter of physical memory); a call
  that would exceed it blocks until earlier saves finish. A single snapshot larger than the
  limit is still accepted, alone.
* **Errors reach the caller.** A failed save sets its Future's exception. If nobody retrieved
  it (``Future.result()`` or ``Future.exception()``), the next ``*_async`` call or
  ``wait_for_saves`` raises it (once).
* **Nothing acknowledged is lost on a normal exit.** An ``atexit`` hook waits for every
  pending save. A process killed mid-save leaves the previous file intact (atomic replace).
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from jobpersist import _codec, _durability
from jobpersist._environment import results_path
from jobpersist._format.conversion import coerce_keys, convert_subtree
from jobpersist._format.data_format import (
    PICKLED,
    Format,
    PersistedJobDataFormat,
    ResultFormat,
    result_format,
    warn_if_not_pickled,
)
from jobpersist._format.envelope import (
    PreEncodedJson,
    PrePickled,
    file_is_pickled,
    write_envelope,
)
from jobpersist._format.results import merge_results
from jobpersist._pickle.dump import dumps_in_pieces
from jobpersist._size import parse_size
from jobpersist.data_persistence import prepare_checkpoint

__all__ = [
    "SUPERSEDED",
    "SaveFuture",
    "max_pending_bytes",
    "save_job_checkpoint_async",
    "save_job_result_async",
    "wait_for_saves",
]

#: What ``Future.result()`` returns for a save that a newer save of the same file replaced.
SUPERSEDED = "superseded"

_DEFAULT_FRACTION = 4  # the default limit is 1/4 of physical memory
_FALLBACK_LIMIT = 1 << 30  # when physical memory is unknown


def max_pending_bytes() -> int:
    """The back-pressure limit: ``JOBPERSIST_MAX_PENDING_BYTES``, else 1/4 of physical RAM.

    The variable takes a number of bytes, optionally with a binary unit (``512M``, ``2GiB``;
    see :func:`jobpersist._size.parse_size`).

    Raises:
        ValueError: If the variable is set to something else.
    """
    text = os.environ.get("JOBPERSIST_MAX_PENDING_BYTES", "").strip()
    if text:
        try:
            return parse_size(text)
        except ValueError as exc:
            raise ValueError(f"JOBPERSIST_MAX_PENDING_BYTES: {exc}") from None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return _FALLBACK_LIMIT
    return total // _DEFAULT_FRACTION if total > 0 else _FALLBACK_LIMIT


class _Failure:
    """A failed write's exception, until someone retrieves it."""

    __slots__ = ("exception", "observed")

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception
        self.observed = False


class SaveFuture(Future[str]):
    """The Future of a background save.

    ``result()`` returns the path written, or ``SUPERSEDED`` when a newer save of the same
    file replaced this one before it started. Retrieving an error (``result()`` or
    ``exception()``) keeps it from being raised again by the next call.
    """

    _failure: _Failure | None = None

    def _observe(self) -> None:
        failure = self._failure
        if failure is not None:
            failure.observed = True

    def result(self, timeout: float | None = None) -> str:
        try:
            return super().result(timeout)
        finally:
            if self.done():
                self._observe()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        exc = super().exception(timeout)
        self._observe()
        return exc


@dataclasses.dataclass(eq=False)
class _PendingSave:
    """One snapshot waiting for (or being written by) the writer."""

    target: str
    write: Callable[[_PendingSave], None]
    entries: list[tuple[str, Any]]
    # Checkpoints: the format to write. Results: None (``requested`` decides at the merge).
    data_format: Format | None
    requested: ResultFormat | None
    durability: _durability.Durability
    size: int
    future: SaveFuture
    supersedable: bool
    # The format the values were snapshotted in (results: decided at call time).
    snapshot_format: Format
    seq: int = -1
    superseded: list[SaveFuture] = dataclasses.field(default_factory=list)
    superseded_seqs: list[int] = dataclasses.field(default_factory=list)


def _add_note(exc: BaseException, note: str) -> None:
    add_note = getattr(exc, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(note)


class _Writer:
    """The queue of snapshots and the one thread that writes them."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.queue: collections.deque[_PendingSave] = collections.deque()
        self.live: dict[int, _PendingSave] = {}  # queued or being written, by seq
        self.pending_bytes = 0
        self.next_seq = 0
        self.failures: list[_Failure] = []
        self.thread: threading.Thread | None = None
        # Whether each results file reads as pickled once the saves queued for it are
        # written, and the last of those saves.
        self.result_formats: dict[str, tuple[bool, int]] = {}

    # ---- caller side -------------------------------------------------------------------
    def raise_unobserved(self) -> None:
        """Raises (once) the first failure nobody retrieved, and forgets the others."""
        with self.cond:
            failures = [f for f in self.failures if not f.observed]
            self.failures.clear()
        if not failures:
            return
        for failure in failures:
            failure.observed = True
        first = failures[0].exception
        more = len(failures) - 1
        _add_note(
            first,
            "jobpersist: raised here because this background save failed and its Future's "
            "error was not retrieved"
            + (f" ({more} more unretrieved failure(s) dropped)" if more else "")
            + ".",
        )
        raise first

    def submit(self, job: _PendingSave) -> SaveFuture:
        on_writer = threading.current_thread() is self.thread
        with self.cond:
            self.ensure_thread()
            limit = max_pending_bytes()
            while True:
                if job.supersedable:
                    self.supersede(job)
                if on_writer or not self.live or self.pending_bytes + job.size <= limit:
                    break
                self.cond.wait()
            # A save that replaces older ones counts as made when the oldest was, so that
            # wait_for_saves() waits for it on their behalf.
            job.seq = min([self.next_seq, *job.superseded_seqs])
            self.next_seq += 1
            self.queue.append(job)
            self.live[job.seq] = job
            self.pending_bytes += job.size
            self.cond.notify_all()
        return job.future

    def supersede(self, job: _PendingSave) -> None:
        # Called with the lock held: drop the waiting saves of the same file.
        for old in [j for j in self.queue if j.target == job.target and j.supersedable]:
            self.queue.remove(old)
            del self.live[old.seq]
            self.pending_bytes -= old.size
            old.entries = []
            job.superseded.append(old.future)
            job.superseded.extend(old.superseded)
            job.superseded_seqs.append(old.seq)
            self.cond.notify_all()

    def ensure_thread(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self.run, name="jobpersist-writer", daemon=True)
            self.thread.start()

    def wait(self, timeout: float | None) -> None:
        if threading.current_thread() is self.thread:
            raise RuntimeError("wait_for_saves() cannot be called from the writer thread.")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            last = self.next_seq - 1
            while any(seq <= last for seq in self.live):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(
                        f"wait_for_saves: {len(self.live)} save(s) still pending after {timeout} s."
                    )
                self.cond.wait(remaining)

    # ---- writer side -------------------------------------------------------------------
    def run(self) -> None:
        while True:
            with self.cond:
                while not self.queue:
                    self.cond.wait()
                job = self.queue.popleft()
            try:
                self.process(job)
            finally:
                with self.cond:
                    del self.live[job.seq]
                    self.pending_bytes -= job.size
                    state = self.result_formats.get(job.target)
                    if state is not None and state[1] == job.seq:
                        del self.result_formats[job.target]  # no later save of this file
                    self.cond.notify_all()

    def process(self, job: _PendingSave) -> None:
        futures = [job.future, *job.superseded]
        if not job.future.set_running_or_notify_cancel():
            # Cancelled while waiting: the saves it superseded are dropped with it.
            for future in job.superseded:
                future.cancel()
            job.entries = []
            return
        try:
            job.write(job)
        except BaseException as exc:  # handed to the caller through the Future
            job.entries = []
            failure = _Failure(exc)
            with self.cond:
                self.failures.append(failure)
            for future in futures:
                future._failure = failure
                _settle(future, exc=exc)
            if not isinstance(exc, Exception):
                raise
        else:
            job.entries = []
            _settle(job.future, result=job.target)
            for future in job.superseded:
                _settle(future, result=SUPERSEDED)

    # ---- results files ------------------------------------------------------------------
    def expected_result_format(self, path: str, requested: ResultFormat) -> Format:
        """The format a results save will be written in, as far as can be known now.

        Raises:
            ValueError: If the requested format is invalid over results that are not pickled.
        """
        with self.cond:
            state = self.result_formats.get(path)
            pickled = state[0] if state is not None else None
        if pickled is None:
            pickled = file_is_pickled(path)
        if pickled:
            # Plaintext requested over pickled results fails at the merge, as it does
            # synchronously: the Future gets the TypeError.
            return PICKLED
        return requested.resolve(False)

    def note_result_format(self, path: str, fmt: Format, seq: int) -> None:
        with self.cond:
            if seq in self.live:
                self.result_formats[path] = (fmt.labels_pickled, seq)

    def reset_after_fork(self) -> None:
        self.cond = threading.Condition()
        self.queue = collections.deque()
        self.live = {}
        self.pending_bytes = 0
        self.failures = []
        self.thread = None
        self.result_formats = {}


def _settle(future: SaveFuture, result: str = "", exc: BaseException | None = None) -> None:
    if future.done():  # cancelled by its owner meanwhile
        return
    if not future.running() and not future.set_running_or_notify_cancel():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


_WRITER = _Writer()
if hasattr(os, "register_at_fork"):
    # The writer thread does not exist in a forked child: start the child with an empty queue.
    os.register_at_fork(after_in_child=_WRITER.reset_after_fork)


def _encoded(entries: list[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """The snapshot as ``write_envelope`` entries: a pickled value's pieces are written one
    after the other, never joined (the snapshot is the only copy of the data)."""
    for key, value in entries:
        yield key, PrePickled(value) if isinstance(value, list) else value


def _snapshot(data: dict[str, Any], data_format: Format) -> tuple[list[tuple[str, Any]], int]:
    """Encodes every value now, in the caller: later mutations cannot reach the file."""
    entries: list[tuple[str, Any]] = []
    size = 0
    if data_format.pickled:
        for key, value in data.items():
            chunks = dumps_in_pieces(value)
            size += sum(len(c) for c in chunks)
            entries.append((key, chunks))
    else:
        encode = _codec.CODEC.encode_json
        for key, value in data.items():
            text = encode(key, value, convert_subtree)
            size += len(text)
            entries.append((key, PreEncodedJson(text)))
    return entries, size


def _write_checkpoint(job: _PendingSave) -> None:
    assert job.data_format is not None
    write_envelope(job.target, _encoded(job.entries), job.data_format, job.durability)


def _write_result(job: _PendingSave) -> None:
    # The merge with the saved results happens now, under the directory lock, by the same
    # code as save_job_result; only the new values were encoded by the caller.
    path = job.target
    snapshot_format = job.snapshot_format

    def new_values(data_format: Format) -> dict[str, Any]:
        new: dict[str, Any] = dict(_encoded(job.entries))
        if snapshot_format.pickled == data_format.pickled:
            return new
        if snapshot_format.pickled:
            # Our own pickles of the caller's values (never a file's): safe to load.
            return {k: pickle.loads(v.payload()) for k, v in new.items()}  # noqa: S301
        raise TypeError(
            f"Cannot save these results in the background: {path} became pickled "
            "after the call (another writer), and the values were snapshotted as "
            "plaintext. Pass data_format=PersistedJobDataFormat.PICKLED_V4, or save "
            "synchronously."
        )

    assert job.requested is not None
    merge_results(path, job.requested, new_values, job.durability)


def save_job_checkpoint_async(
    checkpoint_data: dict[str, Any],
    checkpoint_file_suffix: str = "",
    data_format: PersistedJobDataFormat = PersistedJobDataFormat.PLAINTEXT,
    *,
    durability: str | None = None,
) -> SaveFuture:
    """``save_job_checkpoint`` off the critical path: snapshots now, writes in the background.

    The arguments are checked, the file path resolved (from the environment variables as
    they are now) and every value pickled or JSON-encoded before the call returns, so the
    caller may change ``checkpoint_data`` right after. The file written holds the same bytes
    as ``save_job_checkpoint`` would write.

    Args:
        checkpoint_data (dict[str, Any]): As for ``save_job_checkpoint``.
        checkpoint_file_suffix (str): As for ``save_job_checkpoint``. Default: ""
        data_format (PersistedJobDataFormat): As for ``save_job_checkpoint``.
            Default: PersistedJobDataFormat.PLAINTEXT
        durability (str | None): ``"full"``, ``"deferred"`` or ``"none"`` (see
            docs/durability.md). Default: None, ``JOBPERSIST_DURABILITY``'s mode as it is now.

    Returns:
        SaveFuture: Resolves to the path written, or to ``SUPERSEDED`` if a newer save of the
        same checkpoint file replaced this one before it started; or to the write's error.

    Raises:
        ValueError: Empty ``checkpoint_data``, an invalid ``data_format``, a name that would
            leave the directory, a circular reference, an unknown durability mode.
        TypeError: A value the format cannot hold (now, not later).
        Exception: An earlier background save's error that nobody retrieved (this call then
            saves nothing).
    """
    _WRITER.raise_unobserved()
    mode = _durability.resolve(durability)
    path, fmt, data = prepare_checkpoint(checkpoint_data, checkpoint_file_suffix, data_format)
    entries, size = _snapshot(data, fmt)
    job = _PendingSave(
        target=path,
        write=_write_checkpoint,
        entries=entries,
        data_format=fmt,
        requested=None,
        durability=mode,
        size=size,
        future=SaveFuture(),
        supersedable=True,
        snapshot_format=fmt,
    )
    return _WRITER.submit(job)


def save_job_result_async(
    result_data: dict[str, Any] | Any,
    data_format: PersistedJobDataFormat | None = None,
    *,
    durability: str | None = None,
) -> SaveFuture:
    """``save_job_result`` off the critical path: snapshots now, merges and writes later.

    The new values are pickled or JSON-encoded before the call returns; the merge with the
    results already saved happens in the background, under the same lock as
    ``save_job_result``, so the file ends up as the synchronous saves, made in the same
    order, would leave it.

    With ``data_format=None`` the format follows the saved results (pickled if they are),
    judged at call time from the file and the saves still queued for it. If another process
    turns the file pickled in between, a plaintext snapshot cannot follow: the Future then
    fails with a TypeError (pass the format explicitly to avoid it).

    Args:
        result_data (dict[str, Any] | Any): As for ``save_job_result``.
        data_format (PersistedJobDataFormat | None): As for ``save_job_result``.
            Default: None
        durability (str | None): ``"full"``, ``"deferred"`` or ``"none"`` (see
            docs/durability.md). Default: None, ``JOBPERSIST_DURABILITY``'s mode as it is now.

    Returns:
        SaveFuture: Resolves to the path written, or to the write's error.

    Raises:
        TypeError: A value the format cannot hold.
        ValueError: An invalid ``data_format`` (over results that are not pickled), a key the
            reference refuses, a circular reference, or an unknown durability mode.
        Exception: An earlier background save's error that nobody retrieved (this call then
            saves nothing).
    """
    _WRITER.raise_unobserved()
    mode = _durability.resolve(durability)
    if not isinstance(result_data, dict):
        result_data = {"result": result_data}
    requested = result_format(data_format)
    path = results_path()
    data = coerce_keys(dict(result_data))
    fmt = _WRITER.expected_result_format(path, requested)
    warn_if_not_pickled(data_format, fmt, stacklevel=2)
    entries, size = _snapshot(data, fmt)
    job = _PendingSave(
        target=path,
        write=_write_result,
        entries=entries,
        data_format=None,
        requested=requested,
        durability=mode,
        size=size,
        future=SaveFuture(),
        supersedable=False,
        snapshot_format=fmt,
    )
    future = _WRITER.submit(job)
    _WRITER.note_result_format(path, fmt, job.seq)
    return future


def wait_for_saves(timeout: float | None = None) -> None:
    """Waits until every background save made before this call is written, and every save
    of this process in the ``deferred`` durability mode (background or not) is on the disk.

    Raises:
        TimeoutError: If ``timeout`` seconds pass first (the deferred fsyncs are then not
            waited for).
        Exception: The error of a background save that failed and that nobody retrieved from
            its Future (raised once).
        OSError: A deferred fsync that failed (see ``_durability.flush``).
    """
    _WRITER.wait(timeout)
    _WRITER.raise_unobserved()
    _durability.flush()


def _drain_at_exit() -> None:
    thread = _WRITER.thread
    if thread is None or not thread.is_alive():
        return
    try:
        _WRITER.wait(None)
    except BaseException:  # the interpreter is exiting
        return
    with _WRITER.cond:
        failures = [f for f in _WRITER.failures if not f.observed]
        _WRITER.failures.clear()
    for failure in failures:
        exc = failure.exception
        print(
            f"jobpersist: a background save failed: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )


atexit.register(_drain_at_exit)
