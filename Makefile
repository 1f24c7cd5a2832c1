# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench numactl clean-venv

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	bash scripts/install.sh $(PY)
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check qla_sdk benchmarks tests

demo: $(STAMP)
	$(VENV)/bin/qla demo

bench: $(STAMP) numactl
	$(PY) benchmarks/run.py

# numactl binds benchmark instances to cores and NUMA memory. Installed where possible (root + apt-get); never
# fails: without it `qla bench` pins cores itself and records a warning.
numactl:
	@command -v numactl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y numactl || (apt-get update && apt-get install -y numactl)) >/dev/null 2>&1 \
	      && echo "numactl installed" || echo "numactl: apt-get install failed; benchmarks run without memory binding"; \
	  else \
	    echo "numactl: not installed (needs root and apt-get to install); benchmarks run without memory binding"; \
	  fi; }

clean-venv:
	rm -rf $(VENV)
