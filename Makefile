# talkgen: `make test` and (with the native engine) `make demo` each set up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_EXTRAS := native,comfyui,runpod,s3,modal,k8s,dev
DEMO_EXTRAS := native
DEMO_MODELS := .models/tiny
DEMO_OUT := out/demo.mp4
export RUNPOD_SKIP_AUTO_SYSTEM_CHECKS := true

.PHONY: test lint pytest install bench clean demo gpu-check gpu-wheels image-test

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
# The newest file of the tiny preset's layout: a tiny dir written by an older talkgen is rewritten.
DEMO_WEIGHTS := $(DEMO_MODELS)/MelBandRoFormer/MelBandRoformer_fp16.safetensors
$(DEMO_WEIGHTS): | $(VENV)/.installed-$(DEMO_EXTRAS)
	$(BIN)/talkgen models tiny $(DEMO_MODELS)

demo: $(VENV)/.installed-$(DEMO_EXTRAS) $(DEMO_WEIGHTS)
	TALKGEN_MODELS_DIR=$(DEMO_MODELS) $(BIN)/talkgen generate --engine native \
		--image examples/portrait.png --audio examples/speech.wav --width 128 --height 128 --seed 42 \
		-o $(DEMO_OUT)

# Builds the native image's CPU variant with podman/buildah and checks it serves a request (tests/images/).
image-test: install
	bash tests/images/image_test.sh

# The GPU suite (tests/gpu, marker `gpu`) and one real-size window per offload mode; see tests/gpu/check.sh.
gpu-check:
	bash tests/gpu/check.sh

# Wheels for a GPU machine that has torch but no internet (carry .whl/ there, then `make gpu-check`).
# The versions are the ones this .venv tested; GPU_PY is that machine's Python.
GPU_PY ?= 3.12
GPU_WHEELS := diffusers av pydantic pydantic_core pydantic-settings python-dotenv typing-inspection annotated-types \
	pyloudnorm importlib_metadata lazy.importer typing.extensions
gpu-wheels: install
	rm -rf .whl && mkdir -p .whl
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PY) --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d .whl $$($(BIN)/pip freeze | grep -i -E "^($$(echo $(GPU_WHEELS) | tr ' ' '|'))==")
	@ls .whl

bench: install
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info .models out
