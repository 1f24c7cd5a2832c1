# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONSTRAINTS := requirements/constraints.txt
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench numactl clean-venv ipex-env test-ipex

$(STAMP): setup.cfg pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	bash scripts/install.sh $(PY)
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check qla_sdk qla_bench benchmarks tests

demo: $(STAMP)
	$(VENV)/bin/qla demo

bench: $(STAMP) numactl
	$(PY) benchmarks/run.py

# numactl binds benchmark instances to cores and NUMA memory. Installed where possible (root + apt-get); never
# fails: without it `qla-bench` pins cores itself and records a warning.
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

# Opt-in, never part of `make test`: the IPEX backend's own environment. IPEX 2.8 runs only on torch 2.8, whose
# registry build is the CUDA one (about 4 GB download, 7 GB venv; it runs on the CPU). It installs
# requirements/constraints-ipex.txt as it stands (the file docker/Dockerfile.ipex reads), then the SDK without
# re-resolving (setup.cfg pins torch 2.13 for the main environment).
IPEX_VENV := .venv-ipex
IPEX_STAMP := $(IPEX_VENV)/.installed

$(IPEX_STAMP): setup.cfg pyproject.toml requirements/constraints-ipex.txt
	test -x $(IPEX_VENV)/bin/python || $(PYTHON) -m venv $(IPEX_VENV)
	$(IPEX_VENV)/bin/python -m pip install -q --disable-pip-version-check "pip>=24"
	$(IPEX_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements/constraints-ipex.txt
	$(IPEX_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
	$(IPEX_VENV)/bin/python -c "import torch, intel_extension_for_pytorch as ipex; print('ipex env ok: torch', torch.__version__, 'ipex', ipex.__version__)"
	touch $(IPEX_STAMP)

ipex-env: $(IPEX_STAMP)

# The tests that need IPEX (skipped in the main environment), run where IPEX imports.
test-ipex: $(IPEX_STAMP)
	$(IPEX_VENV)/bin/python -m pytest -q -m ipex tests
