# Everything runs inside .venv, created on first use. Each step leaves a stamp
# and reruns only when its inputs change, so a second `make test` installs
# nothing. torch comes from the CPU wheel this machine kind provides;
# fairseq-fixed is built with --no-deps --no-build-isolation (see DEVELOPERS
# notes in README), then its real dependencies are installed by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
CONSTRAIN := -c constraints.txt
TORCH_VERSION ?= 2.13.0
FAIRSEQ := fairseq-fixed==0.12.3.1

.PHONY: demo test test-fast mutate bench bench-quick bench-memory lint clean env

demo: $(VENV)/.package
	$(PY) scripts/demo.py

# One worker per core, one thread each: most tests start fairseq's CLIs or compile, single-threaded work
# that left the second core idle when the suite ran in one process.
test: $(VENV)/.package
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --durations=20 tests

# The inner loop: core and in-process fairseq tests, no command-line subprocesses.
test-fast: $(VENV)/.package
	$(PY) -m pytest -q tests -m "not cli"

# Small bugs applied one at a time: do the fast tests catch each? (scripts/mutate.py)
mutate: $(VENV)/.package
	$(PY) scripts/mutate.py

bench: $(VENV)/.package
	$(PY) scripts/bench_core.py

bench-quick: $(VENV)/.package
	$(PY) scripts/bench_core.py --quick

bench-memory: $(VENV)/.package
	$(PY) scripts/bench_memory.py --work bench-memory

lint: $(VENV)/.package
	$(PY) -m ruff check fairseq_revrnn tests scripts
	$(PY) -m ruff format --check fairseq_revrnn tests scripts

env: $(VENV)/.package

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	touch $@

$(VENV)/.torch: $(VENV)/.created constraints.txt
	$(PIP) install -q $(CONSTRAIN) torch==$(TORCH_VERSION) numpy cython
	touch $@

$(VENV)/.fairseq: $(VENV)/.torch
	@echo "installing $(FAIRSEQ) (compiles its extensions the first time: a few minutes)"
	$(PIP) install -q --no-deps --no-build-isolation $(FAIRSEQ)
	touch $@

$(VENV)/.requirements: $(VENV)/.fairseq requirements.txt requirements-dev.txt constraints.txt
	$(PIP) install -q $(CONSTRAIN) -r requirements.txt -r requirements-dev.txt
	touch $@

$(VENV)/.package: $(VENV)/.requirements setup.py pyproject.toml
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
