# labreport: `make report` builds build/report.pdf, `make test` runs the tests.
# Every target bootstraps what it needs (.venv, dependencies, data) on a fresh machine.
# Variables: QUICK=1 (smoke run: few epochs, data subsample), JOBS=N (experiments at once, default 0:
#            one per core, each with one TensorFlow thread; see README, Speed),
#            CONFIG=experiments.toml, BUILD=build, PYTHON=python3, PYTEST_ARGS=...

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= experiments.toml
BUILD  ?= build
JOBS   ?= 0
QUICK  ?=
QUICK_FLAG := $(if $(filter-out 0 no false,$(QUICK)),--quick,)
LR     := $(BIN)/labreport
ARGS   := -c $(CONFIG) -b $(BUILD)
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv report run render data list check test test-all bench lock clean distclean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  variables: QUICK=1 JOBS=N CONFIG=file BUILD=dir"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies

data: $(STAMP) ## fetch and verify MNIST + Fashion-MNIST into build/data
	$(LR) data $(ARGS)

report: $(STAMP) data ## train what is stale, render build/report.html and build/report.pdf
	$(LR) report $(QUICK_FLAG) --jobs $(JOBS) $(ARGS)

run: $(STAMP) data ## only train what is stale (no rendering)
	$(LR) run $(QUICK_FLAG) --jobs $(JOBS) $(ARGS)

render: $(STAMP) ## only render the report from stored results (no TensorFlow)
	$(LR) render $(QUICK_FLAG) $(ARGS)

list: $(STAMP) ## show the experiments with their parameter counts
	$(LR) list --params $(ARGS)

check: $(STAMP) ## check the lab's hand-in requirements
	$(LR) check $(QUICK_FLAG) $(ARGS)

test: $(STAMP) data ## run the test suite (fast; no full-lab training)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP) data ## run every test, slow ones included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP) data ## benchmarks: print speed ratios against the naive way
	$(BIN)/python -m bench

lock: ## re-pin requirements.txt from the current .venv
	@{ echo "# Pinned environment of labreport (regenerate: make lock). Installed by the Makefile into .venv."; \
	   $(BIN)/python -m pip freeze --exclude-editable | grep -viE '^(labreport|pyflakes|ruff)=='; } > requirements.txt

# Both refuse a BUILD that is not a labreport build folder (no .labreport-build marker): BUILD=. must
# never delete a project. Without .venv, clean has no labreport to ask and leaves everything.
clean: ## delete the rendered report and figures (keeps data, features and trained results)
	@if [ -x $(LR) ]; then $(LR) clean $(ARGS); else echo "no $(LR) (make venv first): nothing cleaned" >&2; fi

distclean: ## delete build/ (only a labreport build folder) and .venv entirely
	@if [ -e $(BUILD) ] && [ ! -f $(BUILD)/.labreport-build ]; then \
	  echo "$(BUILD) is not a labreport build folder (no .labreport-build marker): not deleted;" \
	       "\`labreport clean --all -b $(BUILD)\` empties an older one" >&2; exit 2; fi
	rm -rf $(BUILD) $(VENV)
