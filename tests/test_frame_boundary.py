"""Pickles whose opcodes cross the end of a FRAME: read as ``pickle.loads`` reads them, or refused.

``pickle.loads`` ignores frames; ``pickle.Unpickler(file).load()`` reads a frame into a buffer
and drops what an opcode leaves of it when its argument runs past the frame's end, so the two
can run different opcodes (CPython issue #154848). jobpersist's value readers offer ``peek``,
with which CPython reads frames as ``loads`` does; a frame of ``PEEK_SIZE`` bytes or more it
reads whole with ``read(n)``, and such a frame crossed by an opcode is refused.

Every case is built here from that description: each opcode kind cut at its first argument
byte, a FRAME header cut, a frame inside a frame, and a pickle that runs ``os.system`` when read
from a file but returns None from ``loads``. Each runs through every load path of both
backends, in a small and a large frame, stored as it is and padded past the streaming
threshold, in a child process whose audit hook blocks and records any call of the system.
"""

from __future__ import annotations

import base64
import json
import pickle
import pickletools
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.backends import require_backend
from support.jobenv import child_env

from jobpersist import _codec
from jobpersist._codec.python import pickle_frame as _pickle_frame
from jobpersist._pickle.policy import unpickle_stream, unpickle_value
from jobpersist._pickle.safe import UnsafePickleError, safe_loads
from jobpersist.cli import main as cli_main

PEEK = _pickle_frame.PEEK_SIZE
REFUSAL = "crosses the end of a FRAME"


def _frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


def _le(n: int, width: int) -> bytes:
    return n.to_bytes(width, "little")


# name -> (opcodes before the cut opcode, the cut opcode with its argument, opcodes after it).
# Each pickle leaves one plain value on the stack, so safe mode loads what loads returns.
_S = b"hello world"
_EVIL = b"0cos\nsystem\n(Vtrue\ntR."  # pop the string, os.system("true")
OPCODES: dict[str, tuple[bytes, bytes, bytes]] = {
    "SHORT_BINUNICODE": (b"", b"\x8c" + _le(len(_S), 1) + _S, b""),
    "BINUNICODE": (b"", b"X" + _le(len(_S), 4) + _S, b""),
    "BINUNICODE8": (b"", b"\x8d" + _le(len(_S), 8) + _S, b""),
    "UNICODE": (b"", b"V" + _S + b"\n", b""),
    "SHORT_BINSTRING": (b"", b"U" + _le(len(_S), 1) + _S, b""),
    "BINSTRING": (b"", b"T" + _le(len(_S), 4) + _S, b""),
    "STRING": (b"", b"S'" + _S + b"'\n", b""),
    "SHORT_BINBYTES": (b"", b"C" + _le(len(_S), 1) + _S, b""),
    "BINBYTES": (b"", b"B" + _le(len(_S), 4) + _S, b""),
    "BINBYTES8": (b"", b"\x8e" + _le(len(_S), 8) + _S, b""),
    "BYTEARRAY8": (b"", b"\x96" + _le(len(_S), 8) + _S, b""),
    "BINFLOAT": (b"", b"G" + struct.pack(">d", 1.5), b""),
    "BININT": (b"", b"J" + _le(123456789, 4), b""),
    "BININT1": (b"", b"K\x07", b""),
    "BININT2": (b"", b"M" + _le(3000, 2), b""),
    "LONG1": (b"", b"\x8a\x02" + _le(1000, 2), b""),
    "LONG4": (b"", b"\x8b" + _le(2, 4) + _le(1000, 2), b""),
    "INT": (b"", b"I123456\n", b""),
    "LONG": (b"", b"L123456L\n", b""),
    "FLOAT": (b"", b"F2.25\n", b""),
    "GLOBAL": (b"", b"cbuiltins\nset\n", b")\x85R"),
    "BINGET": (b"\x8c\x01xq\x00", b"h\x00", b"\x86"),
    "LONG_BINGET": (b"\x8c\x01xr" + _le(0, 4), b"j" + _le(0, 4), b"\x86"),
    "GET": (b"\x8c\x01xp0\n", b"g0\n", b"\x86"),
    "PUT": (b"\x8c\x01x", b"p0\n", b""),
    "LONG_BINPUT": (b"\x8c\x01x", b"r" + _le(0, 4), b""),
    "FRAME": (b"", _frame(b"K\x05"), b""),
    # loads: a string of 40 bytes, then POP NONE STOP (None). A file reader drops the ten
    # bytes of the string inside the frame, takes 40 from after it, and runs _EVIL.
    "divergence": (b"", b"X" + _le(40, 4) + b"D" * 40, b"0N." + b"x" * 10 + _EVIL),
}


PAD = 900_000


def _filler(size: int) -> bytes:
    """``size`` bytes of opcodes that leave the stack as it was: a bytes value and POP."""
    return b"B" + _le(size - 6, 4) + b"f" * (size - 6) + b"0"


def crafted(name: str, frame_size: int, padded: bool) -> bytes:
    """The case ``name``: its opcode cut after the opcode byte (for the divergence case: ten
    bytes into the string) at the end of a frame of ``frame_size`` bytes; ``padded``: after
    a 900 kB bytes value that is popped, so the value is streamed."""
    before, op, after = OPCODES[name]
    cut = {"divergence": 15, "FRAME": 4}.get(name, 1)
    inside = before + op[:cut]
    body = _filler(frame_size - len(inside)) + inside
    # Past the streaming threshold (1 MiB of base64 text).
    pad = b"\x8e" + _le(PAD, 8) + b"p" * PAD + b"0" if padded else b""
    return b"\x80\x04" + pad + _frame(body) + op[cut:] + after + b"."


def _ops(data: bytes) -> list[tuple[str, Any, int]]:
    """The opcodes of ``data`` as pickletools reads them: (name, argument, offset)."""
    return [(op.name, arg, pos or 0) for op, arg, pos in pickletools.genops(data)]


def _envelope(payload: bytes) -> bytes:
    doc = {
        "braketSchemaHeader": {"name": "braket.jobs_data.persisted_job_data", "version": "1"},
        "dataDictionary": {"v": base64.encodebytes(payload).decode()},
        "dataFormat": "pickled_v4",
    }
    return json.dumps(doc).encode()


VARIANTS = [(size, padded) for size in (1000, PEEK + 100) for padded in (False, True)]


def test_the_cases_cross_their_frame_and_read_as_meant() -> None:
    for name in OPCODES:
        for size, padded in VARIANTS:
            data = crafted(name, size, padded)
            frames = [(pos, arg) for name, arg, pos in _ops(data) if name == "FRAME"]
            assert frames[0][1] == size, (name, size)
            assert _pickle_frame.frame_crossing(data[frames[0][0] + 9 :][: frames[0][1]])
    assert pickle.loads(crafted("divergence", 1000, True)) is None
    assert pickle.loads(crafted("UNICODE", 1000, False)) == "hello world"


CHILD = textwrap.dedent(
    """
    import base64, json, os, sys
    from pathlib import Path
    os.environ["AMZN_BRAKET_CHECKPOINT_DIR"] = sys.argv[2]
    os.environ["AMZN_BRAKET_JOB_NAME"] = "job"
    os.environ["AMZN_BRAKET_JOB_RESULTS_DIR"] = sys.argv[2]
    import jobpersist
    assert jobpersist.BACKEND == os.environ["JOBPERSIST_BACKEND"], jobpersist.BACKEND
    from jobpersist import PersistedJobDataFormat, deserialize_values
    events = []
    def hook(event, args):
        if event.startswith(("os.system", "subprocess.Popen", "os.exec", "os.posix_spawn")):
            events.append(event)
            raise RuntimeError("blocked by the test's audit hook")
    sys.addaudithook(hook)
    directory = Path(sys.argv[2])
    out = {}
    for case in json.loads(Path(sys.argv[1]).read_text()):
        text = base64.b64decode(case["envelope"])
        (directory / "job.json").write_bytes(text)
        (directory / "results.json").write_bytes(text)
        doc = json.loads(text)
        paths = {
            "checkpoint": lambda mode: jobpersist.load_job_checkpoint(allow_pickle=mode),
            "result": lambda mode: jobpersist.load_job_result(allow_pickle=mode),
            "deserialize": lambda mode: deserialize_values(
                doc["dataDictionary"], PersistedJobDataFormat.PICKLED_V4, mode
            ),
        }
        for path, load in paths.items():
            for mode in (True, "safe"):
                key = f"{case['label']}|{path}|{mode}"
                try:
                    out[key] = ["value", repr(load(mode)["v"])]
                except Exception as exc:
                    out[key] = ["error", type(exc).__name__, str(exc)]
    print(json.dumps({"events": events, "outcomes": out}))
    """
)


@pytest.mark.slow
def test_every_load_path_reads_as_loads_or_refuses(backend_name: str, tmp_path: Path) -> None:
    cases, expected = [], {}
    for name in OPCODES:
        for size, padded in VARIANTS:
            data = crafted(name, size, padded)
            label = f"{name}/{size}/{'padded' if padded else 'as-is'}"
            cases.append({"label": label, "envelope": base64.b64encode(_envelope(data)).decode()})
            loaded = ["value", repr(pickle.loads(data))]
            expected[label] = (loaded, _safe_outcome(_unframed(data)), padded and size >= PEEK)
    spec = tmp_path / "cases.json"
    spec.write_text(json.dumps(cases))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    work = tmp_path / "job"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script), str(spec), str(work)],
        env=child_env(backend_name),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["events"] == []
    for key, outcome in report["outcomes"].items():
        label, path, mode = key.split("|")
        loaded, safe, refused_when_streamed = expected[label]
        # Only a full unpickling streams through pickle.Unpickler; safe mode reads every
        # pickle itself, as loads does (frames or not); deserialize_values never streams.
        if mode == "safe":
            assert outcome[:2] == safe, key
        elif refused_when_streamed and path != "deserialize":
            assert outcome[0] == "error" and outcome[1] == "ValueError", (key, outcome)
            assert REFUSAL in outcome[2] and "'v'" in outcome[2], (key, outcome)
        else:
            assert outcome == loaded, key


def _unframed(data: bytes) -> bytes:
    """``data`` without its FRAME opcodes: what loads reads in it."""
    cuts = [pos for name, _, pos in _ops(data) if name == "FRAME"]
    for pos in reversed(cuts):
        data = data[:pos] + data[pos + 9 :]
    return data


def _safe_outcome(data: bytes) -> list[str]:
    try:
        return ["value", repr(safe_loads("v", data))]
    except UnsafePickleError:
        return ["error", "UnsafePickleError"]


@pytest.mark.parametrize("size", [1000, PEEK + 100])
def test_inspect_and_verify_read_as_the_loader(
    size: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "crafted.json"
    path.write_bytes(_envelope(crafted("divergence", size, padded=False)))
    assert cli_main(["inspect", "--json", str(path)]) == 1
    report = json.loads(capsys.readouterr().out)
    # The globals are those loads would import: none (os.system lies past STOP).
    assert report["unsafe_globals"] == []
    assert any(REFUSAL in problem for problem in report["problems"]), report
    assert cli_main(["verify", "--safe-only", str(path)]) == 1
    assert REFUSAL in capsys.readouterr().out
    # The same bytes, written by CPython's pickler: nothing to report.
    path.write_bytes(_envelope(pickle.dumps(["x" * size, 1.5], protocol=4)))
    assert cli_main(["verify", "--safe-only", str(path)]) == 0


# --------------------------------------------------------------------------------------------
# Property tests: the streamed reading equals pickle.loads for real pickles, and for pickles
# re-framed at random places it equals loads or refuses exactly the large crossed frames.
# --------------------------------------------------------------------------------------------
def _stream_load(tmp_path: Path, payload: bytes) -> Any:
    path = tmp_path / "value.json"
    path.write_bytes(_envelope(payload))
    codec = _codec.CODEC
    file = codec.read_file(str(path))
    scanned = file.scan_pickled()
    assert scanned is not None
    reader = file.value_reader(*scanned[1][0])
    return unpickle_stream("v", reader, codec.DecodeError, codec.FrameError)


_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=40),
)
_big = st.sampled_from([0, 1, 70_000, PEEK - 20, PEEK + 30, 300_000]).map(lambda n: "z" * n)
_values = st.recursive(
    st.one_of(_leaf, _big),
    lambda inner: st.one_of(
        st.lists(inner, max_size=8),
        st.dictionaries(st.text(max_size=8), inner, max_size=8),
        st.tuples(inner, inner),
    ),
    max_leaves=40,
)


@pytest.mark.usefixtures("backend")
@given(value=_values, protocol=st.integers(min_value=2, max_value=5))
def test_real_pickles_stream_as_loads_reads_them(
    tmp_path_factory: pytest.TempPathFactory, value: Any, protocol: int
) -> None:
    payload = pickle.dumps(value, protocol=protocol)
    expected = pickle.loads(payload)
    tmp = tmp_path_factory.mktemp("real")
    assert repr(_stream_load(tmp, payload)) == repr(expected)
    assert repr(unpickle_value("v", payload)) == repr(expected)


@st.composite
def _reframed(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bool]]]:
    """A protocol 3 pickle (no frames) with FRAME opcodes put in at random opcode starts,
    each covering a random length; and each frame's (length, whether its end is an opcode
    start), worked out from pickletools' positions."""
    value = draw(_values)
    plain = pickle.dumps(value, protocol=3)
    starts = [pos for _, _, pos in _ops(plain)]
    stop = starts[-1]  # STOP: frames end at or before it
    out, frames, at = [plain[:2]], [], 2
    for start in sorted(set(draw(st.lists(st.sampled_from(starts[1:]), max_size=4)))):
        if start < at or start >= stop:
            continue
        end = draw(st.integers(min_value=start + 1, max_value=stop))
        out += [plain[at:start], b"\x95", _le(end - start, 8), plain[start:end]]
        frames.append((end - start, end in starts))
        at = end
    out.append(plain[at:])
    return b"".join(out), frames


@pytest.mark.usefixtures("backend")
@given(case=_reframed())
def test_reframed_pickles_read_as_loads_or_are_refused(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[bytes, list[tuple[int, bool]]]
) -> None:
    payload, frames = case
    expected = pickle.loads(payload)
    refused = any(length >= PEEK and not clean for length, clean in frames)
    tmp = tmp_path_factory.mktemp("reframed")
    if refused:
        with pytest.raises(ValueError, match=REFUSAL):
            _stream_load(tmp, payload)
    else:
        assert repr(_stream_load(tmp, payload)) == repr(expected)


@pytest.mark.usefixtures("backend")
def test_a_large_real_frame_reads_whole(tmp_path: Path) -> None:
    # CPython's pickler can end a frame just past PEEK_SIZE (a frame of nearly 64 KiB, then
    # a string just under 64 KiB): such a frame is read with read(n), checked, and accepted.
    value = ["a" * 65_525, "b" * 65_535, "c"]
    payload = pickle.dumps(value, protocol=4)
    sizes = [arg for name, arg, _ in _ops(payload) if name == "FRAME"]
    assert max(sizes) >= PEEK
    assert _stream_load(tmp_path, payload) == value


def test_the_peek_size_is_one_fact() -> None:
    require_backend("native")
    from jobpersist import _native

    assert _native.PICKLE_PEEK_SIZE == PEEK
