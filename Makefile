# talkgen: `make test` and (with the native engine) `make demo` each set up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_EXTRAS := native,comfyui,runpod,s3,dev
DEMO_EXTRAS := native
DEMO_MODELS := .models/tiny
DEMO_OUT := out/demo.mp4
export RUNPOD_SKIP_AUTO_SYSTEM_CHECKS := true

.PHONY: test lint pytest install bench clean demo

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

# The main job on the embedded default: native engine, tiny preset, bundled example portrait + speech.
$(DEMO_MODELS)/talkgen-preset.json: | $(VENV)/.installed-$(DEMO_EXTRAS)
	$(BIN)/talkgen models tiny $(DEMO_MODELS)

demo: $(VENV)/.installed-$(DEMO_EXTRAS) $(DEMO_MODELS)/talkgen-preset.json
	TALKGEN_MODELS_DIR=$(DEMO_MODELS) $(BIN)/talkgen generate --engine native \
		--image examples/portrait.png --audio examples/speech.wav --width 128 --height 128 --seed 42 \
		-o $(DEMO_OUT)

bench: install
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info .models out
