# Two commands do everything on a fresh clone: `make report` and `make test`.
# Each creates .venv from the system python3 (>= 3.11) and installs the project.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install report test unit notebooks check format lint types lab bench clean db-up db-down

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "need python >= 3.11, found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The whole suite on the embedded database, every scenario on both layers.
report: $(STAMP)
	$(BIN)/coupon-chaos run all --layer both --hide-code

# Every test, the chaos tests and the notebooks included.
# The notebooks share one embedded database, stopped afterwards whatever happened.
test: $(STAMP)
	$(BIN)/python -m pytest --chaos tests
	@export COUPON_CHAOS_HOME="$$(mktemp -d)"; \
	  url="$$($(BIN)/coupon-chaos db up)" || exit 1; \
	  echo "notebooks share the database at $$url"; \
	  DATABASE_URL="$$url" $(BIN)/python -m pytest --chaos --nbmake notebooks; \
	  rc=$$?; $(BIN)/coupon-chaos db down >/dev/null; rm -rf "$$COUPON_CHAOS_HOME"; exit $$rc

# The inner loop: what is neither slow (over a few seconds) nor chaos; under a minute.
# Its tests wait on PostgreSQL and loopback sockets more than on the CPU, so they run in
# UNIT_JOBS processes (pytest-xdist), each with an embedded database of its own (4 on a
# 2-core machine: 60.2 s against 78.8 s with 4 processes that each keep whole files, and
# 96.7 s in one process, at load 1-5). The plugins no unit test
# uses (nbmake, schemathesis, Locust's, hypothesis') are not loaded: importing them cost
# seconds per process. `make test` loads them all and runs everything in one process.
UNIT_JOBS ?= 4
unit: $(STAMP)
	$(BIN)/python -m pytest -n $(UNIT_JOBS) --dist load \
	  -p no:nbmake -p no:schemathesis -p no:locust -p no:hypothesispytest \
	  -m "not slow and not chaos" tests

check: $(STAMP) format lint types unit

format: $(STAMP)
	$(BIN)/ruff format --check conftest.py coupon_core experiments tests benchmarks scripts

lint: $(STAMP)
	$(BIN)/ruff check conftest.py coupon_core experiments tests benchmarks scripts

types: $(STAMP)
	$(BIN)/mypy

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

bench: $(STAMP)
	$(BIN)/coupon-chaos bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
