"""Safe mode (``allow_pickle="safe"``) against hostile pickles: each case of ``_safe_corpus``
is refused with ``UnsafePickleError`` or fails as damaged, for the reason ``EXPECTED`` gives,
from bytes and from a stream, and runs nothing, as an audit hook proves; mutated valid pickles
let only the documented exceptions out; a bug in the loader surfaces as ``SafeLoaderBug``,
never as a refusal or a damaged file."""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _safe_corpus import CORPUS, EXPECTED, REFUSED, Trickle
from hypothesis import given
from hypothesis import strategies as st
from support.backends import pennylane_available
from support.jobenv import JobEnv, child_env
from support.values import canon

import jobpersist
from jobpersist import UnsafePickleError
from jobpersist._pickle import safe as _safe_unpickle
from jobpersist._pickle.policy import safe_unpickle_stream, safe_unpickle_value
from jobpersist._pickle.safe import SafeLoaderBug, safe_load_stream, safe_loads

F = jobpersist.PersistedJobDataFormat
# Refused by the tensor's constructor, once pennylane.numpy.tensor is imported.
NEEDS_PENNYLANE = {"tensor with requires_grad str", "tensor without requires_grad"}


def test_corpus_size() -> None:
    # The report quotes these figures.
    assert len(REFUSED) >= 300 and len(CORPUS) - len(REFUSED) >= 20


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_corpus_refused(name: str) -> None:
    data = CORPUS[name]
    from_bytes, from_stream = EXPECTED[name]
    if name in NEEDS_PENNYLANE and not pennylane_available():
        # The tensor class cannot be imported: a value that cannot be loaded here.
        from_bytes = from_stream = ("damaged", "^it needs pennylane.numpy.tensor.tensor, which")
    else:
        assert (name in REFUSED) == (from_bytes[0] == from_stream[0] == "refused")
    _check_outcome(from_bytes, lambda: safe_loads("weights", data))
    # The same from a stream (values over 1 MiB of base64 are read as they are decoded).
    _check_outcome(from_stream, lambda: safe_load_stream("weights", Trickle(data), len(data)))
    # Through the API every failure is a ValueError naming the key.
    if from_bytes[0] != "loaded":
        with pytest.raises(ValueError, match="'weights'"):
            safe_unpickle_value("weights", data)


def _check_outcome(expected: tuple[str, str], load: Callable[[], Any]) -> None:
    """``load()`` loads, or raises the error ``expected`` names for the reason it gives."""
    kind, pattern = expected
    if kind == "loaded":
        load()
        return
    with pytest.raises(pickle.UnpicklingError) as info:
        load()
    message = str(info.value)
    if kind == "refused":
        assert type(info.value) is UnsafePickleError, message
        prefix = (
            "Refused to unpickle the value of key 'weights' in safe mode (allow_pickle=\"safe\"): "
        )
        assert message.startswith(prefix), message
        reason, _, rest = message[len(prefix) :].partition(". Safe mode loads plain data only")
        assert rest.endswith("`jobpersist inspect FILE` shows what its pickles would import.")
        assert "allow_pickle=True" in rest
        assert isinstance(info.value, ValueError)
    else:
        assert kind == "damaged"
        assert type(info.value) is pickle.UnpicklingError, message  # not a refusal
        reason = message
    assert re.search(pattern, reason), (pattern, reason)


def test_refusal_names_every_offending_global() -> None:
    data = pickle.dumps([Path("x"), np.random.default_rng(0)], protocol=4)
    with pytest.raises(UnsafePickleError) as info:
        safe_loads("k", data)
    message = str(info.value)
    # Python 3.13 pickles paths as pathlib._local.PosixPath.
    path_type = type(Path("x"))
    assert f"{path_type.__module__}.{path_type.__qualname__}" in message
    assert "numpy.random._pickle" in message


def test_huge_lengths_allocate_nothing() -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name in ("BINBYTES8 of 2**60 bytes", "LONG4 of 2**31-1 bytes", "array huge shape"):
        with pytest.raises(pickle.UnpicklingError):
            safe_loads("k", CORPUS[name])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB


AUDIT_CHILD = textwrap.dedent(
    """
    import sys, pickle
    sys.path.insert(0, sys.argv[1])
    import numpy
    import jobpersist._pickle.inspect  # imported on a refusal, to name the globals
    from jobpersist._pickle import safe as _safe_unpickle
    from _safe_corpus import CORPUS
    _safe_unpickle._load_numpy()
    try:
        _safe_unpickle._load_tensor()
    except ImportError:
        pass
    WATCHED = ("import", "exec", "compile", "os.system", "subprocess.Popen", "open",
               "os.exec", "os.posix_spawn", "os.spawn", "ctypes.dlopen", "pickle.find_class",
               "marshal.loads", "code.__new__", "function.__new__")
    events = []
    armed = False
    def hook(event, args):
        if armed and event.startswith(WATCHED):
            events.append(event)
    sys.addaudithook(hook)
    outcomes = {}
    armed = True
    for name, data in CORPUS.items():
        try:
            _safe_unpickle.safe_loads("k", data)
            outcomes[name] = "loaded"
        except pickle.UnpicklingError as exc:
            outcomes[name] = type(exc).__name__
    armed = False
    print(len(outcomes), sorted(set(events)))
    """
)


@pytest.mark.slow
def test_audit_hook_sees_nothing_run(tmp_path: Path) -> None:
    # Audit hooks cannot be removed: the corpus runs in a child process.
    script = tmp_path / "child.py"
    script.write_text(AUDIT_CHILD)
    proc = subprocess.run(
        [sys.executable, str(script), str(Path(__file__).parent)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == str(len(CORPUS))
    assert proc.stdout.strip().endswith("[]"), proc.stdout


def _envelope(path: Path, values: dict[str, bytes]) -> Path:
    data = {k: base64.encodebytes(v).decode() for k, v in values.items()}
    path.write_text(
        json.dumps(
            {
                "braketSchemaHeader": {
                    "name": "braket.jobs_data.persisted_job_data",
                    "version": "1",
                },
                "dataDictionary": data,
                "dataFormat": "pickled_v4",
            }
        )
    )
    return path


@pytest.mark.parametrize(
    "name",
    ["os.system by STACK_GLOBAL", "BUILD on OrderedDict (setattr)", "object array"],
)
def test_hostile_files_refused_on_both_paths(backend: str, job_env: JobEnv, name: str) -> None:
    # Small values are decoded whole; a value over 1 MiB of base64 streams from the reader.
    padding = b"\x00" * (1 << 20)
    streamed = CORPUS[name][:-1] + b"0" + binbytes_value(padding) + b"0" + CORPUS[name][-1:]
    for data in (CORPUS[name], streamed):
        _envelope(job_env.checkpoint_path, {"good": pickle.dumps(1.5, protocol=4), "evil": data})
        with pytest.raises(UnsafePickleError, match="'evil'"):
            jobpersist.load_job_checkpoint(allow_pickle="safe")


def binbytes_value(data: bytes) -> bytes:
    return b"B" + len(data).to_bytes(4, "little") + data


VALID = [
    pickle.dumps(value, protocol=4)
    for value in (
        {"w": np.arange(6.0).reshape(2, 3), "s": np.float32(2), "c": [1 + 2j, {1, 2}]},
        np.asfortranarray(np.arange(12, dtype=">i4").reshape(3, 4)),
        (1, "two", b"three", None, True, 2.5),
    )
]


def _mutated(which: int, edits: list[tuple[int, int]], cut: int) -> bytes:
    """VALID[which] with bytes overwritten and, for one cut in three, truncated."""
    data = bytearray(VALID[which])
    for at, byte in edits:
        data[at % len(data)] = byte
    return bytes(data[: max(1, cut % (len(data) + 1))] if cut % 3 == 0 else data)


@given(
    which=st.integers(0, len(VALID) - 1),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
)
def test_fuzz_only_documented_exceptions(
    which: int, edits: list[tuple[int, int]], cut: int
) -> None:
    data = _mutated(which, edits, cut)
    try:
        safe_loads("k", data)
    except pickle.UnpicklingError:
        pass  # UnsafePickleError is one too; a SafeLoaderBug (a RuntimeError) fails the test
    try:
        safe_unpickle_value("k", data)
    except ValueError:
        pass  # UnsafePickleError, or a damaged pickle: both are ValueErrors naming the key


# --------------------------------------------------------------------------------------------
# The stream path (values over 1 MiB of base64 are read as they are decoded)
# --------------------------------------------------------------------------------------------
@given(
    which=st.integers(0, len(VALID) - 1),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
)
def test_fuzz_stream_only_documented_exceptions(
    which: int, edits: list[tuple[int, int]], cut: int
) -> None:
    data = _mutated(which, edits, cut)
    try:
        safe_load_stream("k", Trickle(data), len(data))
    except pickle.UnpicklingError:
        pass  # UnsafePickleError is one too


# --------------------------------------------------------------------------------------------
# A bug in the safe loader is reported as one: never as a refusal or as a damaged file
# --------------------------------------------------------------------------------------------
def _break_handler(monkeypatch: pytest.MonkeyPatch, opcode: int, error: Exception) -> None:
    """Makes the handler of ``opcode`` fail as a mistake in it would."""

    def broken(loader: Any, data: bytes, pos: int) -> int:
        raise error

    handlers = list(_safe_unpickle._HANDLERS)
    handlers[opcode] = broken
    monkeypatch.setattr(_safe_unpickle, "_HANDLERS", tuple(handlers))


# A list holding an array: its pickle names globals (STACK_GLOBAL, 0x93, which only its
# handler reads), so the interpreter runs it from bytes too.
BUGGED = pickle.dumps([np.arange(3.0)], protocol=4)


@pytest.mark.parametrize(
    "error", [IndexError("list index out of range"), KeyError(5), TypeError("unhashable")]
)
def test_internal_error_is_a_bug(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    # The exceptions a damaged stream makes pickle raise, raised where no damage explains them.
    _break_handler(monkeypatch, 0x93, error)
    assert 0x93 in BUGGED
    loads = [
        lambda: safe_loads("k", BUGGED),
        lambda: safe_load_stream("k", Trickle(BUGGED), len(BUGGED)),
        lambda: safe_unpickle_value("k", BUGGED),
        lambda: safe_unpickle_stream("k", Trickle(BUGGED), ValueError, len(BUGGED)),
    ]
    for load in loads:
        with pytest.raises(SafeLoaderBug) as info:
            load()
        assert not isinstance(info.value, (pickle.PickleError, ValueError))
        assert isinstance(info.value, RuntimeError)
        assert info.value.__cause__ is error
        assert "a bug in jobpersist" in str(info.value) and "'k'" in str(info.value)


def test_internal_error_deep_in_a_constructor_is_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(pending: Any, state: Any) -> Any:
        raise AttributeError("'NoneType' object has no attribute 'shape'")

    monkeypatch.setattr(_safe_unpickle, "_build_array", broken)
    for load in (
        lambda: safe_loads("k", BUGGED),
        lambda: safe_load_stream("k", Trickle(BUGGED), len(BUGGED)),
    ):
        with pytest.raises(SafeLoaderBug) as info:
            load()
        assert type(info.value.__cause__) is AttributeError


def test_internal_error_reaches_the_caller_of_a_load(
    backend: str, job_env: JobEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From a file, small (decoded whole) and big (streamed) values alike: not a ValueError.
    big = pickle.dumps([np.arange(3.0), b"\x00" * (1 << 20)], protocol=4)
    for data in (BUGGED, big):
        _envelope(job_env.checkpoint_path, {"v": data})
        assert canon(jobpersist.load_job_checkpoint(allow_pickle="safe")["v"]) == canon(
            pickle.loads(data)
        )
        with monkeypatch.context() as patch:
            _break_handler(patch, 0x93, IndexError("list index out of range"))
            with pytest.raises(SafeLoaderBug):
                jobpersist.load_job_checkpoint(allow_pickle="safe")


def test_reader_errors_keep_their_meaning() -> None:
    # What the stream's reader raises is about the file: its own errors and OSError pass as
    # they are, any other makes the value a damaged one; none is taken for a bug.
    class Failing(io.BytesIO):
        def __init__(self, error: Exception) -> None:
            super().__init__(BUGGED)
            self.error = error

        def read(self, size: int | None = -1, /) -> bytes:
            raise self.error

    class CodecError(ValueError):
        pass

    with pytest.raises(CodecError):
        safe_load_stream("k", Failing(CodecError("bad base64")), len(BUGGED), CodecError)
    with pytest.raises(OSError, match="disk"):
        safe_load_stream("k", Failing(OSError(5, "disk")), len(BUGGED), CodecError)
    with pytest.raises(pickle.UnpicklingError, match=r"^FrameError: ") as info:
        safe_load_stream("k", Failing(FrameError(5, 1 << 17)), len(BUGGED), CodecError)
    assert type(info.value) is pickle.UnpicklingError
    assert type(info.value.__cause__) is FrameError


class FrameError(ValueError):
    """Stands for a codec's FrameError (a reader's ValueError about the file's bytes)."""


# --------------------------------------------------------------------------------------------
# inspect and verify --safe-only share the loader's allow-list
# --------------------------------------------------------------------------------------------
def test_inspect_classifies_by_the_loaders_allow_list() -> None:
    from _safe_corpus import DANGEROUS_GLOBALS

    from jobpersist._pickle.inspect import classify
    from jobpersist._pickle.safe import ALLOWED_GLOBALS

    for module, names in ALLOWED_GLOBALS.items():
        for name in names:
            assert classify(module, name) == "safe"
    for module, name in DANGEROUS_GLOBALS:
        assert classify(module, name) != "safe", (module, name)


def test_verify_safe_only_runs_the_loader(
    job_env: JobEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobpersist import cli

    jobpersist.save_job_checkpoint({"w": np.arange(5.0)}, data_format=F.PICKLED_V4)
    good = str(job_env.checkpoint_path)
    # Every global it names is allowed, but it uses BUILD as setattr: only loading tells.
    evil = _envelope(tmp_path / "evil.json", {"x": CORPUS["BUILD on OrderedDict (setattr)"]})
    assert cli.main(["verify", good, str(evil)]) == 0
    assert cli.main(["verify", "--safe-only", good]) == 0
    capsys.readouterr()
    assert cli.main(["verify", "--safe-only", good, str(evil)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("OK") and "FAIL" in out and "safe mode refuses it" in out


def test_patched_braket_loads_safe_by_environment(job_env: JobEnv) -> None:
    # Unchanged Braket code, default arguments: JOBPERSIST_ALLOW_PICKLE=safe applies.
    from support.jobenv import environ

    jobpersist.save_job_checkpoint({"w": np.arange(3.0)}, data_format=F.PICKLED_V4)
    with jobpersist.patch_braket():
        from braket.jobs import load_job_checkpoint

        with pytest.raises(RuntimeError):
            load_job_checkpoint()
        with environ(JOBPERSIST_ALLOW_PICKLE="safe"):
            assert np.array_equal(load_job_checkpoint()["w"], np.arange(3.0))
