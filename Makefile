# edgevae: `make export` (main job) and `make test` each create the virtual environment they need.
PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
# MODEL: default, large (both shipped in the package) or book; it names the preset, the folders and the packaged model.
MODEL       ?= default
SUFFIX      := $(if $(filter-out default,$(MODEL)),-$(MODEL))
CHECKPOINTS ?= artifacts/checkpoints$(SUFFIX)
ONNX_DIR    ?= artifacts/onnx$(SUFFIX)
MODEL_DIR   := runtime/models/$(MODEL)
DATA_DIR    ?= $(EDGEVAE_DATA_DIR)
TRAIN_ARGS  ?=
PYTEST_ARGS ?=
# The onnxruntime that export's int8 quantizer and .ort converter ran under for the shipped models:
# another release writes different bytes (1.32.0 grew each int8 graph by 66-132 bytes), and
# tests/test_variants.py checks the shipped variants byte for byte. The runtime itself takes >= 1.16.
EXPORT_ORT  ?= 1.31.1

.PHONY: venv train export ship test lint docs wheel bench profile ood quality ablation compat cuda-check cuda-venv cuda-test cuda-bench clean \
        web web-deps web-bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[train,cpu,dev]' 'onnxruntime==$(EXPORT_ORT)'
	touch $@

venv: $(BIN)/.installed

## train: retrain a released model from its preset (make train DATA_DIR=/path/to/mnist TRAIN_ARGS=--overwrite [MODEL=large|book]);
## a model trained in stages (large: train/config.py STAGES) runs each, fine-tuning the one before; the
## earlier stages' runs stay in artifacts/runs/stages/, the last one is $(CHECKPOINTS)
train: venv
	@test -n "$(DATA_DIR)" || { echo "make train needs DATA_DIR=/path/to/mnist (or EDGEVAE_DATA_DIR)"; exit 2; }
	@set -e; stages="$$($(BIN)/python -c 'from edgevae.train.config import stages; print(*stages("$(MODEL)"))')"; \
	last="$${stages##* }"; prev=; for stage in $$stages; do \
	  if [ "$$stage" = "$$last" ]; then out="$(CHECKPOINTS)"; else out="artifacts/runs/stages/$$stage"; fi; \
	  echo "stage $$stage -> $$out$${prev:+ (from $$prev)}"; \
	  $(BIN)/python -m edgevae.train --data-dir "$(DATA_DIR)" --preset $$stage --out "$$out" $${prev:+--init-from "$$prev"} $(TRAIN_ARGS); \
	  prev="$$out"; \
	done

## export: checkpoints -> validated ONNX graphs + manifest + samples.png (TRAIN=1 retrains first);
## with DATA_DIR (as shipped), the unusual-input score's mixture is fitted to 50,000 of the 60,000 training digits
## and its statistics are measured on the other 10,000 (docs/likelihood.md)
export: venv $(if $(TRAIN),train)
	$(BIN)/python -m edgevae.export --checkpoints $(CHECKPOINTS) --out $(ONNX_DIR) $(if $(DATA_DIR),--score-data "$(DATA_DIR)")

## ship: make the exported model the runtime's packaged model $(MODEL) (VAE(model=...), --model-name)
ship: export
	rm -rf $(MODEL_DIR) && mkdir -p $(MODEL_DIR)  # only what the manifest lists: no file of an older export stays
	$(BIN)/python -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['files']))" $(ONNX_DIR)/manifest.json \
	  | tr ' ' '\n' | sed 's|^|$(ONNX_DIR)/|' | xargs -I{} cp {} $(MODEL_DIR)/
	cp $(ONNX_DIR)/manifest.json $(MODEL_DIR)/
	$(if $(DATA_DIR),$(BIN)/python -m edgevae.export.latents --model $(MODEL_DIR) --data-dir "$(DATA_DIR)")  # active units, all test digits

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff (rules and formatting, settings in pyproject.toml) and mypy on the runtime
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## docs: rewrite the generated tables of README.md and docs/*.md from the files that hold their figures
docs: venv
	$(BIN)/python docs/make_tables.py

## wheel: dist/edgevae-VERSION-py3-none-any.whl, the file to copy to a device (README, "Set up by role")
wheel: venv
	rm -rf dist
	$(BIN)/python -m pip wheel --no-deps -q -w dist .
	@ls dist/*.whl

bench: venv
	$(BIN)/python bench/run.py

## profile: the decoder's time per node at batch 1024, 1 thread, from onnxruntime's profiler (ARGS="--variant int8 ...")
profile: venv
	$(BIN)/python bench/profile_nodes.py $(ARGS)

## ood: AUROC of each unusual-input score against MNIST test digits (needs DATA_DIR); writes artifacts/ood.json
ood: venv
	@test -n "$(DATA_DIR)" || { echo "make ood needs DATA_DIR=/path/to/mnist (or EDGEVAE_DATA_DIR)"; exit 2; }
	$(BIN)/python bench/ood.py --data-dir "$(DATA_DIR)"

## quality: -log p(x) of default, large, book and conv28 through their graphs (docs/quality.md); writes artifacts/quality.json
quality: venv
	@test -n "$(DATA_DIR)" || { echo "make quality needs DATA_DIR=/path/to/mnist (or EDGEVAE_DATA_DIR)"; exit 2; }
	$(MAKE) export MODEL=book
	$(MAKE) export MODEL=conv28 DATA_DIR=  # its score fitted to the exporter's 2000 digits: 60,000 through a conv decoder take ~30 min
	$(BIN)/python bench/quality.py --data-dir "$(DATA_DIR)"

## ablation: what each training change buys in nats, 30-epoch runs (~25 min on 2 cores); writes artifacts/ablation.json
ablation: venv
	@test -n "$(DATA_DIR)" || { echo "make ablation needs DATA_DIR=/path/to/mnist (or EDGEVAE_DATA_DIR)"; exit 2; }
	$(BIN)/python bench/ablation.py --data-dir "$(DATA_DIR)"


## cuda-check: the real onnxruntime-gpu wheel (own venv, ~260 MB) on a machine without a GPU: cuda refused, auto falls back
cuda-check: venv cuda-venv
	$(BIN)/python -m pytest -q tests/test_cuda_wheel.py

## cuda-test: on a machine with an NVIDIA GPU, pytest -m cuda and every packaged variant's self-test on CUDA, one table
## (uses an importable onnxruntime-gpu, else makes .venv-cuda); without a GPU it says so and exits 0
cuda-test:
	$(PYTHON) bench/cuda_test.py

## cuda-bench: on a machine with an NVIDIA GPU, likelihood, score and decode through the API, device-resident
## I/O and PyTorch eager, one table (artifacts/cuda_bench.md); without a GPU it says so and exits 0
cuda-bench:
	$(PYTHON) bench/cuda_bench.py

cuda-venv:
	[ -x .venv-ort-gpu/bin/python ] || { $(PYTHON) -m venv .venv-ort-gpu && .venv-ort-gpu/bin/pip install -q onnxruntime-gpu numpy \
	  && .venv-ort-gpu/bin/pip install -q --no-deps -e .; }

## compat: the oldest supported onnxruntime gives the same samples as the pinned one
compat: export
	bash bench/compat.sh $(ONNX_DIR)

## web: serve the repo and print the page's URL (web/index.html: samples, seed box, latent walk, self-test in WASM)
WEB_PORT ?= 8000
web: web-deps
	@echo "edgevae in the browser: open http://localhost:$(WEB_PORT)/web/index.html  (Ctrl-C stops the server)"
	$(PYTHON) -m http.server $(WEB_PORT) --bind 127.0.0.1

## web-deps: onnxruntime-web and onnxruntime-node, exactly as web/package-lock.json pins them (no install scripts)
web-deps: web/node_modules/.package-lock.json

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --ignore-scripts

## web-bench: WASM in headless chromium vs onnxruntime-node vs the Python runtime, and the page's weight; writes artifacts/web.json, web.md
web-bench: venv web-deps
	$(BIN)/python bench/web.py

clean:
	rm -rf $(VENV) .pytest_cache $(ONNX_DIR)
