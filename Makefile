# Two entry points: `make demo` (pipeline on the embedded default) and `make test`.
# Both create .venv and install the locked dependencies on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.flipgate-installed

export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# dvc runs each stage as `python stages/...`: that must be the venv's python.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test install lock bench clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/dvc repro
	$(BIN)/flipgate show

# -n auto: one pytest worker per core (pytest-xdist); --dist loadfile keeps a module's tests (and its
# module-scoped pipeline fixture) in one worker. Most of the suite is process start-up (python, dvc, MLflow,
# a JVM) that holds one core, so two workers on two cores nearly halve the wall time.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=15

lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu/torch==\1/' > requirements.lock

clean:
	# every pipeline output; benchmark results (reports/bench_*) stay
	rm -rf data seeds candidate mlflow.db mlartifacts reports/plots reports/timings
	find reports -maxdepth 1 -type f ! -name "bench_*" -delete
