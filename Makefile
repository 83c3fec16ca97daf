# `make run` and `make test` each bootstrap .venv on a fresh machine by themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUITE  ?= suites/quick.yaml
# jobs `make run` retrains to check that this machine reproduces the committed rows (harness verify)
VERIFY_SAMPLE ?= 6
# extra pytest-benchmark flags for `make bench`, e.g. BENCH_ARGS="--benchmark-compare"
BENCH_ARGS ?=

.PHONY: run test test-fast check bench report clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU wheel; installing it first keeps pip from resolving a CUDA build.
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[dev,ray,mlflow]"
	touch $(STAMP)

# the committed results and report (nothing new to train), then a sample of them retrained from
# scratch in a temporary folder and compared with the committed rows: exit 1 if they do not reproduce
run: $(STAMP)
	$(BIN)/harness run $(SUITE)
	$(BIN)/harness verify $(SUITE) --sample $(VERIFY_SAMPLE)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

# the same without the tests marked slow (each over ~5 s here: whole suites, subprocesses, Ray)
test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not slow"

# regression gate against results/baseline.json; `make check ARGS=--update` rewrites the baseline
check: $(STAMP)
	$(BIN)/harness check $(ARGS)

# side-by-side speed scripts (harness's vanilla against torch's encoder; long_range's sweep variants at
# n = 8192), then the pytest-benchmark microbenchmarks (benchmarks/test_*.py), whose runs are saved
# under .benchmarks/ for later --benchmark-compare
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_vanilla.py
	$(BIN)/python benchmarks/bench_side_by_side.py suites/long_range.yaml --at 8192
	@if ls benchmarks/test_*.py >/dev/null 2>&1; then \
		$(BIN)/python -m pytest benchmarks -q --benchmark-only --benchmark-autosave $(BENCH_ARGS); \
	fi

report: $(STAMP)
	$(BIN)/harness report

clean-venv:
	rm -rf $(VENV)
