# The README's two commands: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench-quick bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lite12]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m featpipe.demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules featpipe tests

bench-quick: $(STAMP)
	$(PY) -m benchmarks.run_all --quick

bench: $(STAMP)
	$(PY) -m benchmarks.run_all

clean:
	rm -rf $(VENV) demo-out cache/*
