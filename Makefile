# talkgen: `make test` and (with the native engine) `make demo` each set up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_EXTRAS := runpod,s3,dev
export RUNPOD_SKIP_AUTO_SYSTEM_CHECKS := true

.PHONY: test lint pytest install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs torch==2.13.0 first when the extras need it, so pip never pulls a multi-GB CUDA build.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	@case ",$*," in *,native,*|*,all,*) $(BIN)/pip install -q torch==2.13.0 ;; esac
	$(BIN)/pip install -q -e '.[$*]'
	@touch $@

install: $(VENV)/.installed-$(TEST_EXTRAS)

lint: install
	$(BIN)/ruff check talkgen tests bench examples

pytest: install
	$(BIN)/pytest -q

test: lint pytest

bench: install
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
