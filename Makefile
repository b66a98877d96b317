# make demo | make test | make bench — each creates .venv (Python 3.11) on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo-data

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tickwise needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray,bench]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tickwise data synth --kind quotes --rows 2000000 --instruments 4 --seed 7 \
		--inject crash:at=900,drop_pct=8,down_s=30,recover_s=120 --inject gap:at=1200,seconds=2 \
		--out $(DEMO)/quotes.parquet --overwrite
	$(BIN)/tickwise data inspect $(DEMO)/quotes.parquet
	$(BIN)/tickwise data synth --kind book --rows 1000000 --instruments 3 --seed 7 --partition \
		--out $(DEMO)/book --overwrite
	$(BIN)/tickwise data inspect $(DEMO)/book
	$(BIN)/tickwise strategies
	$(BIN)/tickwise backtest --strategy sma_cross --data $(DEMO)/quotes.parquet \
		--param fast=50 --param slow=400 --param long_short=true --param qty=100 --out $(DEMO)/backtest --overwrite
	@echo "open $(DEMO)/backtest/report.html to see the backtest"
	$(BIN)/tickwise demo --seconds 15

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache  # imports point down only: pyproject.toml, [tool.importlinter]

# The tests run the compiled code with Numba's bounds checking on: an index out of range
# anywhere is an IndexError in a test, never silent corruption. Numba's cache does not tell
# checked code from unchecked, so tickwise caches checked code apart (engine/caches.py).
TEST_ENV := NUMBA_BOUNDSCHECK=1

test: lint
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 2 --dist worksteal tests  # two workers, idle one steals

# Every suite of `tickwise bench` under pytest-benchmark; each run keeps its own JSON files.
bench: $(STAMP)
	@mkdir -p bench-results
	$(BIN)/python -m pytest -q -s benchmarks --benchmark-only \
		--benchmark-json=bench-results/pytest-benchmark-$$(date -u +%Y%m%dT%H%M%SZ).json

clean:
	rm -rf $(VENV) $(DEMO) bench-results .pytest_cache .ruff_cache .hypothesis .benchmarks
