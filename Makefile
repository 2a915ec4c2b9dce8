# The few commands a newcomer needs. Everything runs inside ./.venv, which `setup` makes.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Release builds use their own small venv: no editable build, pinned tools, reproducible.
RELEASE_VENV ?= .venv-release
RELEASE_PY := $(RELEASE_VENV)/bin/python
RELEASE_TOOLS := maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2

.PHONY: help setup demo test test-quick test-rust test-python lint fmt bench wheels test-wheels clean
.DEFAULT_GOAL := help

## help: this list (the `## target:` comments of this Makefile); `make` alone shows it
help:
	@awk '/^## [A-Za-z_-]+:/ { sub(/^## /, ""); name = $$0; sub(/:.*/, "", name); \
		text = substr($$0, length(name) + 3); printf "  %-12s %s\n", name, text; next } \
		/^## / { sub(/^## /, ""); printf "  %-12s %s\n", "", $$0 }' $(firstword $(MAKEFILE_LIST))

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

## setup: a venv with jobpersist built from source (release) and the test/dev tools
setup: $(VENV)/bin/python
	$(PIP) install --quiet -e '.[test,dev,bench,pennylane-tests]'

## demo: set up, save and load a big checkpoint with jobpersist and the reference, then
## `jobpersist bench`: the timing table and chart (bench.png) of native, python and reference
demo: setup
	$(PY) examples/checkpoint_demo.py
	$(VENV)/bin/jobpersist bench --plot bench.png

## test: set up, then the Rust core's tests and the whole pytest suite (both backends)
test: setup test-rust test-python

## test-quick: the fast part of the pytest suite (no tests marked slow, fewer hypothesis examples)
test-quick: setup
	HYPOTHESIS_PROFILE=quick $(PY) -m pytest -q -m "not slow"

## test-rust: the Rust core's tests, and its parity tests against CPython
test-rust:
	cargo test -p jobpersist-core --quiet
	cargo test -p jobpersist-core --quiet --test python_parity -- --ignored

## test-python: the pytest suite (both backends, against the reference)
test-python:
	$(PY) -m pytest -q

## lint: rustfmt, clippy, ruff, mypy and stubtest of the native module's .pyi
lint: setup
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(PY) -m mypy.stubtest jobpersist._native

## fmt: format everything (rustfmt, ruff) and apply ruff's fixes
fmt:
	cargo fmt --all
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

## bench: benches/compare.py: jobpersist against the reference, and its targets (a few minutes)
bench: setup
	$(PY) benches/compare.py

$(RELEASE_PY):
	python3 -m venv $(RELEASE_VENV)
	$(RELEASE_PY) -m pip install --quiet --upgrade pip $(RELEASE_TOOLS)

## wheels: the release set in dist/: the native cp311-abi3 manylinux_2_17 x86_64 wheel (zig-linked,
## checked by auditwheel), the pure-Python py3-none-any wheel and the sdist (no setup needed)
wheels: $(RELEASE_PY)
	$(RELEASE_PY) tools/build_wheels.py --out dist

## test-wheels: after `make wheels`, installs each wheel in a fresh venv of every CPython 3.10-3.13
## found (no Rust on PATH), checks the wheel and backend pip chose, runs the suite against it
test-wheels: $(RELEASE_PY)
	$(RELEASE_PY) tools/check_wheels.py --dist dist

## clean: remove the venvs, Cargo's target directory and dist/
clean:
	rm -rf $(VENV) $(RELEASE_VENV) target dist
