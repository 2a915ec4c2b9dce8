"""Tests the release set in ``dist/`` as installed, never from the source tree
(``make test-wheels``).

For every CPython 3.10-3.13 on this machine (a missing one is skipped and said so) it makes a
fresh venv, installs the test dependencies from the index, then jobpersist with
``pip install --no-index --find-links dist jobpersist`` and no cargo or rustc on PATH. It
asserts which wheel pip chose and which backend ``import jobpersist`` picked, then runs the
test suite (a copy of ``tests/``, outside the source tree) against the installed package. It
also installs the pure-Python wheel on CPython 3.12 (what aarch64 or musl machines get) and
builds the native module from the sdist.

    python tools/check_wheels.py [--dist dist] [--only LABEL ...] [--keep]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import tomllib
from build_wheels import ROOT, find_interpreters


def _load_environment_module() -> Any:
    """``jobpersist._environment`` from the source tree, by path: this tool runs without
    jobpersist installed, and that module needs only the standard library."""
    path = ROOT / "src" / "jobpersist" / "_environment.py"
    spec = importlib.util.spec_from_file_location("jobpersist_environment", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_ENVIRONMENT = _load_environment_module()

TOOLS = Path(__file__).resolve().parent
# amazon-braket-sdk (the oracle of the differential tests) needs Python 3.11+.
REFERENCE_MIN_MINOR = 11


@dataclasses.dataclass
class Case:
    label: str
    version: str  # "3.x"
    install: str  # "auto": let pip choose from dist; "pure": the py3-none-any wheel itself
    wheel_tag: str  # the tag pip must have installed
    backend: str  # what `jobpersist.BACKEND` must say without JOBPERSIST_BACKEND set


@dataclasses.dataclass
class Outcome:
    label: str
    ok: bool
    detail: str
    seconds: float


def toolchain_free_path() -> str:
    """PATH without the directories that hold cargo or rustc, so no build can happen."""
    keep = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any(Path(d, tool).exists() for tool in ("cargo", "rustc"))
    ]
    path = os.pathsep.join(keep)
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None
    return path


def test_requirements() -> list[str]:
    """orjson plus the [test] extra, from pyproject.toml (markers left to pip)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["test"])


def native_tag(dist: Path) -> str:
    (wheel,) = [w for w in dist.glob("jobpersist-*.whl") if "manylinux" in w.name]
    # name-version-python-abi-platform.whl; the platform part may be a compressed tag set.
    python, abi, platforms = wheel.name[: -len(".whl")].split("-")[2:5]
    return f"{python}-{abi}-{platforms.split('.')[-1]}"


def installed_tags(python: Path) -> list[str]:
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; w = m.distribution('jobpersist').read_text('WHEEL');"
            "print('\\n'.join(l.split(':', 1)[1].strip() for l in w.splitlines()"
            " if l.startswith('Tag:')))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.split()


def pip(python: Path, *args: str, env: dict[str, str]) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        check=True,
        env=env,
    )


def run_case(case: Case, interpreter: str, dist: Path, work: Path, suite: bool) -> Outcome:
    start = time.monotonic()
    venv = work / f"venv-{case.label}"
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBPERSIST_", "PYTHON"))}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), toolchain_free_path()])
    env["VIRTUAL_ENV"] = str(venv)
    minor = int(case.version.split(".")[1])

    pip(python, "install", *test_requirements(), env=env)
    if case.install == "auto":
        pip(python, "install", "--no-index", "--find-links", str(dist), "jobpersist", env=env)
    else:
        (pure,) = dist.glob("jobpersist-*-py3-none-any.whl")
        pip(python, "install", "--no-index", "--no-deps", str(pure), env=env)

    tags = installed_tags(python)
    if case.wheel_tag not in tags:
        return Outcome(case.label, False, f"pip installed {tags}, not {case.wheel_tag}", 0)
    probe = subprocess.run(
        [str(python), "-c", "import jobpersist; print(jobpersist.BACKEND, jobpersist.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    )
    backend, location = probe.stdout.split()
    if backend != case.backend:
        return Outcome(case.label, False, f"BACKEND is {backend!r}, not {case.backend!r}", 0)
    if not Path(location).is_relative_to(venv):
        return Outcome(case.label, False, f"imported from {location}, not the venv", 0)
    detail = f"wheel {case.wheel_tag}, BACKEND={backend}"
    if not suite:
        return Outcome(case.label, True, detail, time.monotonic() - start)

    # The suite runs from a copy outside the source tree, so only the venv's jobpersist is
    # importable; pytest's options are the project's own.
    tests = work / f"tests-{case.label}"
    shutil.copytree(ROOT / "tests", tests, ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tests)]
    cmd += ["-o", "addopts=", "--rootdir", str(tests)]
    suite_env = {**env, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "quick")}
    if case.backend == "python":
        # The native leg cannot exist in this install; say so instead of failing it.
        suite_env["JOBPERSIST_BACKEND"] = "python"
    if minor < REFERENCE_MIN_MINOR:
        suite_env["PYTHONPATH"] = str(TOOLS)
        cmd += ["-p", "pytest_without_reference"]
    result = subprocess.run(cmd, env=suite_env, cwd=work, capture_output=True, text=True)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.returncode != 0:
        print(result.stdout[-20000:], result.stderr[-5000:], sep="\n")
        return Outcome(case.label, False, f"{detail}; pytest: {summary}", 0)
    return Outcome(case.label, True, f"{detail}; pytest: {summary}", time.monotonic() - start)


def run_sdist(interpreter: str, dist: Path, work: Path) -> Outcome:
    """pip builds the native module from the sdist (cargo needed here, unlike the wheels)."""
    start = time.monotonic()
    (sdist,) = dist.glob("jobpersist-*.tar.gz")
    venv = work / "venv-sdist"
    subprocess.run([interpreter, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBPERSIST_", "PYTHON"))}
    env["CARGO_TARGET_DIR"] = str(work / "sdist-target")
    pip(python, "install", str(sdist), env=env)
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import jobpersist, jobpersist._native as n; print(jobpersist.BACKEND)",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    )
    ok = probe.returncode == 0 and probe.stdout.strip() == "native"
    detail = f"built from {sdist.name}: BACKEND={probe.stdout.strip() or probe.stderr.strip()}"
    return Outcome("sdist", ok, detail, time.monotonic() - start)


# The SDK version the Braket job images pin (amazon-braket-containers, base image).
CONTAINER_SDK = "amazon-braket-sdk==1.125.0"
JOB_STEPS = 40
KILL_AFTER_STEP = 12


def _job_env(base: dict[str, str], opt_ml: Path, hp_file: Path, code: Path) -> dict[str, str]:
    """The variables the job container sets for the customer's script (and its folders)."""
    for folder in ("checkpoints", "model", "input/data"):
        (opt_ml / folder).mkdir(parents=True, exist_ok=True)
    job = _ENVIRONMENT.job_variables(
        "jobpersist-bundle-test", str(opt_ml / "checkpoints"), str(opt_ml / "model")
    )
    return {
        **base,
        **job,
        "AMZN_BRAKET_INPUT_DIR": str(opt_ml / "input" / "data"),
        "AMZN_BRAKET_HP_FILE": str(hp_file),
        "AMZN_BRAKET_DEVICE_ARN": "local:braket/braket.local.qubit",
        "PYTHONPATH": str(code),  # the container appends the extracted code to sys.path
        "PYTHONUNBUFFERED": "1",
    }


def _run_job(python: Path, env: dict[str, str], cwd: Path, kill_after: int | None) -> list[str]:
    """Runs the entry point as the container does (`runpy.run_module`, cwd at the extracted
    code); with ``kill_after``, SIGKILLs it as soon as it reports that step saved."""
    entry = "import runpy; runpy.run_module('job.algorithm_script', run_name='__main__')"
    process = subprocess.Popen(
        [str(python), "-c", entry], env=env, cwd=cwd, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line.strip())
        if kill_after is not None and line.strip() == f"step {kill_after} saved":
            process.kill()
            break
    code = process.wait(timeout=300)
    if kill_after is None and code != 0:
        raise RuntimeError(f"the job failed (exit {code}): {lines[-5:]}")
    return lines


def run_bundle(interpreter: str, dist: Path, work: Path) -> Outcome:
    """`jobpersist bundle` makes a source folder; a CPython 3.12 "container" installs it as the
    Braket container does and runs a checkpointing job that is SIGKILLed and resumed."""
    start = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBPERSIST_", "PYTHON"))}
    env["PATH"] = toolchain_free_path()

    # The user's machine: jobpersist installed from the release set, then the bundle.
    host = work / "venv-bundle-host"
    subprocess.run([interpreter, "-m", "venv", str(host)], check=True)
    pip(host / "bin" / "python", "install", *test_requirements()[:1], env=env)
    pip(host / "bin" / "python", "install", "--no-index", "-f", str(dist), "jobpersist", env=env)
    extracted = work / "customer_code" / "extracted"
    source = extracted / "job"
    source.mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "braket_job" / "algorithm_script.py", source)
    subprocess.run(
        [str(host / "bin" / "jobpersist"), "bundle", str(source), "--find-links", str(dist)],
        check=True,
        env=env,
    )

    # The container: CPython 3.12 with the SDK and numpy as the image has them, no Rust, and
    # no index: everything jobpersist needs must come from the bundle.
    container = work / "venv-container"
    subprocess.run([interpreter, "-m", "venv", str(container)], check=True)
    python = container / "bin" / "python"
    pip(python, "install", CONTAINER_SDK, "numpy", env=env)
    container_env = {**env, "PATH": os.pathsep.join([str(container / "bin"), env["PATH"]])}
    for requirements in sorted(extracted.rglob("requirements.txt")):
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)],
            cwd=extracted,
            env={**container_env, "PIP_NO_INDEX": "1"},
            check=True,
        )
    tags = installed_tags(python)

    opt_ml = work / "opt" / "ml"
    hp_file = work / "hyperparameters.json"
    hp_file.write_text(json.dumps({"n_steps": str(JOB_STEPS), "n_params": "1000000"}))
    job_env = _job_env(container_env, opt_ml, hp_file, extracted)
    first = _run_job(python, job_env, extracted, kill_after=KILL_AFTER_STEP)
    second = _run_job(python, job_env, extracted, kill_after=None)
    # The same job, never interrupted, elsewhere: its result must be the resumed job's.
    whole_env = _job_env(container_env, work / "whole" / "opt" / "ml", hp_file, extracted)
    whole = _run_job(python, whole_env, extracted, kill_after=None)

    resumed = [line for line in second if line.startswith("resumed after step ")]
    resumed_after = int(resumed[0].rsplit(" ", 1)[1]) if resumed else -1
    results = opt_ml / "model" / "results.json"
    problems = []
    if not tags or "abi3" not in tags[0]:
        problems.append(f"the container got {tags}, not the native wheel")
    if not first[0].startswith("persistence: jobpersist.") or "backend native" not in first[0]:
        problems.append(f"braket.jobs was not patched to native jobpersist: {first[0]!r}")
    if not KILL_AFTER_STEP <= resumed_after < JOB_STEPS - 1:
        problems.append(f"did not resume after the kill: {second[:2]}")
    if second[-1] != "done" or not results.is_file():
        problems.append(f"the resumed job did not finish: {second[-3:]}")
    elif results.read_bytes() != (work / "whole" / results.relative_to(work)).read_bytes():
        problems.append("the resumed job's results differ from the uninterrupted job's")
    # Unpatched, the reference (the image's SDK) reads what jobpersist wrote.
    check = subprocess.run(
        [
            str(python),
            "-c",
            "from braket.jobs.data_persistence import load_job_checkpoint, load_job_result;"
            "c = load_job_checkpoint(checkpoint_file_suffix='state', allow_pickle=True);"
            "print(c['step'], load_job_result()['steps'])",
        ],
        env=job_env,
        capture_output=True,
        text=True,
    )
    if check.stdout.split() != [str(JOB_STEPS - 1), str(JOB_STEPS)]:
        problems.append(f"the reference cannot read the files: {check.stdout}{check.stderr}")
    detail = (
        f"container wheel {tags[0] if tags else None}; killed after step {KILL_AFTER_STEP}, "
        f"resumed after step {resumed_after}, {len(whole)} lines uninterrupted"
    )
    if problems:
        return Outcome("bundle", False, f"{detail}; " + "; ".join(problems), 0)
    return Outcome("bundle", True, detail, time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist")
    parser.add_argument("--only", action="append", help="run only these cases (labels)")
    parser.add_argument("--no-suite", action="store_true", help="install checks only")
    parser.add_argument("--keep", action="store_true", help="keep the venvs (path printed)")
    args = parser.parse_args()
    dist: Path = args.dist.resolve()
    interpreters = find_interpreters()
    native = native_tag(dist)
    cases = [
        Case(f"cp{v.replace('.', '')}", v, "auto", *(
            ("py3-none-any", "python") if int(v.split(".")[1]) < 11 else (native, "native")
        ))
        for v in ("3.10", "3.11", "3.12", "3.13")
    ]  # fmt: skip
    cases.append(Case("cp312-pure", "3.12", "pure", "py3-none-any", "python"))

    outcomes: list[Outcome] = []
    work = Path(tempfile.mkdtemp(prefix="jobpersist-wheels-"))
    try:
        for case in cases:
            if args.only and case.label not in args.only:
                continue
            if case.version not in interpreters:
                outcomes.append(Outcome(case.label, True, f"SKIPPED: no Python {case.version}", 0))
                continue
            print(f"== {case.label}: Python {case.version} ({interpreters[case.version]})")
            outcomes.append(
                run_case(case, interpreters[case.version], dist, work, not args.no_suite)
            )
        if (not args.only or "bundle" in args.only) and "3.12" in interpreters:
            print("== bundle: a Braket job source folder installed and run as the container does")
            try:
                outcomes.append(run_bundle(interpreters["3.12"], dist, work))
            except (subprocess.CalledProcessError, RuntimeError) as exc:
                outcomes.append(Outcome("bundle", False, f"{exc}", 0))
        if (not args.only or "sdist" in args.only) and "3.12" in interpreters:
            print("== sdist: Python 3.12")
            outcomes.append(run_sdist(interpreters["3.12"], dist, work))
    finally:
        if args.keep:
            print(f"venvs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print("\ninstalled-wheel matrix:")
    for o in outcomes:
        print(f"  {'ok  ' if o.ok else 'FAIL'} {o.label:<11} {o.detail}  ({o.seconds:.0f} s)")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
