"""``jobpersist bench``: save/load timings of the native backend, the pure-Python fallback and
the reference, as a table with ratios (the chart is drawn by ``cli.plot``).

Progress bars use tqdm or rich and the chart matplotlib, when they are installed
(``pip install 'jobpersist[bench]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from jobpersist._environment import job_environment
from jobpersist._format.data_format import PersistedJobDataFormat
from jobpersist._size import SIZE_HELP
from jobpersist.cli._common import CliError, size_argument

DEFAULT_SIZES = ("1M", "16M", "64M")
IMPLEMENTATIONS = ("native", "python", "reference")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: must be at least 1")
    return value


def size_label(size: int) -> str:
    if size % (1 << 20) == 0:
        return f"{size >> 20} MiB"
    if size % (1 << 10) == 0:
        return f"{size >> 10} KiB"
    return f"{size} B"


@dataclasses.dataclass
class Impl:
    name: str
    save: Callable[[dict[str, Any], str, Any], None]
    load: Callable[[str], dict[str, Any]]
    formats: Any  # the PersistedJobDataFormat enum to use
    setup: Callable[[], None] = lambda: None


def _implementations(wanted: Sequence[str], err: TextIO) -> list[Impl]:
    import jobpersist
    from jobpersist import _codec

    found: list[Impl] = []
    for name in wanted:
        if name in ("native", "python"):
            if name == "native":
                try:
                    importlib.import_module("jobpersist._native")
                except ImportError:
                    print("bench: the native backend is not built; skipped", file=err)
                    continue
            found.append(
                Impl(
                    name,
                    lambda d, s, f: jobpersist.save_job_checkpoint(d, s, f),
                    lambda s: jobpersist.load_job_checkpoint(
                        checkpoint_file_suffix=s, allow_pickle=True
                    ),
                    PersistedJobDataFormat,
                    setup=lambda name=name: _codec.use(name),  # type: ignore[misc]
                )
            )
        else:
            try:
                reference = importlib.import_module("braket.jobs.data_persistence")
                formats = importlib.import_module("braket.jobs_data").PersistedJobDataFormat
            except ImportError:
                print(
                    "bench: amazon-braket-sdk is not installed; the reference is skipped",
                    file=err,
                )
                continue
            found.append(
                Impl(
                    "reference",
                    lambda d, s, f, r=reference: r.save_job_checkpoint(d, s, f),  # type: ignore[misc]
                    lambda s, r=reference: r.load_job_checkpoint(  # type: ignore[misc]
                        checkpoint_file_suffix=s, allow_pickle=True
                    ),
                    formats,
                )
            )
    return found


def _payload(size: int, fmt: str) -> Any:
    if fmt == "pickled":
        try:
            import numpy as np
        except ImportError:
            return os.urandom(size)  # pickled as bytes
        return np.random.default_rng(0).random(size // 8)
    # Plaintext: floats, written about 21 bytes each (repr plus ", ").
    import random

    rng = random.Random(0)  # noqa: S311 - benchmark data
    return [rng.random() for _ in range(max(1, size // 21))]


class _Progress:
    """tqdm, else rich, else a plain line per step on stderr."""

    def __init__(self, total: int, err: TextIO, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.err = err
        self.bar: Any = None
        self.rich: Any = None
        self.task: Any = None
        if not enabled:
            return
        try:
            tqdm = importlib.import_module("tqdm").tqdm
            self.bar = tqdm(total=total, file=err, unit="step", leave=False)
            return
        except ImportError:
            pass
        try:
            progress = importlib.import_module("rich.progress")
            self.rich = progress.Progress(transient=True)
            self.rich.start()
            self.task = self.rich.add_task("bench", total=total)
        except ImportError:
            pass

    def step(self, text: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_description(text)
            self.bar.update(1)
        elif self.rich is not None:
            self.rich.update(self.task, advance=1, description=text)
        else:
            print(f"[{self.done}/{self.total}] {text}", file=self.err, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.rich is not None:
            self.rich.stop()


@dataclasses.dataclass
class Timing:
    impl: str
    size: int
    save: float  # seconds, median
    load: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_bench(
    sizes: Sequence[int],
    fmt: str,
    impls: Sequence[Impl],
    rounds: int,
    directory: str,
    err: TextIO,
    progress: bool = True,
) -> list[Timing]:
    """Times one save and one load per round for each size and implementation (medians)."""
    from jobpersist import _codec

    previous = (_codec.BACKEND, _codec.CODEC)
    bar = _Progress(len(sizes) * len(impls) * rounds, err, progress)
    timings: list[Timing] = []
    try:
        with job_environment("jobpersist-bench", directory, directory):
            for impl in impls:  # warm-up: imports, first-call costs
                impl.setup()
                impl.save({"warm": [1.0]}, "warmup", impl.formats.PICKLED_V4)
                impl.load("warmup")
            for size in sizes:
                value = _payload(size, fmt)
                for impl in impls:
                    impl.setup()
                    data_format = (
                        impl.formats.PICKLED_V4 if fmt == "pickled" else impl.formats.PLAINTEXT
                    )
                    suffix = impl.name
                    saves: list[float] = []
                    loads_: list[float] = []
                    for round_ in range(rounds):
                        start = time.perf_counter()
                        impl.save({"payload": value}, suffix, data_format)
                        saves.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        loaded = impl.load(suffix)
                        loads_.append(time.perf_counter() - start)
                        del loaded
                        bar.step(f"{impl.name} {size_label(size)} round {round_ + 1}/{rounds}")
                    timings.append(
                        Timing(impl.name, size, statistics.median(saves), statistics.median(loads_))
                    )
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(directory, f"jobpersist-bench_{suffix}.json"))
                del value
    finally:
        bar.close()
        _codec.BACKEND, _codec.CODEC = previous
    return timings


def machine_summary() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}"
    )


def format_table(timings: Sequence[Timing], fmt: str, rounds: int) -> str:
    names = list(dict.fromkeys(t.impl for t in timings))
    base = "reference" if "reference" in names else ("python" if "python" in names else None)
    by_key = {(t.impl, t.size): t for t in timings}
    from jobpersist._durability import resolve

    lines = [
        f"format {fmt}, median of {rounds} round(s), jobpersist durability {resolve()}; "
        f"{machine_summary()}",
        f"{'size':>8}  {'implementation':<14} {'save ms':>9} {'save MB/s':>10} "
        f"{'load ms':>9} {'load MB/s':>10}"
        + (f"  {'save vs ' + base:>16} {'load vs ' + base:>16}" if base else ""),
    ]
    for t in timings:
        row = (
            f"{size_label(t.size):>8}  {t.impl:<14} {t.save * 1e3:9.1f} "
            f"{t.size / t.save / 1e6:10.1f} {t.load * 1e3:9.1f} {t.size / t.load / 1e6:10.1f}"
        )
        if base:
            ref = by_key.get((base, t.size))
            if ref is not None:
                row += f"  {ref.save / t.save:15.1f}x {ref.load / t.load:15.1f}x"
        lines.append(row)
    return "\n".join(lines)


# ---------------------------------------------------------------- the small cases
#: What users save most: a variational loop's state, every iteration, and a metric merged into
#: the results. (case, label).
SMALL_CASES = (
    ("checkpoint", "checkpoint, plaintext"),
    ("pickled", "checkpoint, pickled (24-float array)"),
    ("merge", "result merge (one key into 50)"),
    ("load", "load, plaintext"),
)
#: The rows of each small case: (implementation, durability mode); jobpersist's default first.
SMALL_ROWS = (
    ("reference", "-"),
    ("native", "deferred"),
    ("python", "deferred"),
    ("native", "full"),
    ("python", "full"),
    ("native", "none"),
    ("python", "none"),
)
SMALL_CALLS = 300


def _small_state(i: int, pickled: bool) -> dict[str, Any]:
    params = [0.1 * k + i for k in range(24)]
    if pickled:
        import numpy as np

        return {"iteration": i, "params": np.array(params), "cost": 1.0 / (i + 1)}
    return {"iteration": i, "params": params, "cost": 1.0 / (i + 1)}


def small_worker(impl: str, case: str, calls: int, pause: float = 0.0) -> dict[str, float]:
    """Times ``calls`` calls of one small case in this (fresh) process: the median call and,
    for jobpersist, the ``wait_for_saves()`` after them (the deferred fsyncs), in seconds.
    With ``pause``, the process sleeps that long after each call, as a loop waiting for its
    quantum tasks does. The job's directories and the mode come from the environment."""
    if impl == "reference":
        module: Any = importlib.import_module("braket.jobs.data_persistence")
        formats: Any = importlib.import_module("braket.jobs_data").PersistedJobDataFormat
    else:
        module = importlib.import_module("jobpersist")
        formats = PersistedJobDataFormat
        wait_for_saves = importlib.import_module("jobpersist.background").wait_for_saves
    times: list[float] = []
    if case == "merge":
        module.save_job_result({f"metric{k}": k / 7 for k in range(49)})
    elif case == "load":
        module.save_job_checkpoint(_small_state(0, False))
    for i in range(calls):
        if case == "load":
            start = time.perf_counter()
            module.load_job_checkpoint()
        elif case == "merge":
            start = time.perf_counter()
            module.save_job_result({"cost": 1.0 / (i + 1)})
        elif case == "pickled":
            data = _small_state(i, True)
            start = time.perf_counter()
            module.save_job_checkpoint(data, "", formats.PICKLED_V4)
        else:
            data = _small_state(i, False)
            start = time.perf_counter()
            module.save_job_checkpoint(data)
        times.append(time.perf_counter() - start)
        if pause:
            time.sleep(pause)
    start = time.perf_counter()
    if impl != "reference":
        wait_for_saves()
    return {"median": statistics.median(times), "flush": time.perf_counter() - start}


def _run_small_worker(
    impl: str, mode: str, case: str, calls: int, directory: str, pause: float
) -> Any:
    env = dict(os.environ)
    for key in ("JOBPERSIST_FSYNC", "JOBPERSIST_DURABILITY", "JOBPERSIST_BACKEND"):
        env.pop(key, None)
    if impl != "reference":
        env["JOBPERSIST_BACKEND"] = impl
        env["JOBPERSIST_DURABILITY"] = mode
    env["AMZN_BRAKET_CHECKPOINT_DIR"] = directory
    env["AMZN_BRAKET_JOB_RESULTS_DIR"] = directory
    env["AMZN_BRAKET_JOB_NAME"] = "jobpersist-bench"
    code = (
        "import json, sys; from jobpersist.cli.bench import small_worker; "
        "print(json.dumps(small_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), "
        "float(sys.argv[4]))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, impl, case, str(calls), str(pause)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CliError(f"bench worker {impl} {mode} {case} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@dataclasses.dataclass
class SmallTiming:
    case: str
    impl: str
    mode: str
    median: float  # seconds: the median over rounds of each process's median call
    flush: float  # seconds: wait_for_saves() after the calls (median over rounds)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_small(
    rows: Sequence[tuple[str, str]],
    rounds: int,
    parent: str | None,
    err: TextIO,
    calls: int = SMALL_CALLS,
    progress: bool = True,
    pause: float = 0.0,
) -> list[SmallTiming]:
    """Times the small cases: each (case, implementation, mode) in a fresh process of
    ``calls`` calls per round (``pause`` seconds apart), the rounds running every row in turn
    (interleaved)."""
    results: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    bar = _Progress(rounds * len(SMALL_CASES) * len(rows), err, progress)
    try:
        for round_ in range(rounds):
            for case, _ in SMALL_CASES:
                for impl, mode in rows:
                    # Every row starts from a quiet disk: the journal commit of the row
                    # before (hundreds of files freed) would otherwise land in this one.
                    os.sync()
                    with tempfile.TemporaryDirectory(
                        prefix="jobpersist-bench-", dir=parent
                    ) as directory:
                        result = _run_small_worker(impl, mode, case, calls, directory, pause)
                    results.setdefault((case, impl, mode), []).append(result)
                    bar.step(f"{case} {impl} {mode} round {round_ + 1}/{rounds}")
    finally:
        bar.close()
    return [
        SmallTiming(
            case,
            impl,
            mode,
            statistics.median(r["median"] for r in runs),
            statistics.median(r["flush"] for r in runs),
        )
        for (case, impl, mode), runs in results.items()
    ]


def format_small_table(
    timings: Sequence[SmallTiming], rounds: int, calls: int, pause: float = 0.0
) -> str:
    """The small cases' table: each row's mode, median call and ratio to the reference."""
    reference = {t.case: t.median for t in timings if t.impl == "reference"}
    apart = f" {pause * 1e3:g} ms apart" if pause else " back to back"
    lines = [
        f"small cases: each row a fresh process of {calls} calls{apart}, median call; median "
        f"of {rounds} round(s), rows interleaved; {machine_summary()}",
        "mode: jobpersist's durability (deferred is the default); the reference never fsyncs",
        f"{'case':<38} {'implementation':<10} {'mode':<9} {'median us':>10} "
        f"{'vs reference':>12} {'wait_for_saves ms':>18}",
    ]
    labels = dict(SMALL_CASES)
    for t in sorted(timings, key=lambda t: [c for c, _ in SMALL_CASES].index(t.case)):
        ref = reference.get(t.case)
        ratio = f"{t.median / ref:11.2f}x" if ref else f"{'':>12}"
        flush = f"{t.flush * 1e3:18.2f}" if t.impl != "reference" else f"{'':>18}"
        lines.append(
            f"{labels[t.case]:<38} {t.impl:<10} {t.mode:<9} {t.median * 1e6:10.0f} {ratio} {flush}"
        )
    return "\n".join(lines)


def run_small_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """``jobpersist bench --small``."""
    wanted = args.impl or IMPLEMENTATIONS
    rows = [(impl, mode) for impl, mode in SMALL_ROWS if impl in wanted]
    if "reference" in wanted and importlib.util.find_spec("braket") is None:
        print("bench: amazon-braket-sdk is not installed; the reference is skipped", file=err)
        rows = [(impl, mode) for impl, mode in rows if impl != "reference"]
    if "native" in wanted and importlib.util.find_spec("jobpersist._native") is None:
        print("bench: the native backend is not built; skipped", file=err)
        rows = [(impl, mode) for impl, mode in rows if impl != "native"]
    if not rows:
        raise CliError("no implementation to benchmark")
    pause = args.pause_ms / 1e3
    timings = run_small(rows, args.rounds, args.dir, err, args.calls, not args.no_progress, pause)
    print(format_small_table(timings, args.rounds, args.calls, pause), file=out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([t.as_dict() for t in timings], f, indent=2)
    return 0


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Runs the benchmark, prints the table and writes the chart and JSON asked for."""
    if args.dir is not None and not os.path.isdir(args.dir):
        raise CliError(f"--dir {args.dir}: not a directory")
    if args.small:
        return run_small_command(args, out, err)
    sizes = args.size or [size_argument(s) for s in DEFAULT_SIZES]
    if args.plot:
        directory = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(directory):
            raise CliError(f"--plot {args.plot}: directory {directory} does not exist")
    impls = _implementations(args.impl or IMPLEMENTATIONS, err)
    if not impls:
        raise CliError("no implementation to benchmark")
    with tempfile.TemporaryDirectory(prefix="jobpersist-bench-", dir=args.dir) as directory:
        timings = run_bench(
            sizes, args.format, impls, args.rounds, directory, err, progress=not args.no_progress
        )
    print(format_table(timings, args.format, args.rounds), file=out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([t.as_dict() for t in timings], f, indent=2)
    if args.plot:
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            print(
                "chart skipped: matplotlib is not installed; pip install 'jobpersist[bench]'",
                file=out,
            )
            return 0
        from jobpersist.cli.plot import plot

        title = f"jobpersist bench: {machine_summary()}"
        plot(timings, args.format, args.plot, title, size_label)
        print(f"chart written to {args.plot}", file=out)
    else:
        print("add --plot FILE.png for a chart (needs pip install 'jobpersist[bench]')", file=out)
    return 0


NAME = "bench"
HELP = "time save and load: native, Python fallback, reference"
DESCRIPTION = (
    "Times save_job_checkpoint and load_job_checkpoint for the native "
    "backend, the pure-Python fallback and the reference (amazon-braket-sdk, when "
    "installed), in this process (the backends are switched in place), prints a table "
    "with ratios and, with --plot, writes a chart of throughput against payload size. "
    "Pickled payloads are float64 numpy arrays (bytes without numpy); plaintext ones "
    "lists of floats. Files go to a temporary directory (see --dir); the durability "
    "mode follows JOBPERSIST_DURABILITY (deferred by default; the reference never "
    "fsyncs). --small times instead what users save most, each row in a fresh process: "
    "a tiny checkpoint (plaintext, and pickled with a numpy array), a one-key merge into "
    "50 results and a tiny load, in every durability mode and the reference."
)
EPILOG = (
    "examples:\n  jobpersist bench\n  jobpersist bench --small --rounds 3\n"
    "  jobpersist bench --size 4M --size 256M --rounds 5 --plot bench.png\n"
    "  jobpersist bench --format plaintext --size 1M --size 8M --impl native --impl python"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``bench`` subcommand's arguments."""
    p.add_argument(
        "--size",
        type=size_argument,
        action="append",
        metavar="SIZE",
        help=f"payload size, repeatable: {SIZE_HELP}; default {' '.join(DEFAULT_SIZES)}",
    )
    p.add_argument("--format", choices=("pickled", "plaintext"), default="pickled")
    p.add_argument(
        "--impl",
        action="append",
        choices=IMPLEMENTATIONS,
        help="implementation to time, repeatable (default: all available)",
    )
    p.add_argument("--rounds", type=_positive_int, default=3, help="rounds per point (3)")
    p.add_argument(
        "--small",
        action="store_true",
        help="the small cases in every durability mode (see above), not the size sweep",
    )
    p.add_argument(
        "--calls",
        type=_positive_int,
        default=SMALL_CALLS,
        help=f"calls per process with --small ({SMALL_CALLS})",
    )
    p.add_argument(
        "--pause-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="with --small, sleep this long after each call, as a loop waiting for its "
        "quantum tasks does (default 0: back to back)",
    )
    p.add_argument("--plot", metavar="FILE.png", help="write a throughput chart (matplotlib)")
    p.add_argument("--json", metavar="FILE", help="also write the timings as JSON")
    p.add_argument("--dir", metavar="DIR", help="where the files are written (a temp dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
