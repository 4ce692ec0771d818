#!/usr/bin/env bash
# The oldest supported onnxruntime (contract.MIN_ONNXRUNTIME) runs the exported model and gives the
# same samples as the pinned one. Usage: bench/compat.sh [MODEL_DIR]   (make compat)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-artifacts/onnx}"
oldest=$(.venv/bin/python -c "from edgevae.runtime.contract import MIN_ONNXRUNTIME as v; print(v)")
venv=.venv-ort-$oldest
[ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q "onnxruntime~=$oldest.0" "numpy<2" && "$venv/bin/pip" install -q --no-deps -e .; }
code="import sys, numpy as np, onnxruntime as o; from edgevae.runtime import VAE; v = VAE('$model', device='cpu'); np.save(sys.argv[1], v.sample(256, seed=0)); print('onnxruntime', o.__version__, 'numpy', np.__version__)"
.venv/bin/python -c "$code" /tmp/edgevae_pinned.npy
"$venv/bin/python" -c "$code" /tmp/edgevae_oldest.npy
.venv/bin/python -c "import numpy as np; d = np.abs(np.load('/tmp/edgevae_pinned.npy') - np.load('/tmp/edgevae_oldest.npy')).max(); print(f'max |pinned - oldest| over 256 samples: {d:.2e}'); assert d <= 1e-5"
