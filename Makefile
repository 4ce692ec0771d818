# edgevae: `make export` (main job) and `make test` each create the virtual environment they need.
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
CHECKPOINTS ?= artifacts/checkpoints
ONNX_DIR    ?= artifacts/onnx
MODEL_DIR   := runtime/models/default
DATA_DIR    ?= $(EDGEVAE_DATA_DIR)
TRAIN_ARGS  ?=
PYTEST_ARGS ?=

.PHONY: venv train export ship test lint wheel bench ood compat cuda-check cuda-venv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[train,cpu,dev]'
	touch $@

venv: $(BIN)/.installed

## train: retrain the released checkpoints (make train DATA_DIR=/path/to/mnist TRAIN_ARGS=--overwrite [TRAIN_ARGS="--overwrite --preset book"])
train: venv
	@test -n "$(DATA_DIR)" || { echo "make train needs DATA_DIR=/path/to/mnist (or EDGEVAE_DATA_DIR)"; exit 2; }
	$(BIN)/python -m edgevae.train --data-dir "$(DATA_DIR)" --out $(CHECKPOINTS) $(TRAIN_ARGS)

## export: checkpoints -> validated ONNX graphs + manifest + samples.png (TRAIN=1 retrains first)
export: venv $(if $(TRAIN),train)
	$(BIN)/python -m edgevae.export --checkpoints $(CHECKPOINTS) --out $(ONNX_DIR)

## ship: make the exported model the runtime's packaged default
ship: export
	$(BIN)/python -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['files']))" $(ONNX_DIR)/manifest.json \
	  | tr ' ' '\n' | sed 's|^|$(ONNX_DIR)/|' | xargs -I{} cp {} $(MODEL_DIR)/
	cp $(ONNX_DIR)/manifest.json $(MODEL_DIR)/

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff (rules and formatting, settings in pyproject.toml) and mypy on the runtime
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## wheel: dist/edgevae-VERSION-py3-none-any.whl, the file to copy to a device (README, "Install on a device")
wheel: venv
	rm -rf dist
	$(BIN)/python -m pip wheel --no-deps -q -w dist .
	@ls dist/*.whl

bench: venv
	$(BIN)/python bench/run.py

## ood: AUROC of each unusual-input score against MNIST test digits (needs DATA_DIR); writes artifacts/ood.json
ood: venv
	@test -n "$(DATA_DIR)" || { echo "make ood needs DATA_DIR=/path/to/mnist (or EDGEVAE_DATA_DIR)"; exit 2; }
	$(BIN)/python bench/ood.py --data-dir "$(DATA_DIR)"

## cuda-check: the real onnxruntime-gpu wheel (own venv, ~260 MB) on a machine without a GPU: cuda refused, auto falls back
cuda-check: venv cuda-venv
	$(BIN)/python -m pytest -q tests/test_cuda_wheel.py

cuda-venv:
	[ -x .venv-ort-gpu/bin/python ] || { $(PYTHON) -m venv .venv-ort-gpu && .venv-ort-gpu/bin/pip install -q onnxruntime-gpu numpy \
	  && .venv-ort-gpu/bin/pip install -q --no-deps -e .; }

## compat: the oldest supported onnxruntime gives the same samples as the pinned one
compat: export
	bash bench/compat.sh $(ONNX_DIR)

clean:
	rm -rf $(VENV) .pytest_cache $(ONNX_DIR)
