"""Plaintext conversion never touches interpreter-wide state.

The conversion walk used to raise ``sys.setrecursionlimit`` for its deep walks and restore the
value it had seen. Threads interleave, so the limit leaked upward and could drop under a thread
still deep in its walk (a spurious "nested too deeply" for valid data). These tests save, from
many threads at once, values that need conversion and values nested up to ``MAX_DEPTH``, and
check that the limit never moves and that every valid save succeeds.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from support.jobenv import JobEnv
from support.threads import run_threads

import jobpersist
from jobpersist import _codec
from jobpersist._format.conversion import convert_subtree
from jobpersist._format.schema import MAX_DEPTH

# Subprocesses, large saves or many rounds: `make test-quick` leaves these out.
pytestmark = pytest.mark.slow

F = jobpersist.PersistedJobDataFormat
THREADS = 8


class MyList(list):  # type: ignore[type-arg]
    """A list subclass: the walker (not the native encoder) converts it, and what is inside."""


def encode(value: Any) -> bytes:
    """The JSON text of ``value`` under key "k", by the backend in use."""
    return _codec.CODEC.encode_json("k", value, convert_subtree)


def nest(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def deepest_valid(depth: int = MAX_DEPTH) -> Any:
    # MyList at the top: on the native backend the Python walker converts the whole value,
    # ``depth`` containers deep (the MyList is one of them).
    return MyList([nest(depth - 1)])


def test_threads_converting_leave_recursion_limit_alone(backend: str, job_env: JobEnv) -> None:
    limit = sys.getrecursionlimit()
    seen: set[int] = set()
    data = {
        "a": set(range(20_000)),
        "b": frozenset(range(5_000)),
        "deep": deepest_valid(),
        "mixed": [{"s": {1, 2}}, MyList([MyList([3])])],
    }
    expected = json.dumps(
        {
            "a": sorted(data["a"]),
            "b": sorted(data["b"]),
            "deep": [nest(MAX_DEPTH - 1)],
            "mixed": [{"s": [1, 2]}, [[3]]],
        }
    )[1:-1]

    def work(index: int) -> None:
        for round_ in range(6):
            seen.add(sys.getrecursionlimit())
            suffix = f"t{index}-{round_}"
            jobpersist.save_job_checkpoint(data, suffix, F.PLAINTEXT)
            seen.add(sys.getrecursionlimit())
            text = job_env.checkpoint_file(suffix).read_text()
            assert expected in text, "the file lost part of the value"

    run_threads(work, THREADS)
    assert sys.getrecursionlimit() == limit
    assert seen == {limit}, f"the recursion limit moved during the saves: {sorted(seen)}"


def test_deep_values_from_many_threads_are_never_refused(backend: str, job_env: JobEnv) -> None:
    # The nesting limit is a property of the data, not of whatever other threads do.
    value = deepest_valid()

    def work(index: int) -> None:
        for round_ in range(15):
            text = encode(value)
            assert text == b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH
            with pytest.raises(ValueError, match=f"deeper than {MAX_DEPTH} levels"):
                encode([value])
            if round_ % 5 == 0:
                jobpersist.save_job_checkpoint(
                    {"v": value, "s": set(range(1000))}, f"d{index}-{round_}", F.PLAINTEXT
                )

    limit = sys.getrecursionlimit()
    run_threads(work, THREADS)
    assert sys.getrecursionlimit() == limit


def test_deep_values_from_a_deep_caller(backend: str) -> None:
    # The limit where conversion refuses data does not depend on the caller's own stack.
    value = deepest_valid()
    limit = sys.getrecursionlimit()
    outcomes: list[bytes | BaseException] = []

    def descend(levels: int) -> None:
        if levels:
            descend(levels - 1)
            return
        for item in (value, {"s": {1}, "v": deepest_valid(MAX_DEPTH - 1)}):
            try:
                outcomes.append(encode(item))
            except BaseException as exc:
                outcomes.append(exc)

    # Leave about 60 frames of the limit to the save itself (the walk needs MAX_DEPTH).
    depth = limit - 60 - len(_frames())
    descend(depth)
    assert sys.getrecursionlimit() == limit
    bad = [o for o in outcomes if isinstance(o, BaseException)]
    assert not bad, f"refused from a deep caller: {bad[0]!r}"
    assert outcomes[0] == b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH


def _frames() -> list[Any]:
    frames = []
    frame = sys._getframe()
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    return frames


def test_conversion_never_sets_the_recursion_limit(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(limit: int) -> None:
        raise AssertionError(f"sys.setrecursionlimit({limit}) called by a library")

    monkeypatch.setattr(sys, "setrecursionlimit", refuse)
    value = {"deep": deepest_valid(MAX_DEPTH - 1), "set": {1, 2}, "mine": MyList([{"a": (1,)}])}
    assert encode(value) == json.dumps(
        {"deep": [nest(MAX_DEPTH - 2)], "set": [1, 2], "mine": [{"a": [1]}]}
    ).encode("ascii")


def deep_mixed(depth: int, leaf: Any = 1.5) -> Any:
    """``depth`` levels of dicts and lists, every level with keys json.dumps converts, and
    siblings on both sides of the way down."""
    value: Any = {"leaf": leaf}
    for level in range(depth - 1):
        if level % 2:
            value = [level, value, {"x": [level]}, []]
        else:
            value = {1.5: value, level: {}, None: "n\u00e9", False: level / 3, "s\U0001f600": True}
    return value


@pytest.mark.parametrize("depth", [31, 32, 33, 40, MAX_DEPTH])
def test_deep_values_have_json_dumps_bytes(backend: str, depth: int) -> None:
    # Deep converted values are laid out above json.dumps's reach: the bytes must not change.
    value = deep_mixed(depth)
    expected = json.dumps(value).encode("ascii")  # the test's own stack is shallow
    assert encode(value) == expected
    # MyList: converted by the walker (native backend too), then laid out.
    wrapped = MyList([deep_mixed(depth - 1)])
    assert encode(wrapped) == json.dumps([deep_mixed(depth - 1)]).encode()


def test_too_deep_and_huge_ints_in_deep_values(backend: str) -> None:
    with pytest.raises(ValueError, match=f"deeper than {MAX_DEPTH} levels"):
        encode(MyList([deep_mixed(MAX_DEPTH)]))
    if not hasattr(sys, "get_int_max_str_digits"):
        return
    huge = 10 ** (sys.get_int_max_str_digits() + 1)
    for value in (deep_mixed(100, leaf=huge), MyList([deep_mixed(100, leaf=huge)])):
        # json.dumps's own error, after the conversion, as for shallow values.
        with pytest.raises(ValueError, match="digits"):
            encode(value)
