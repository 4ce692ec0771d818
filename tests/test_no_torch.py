"""The runtime works in a process where importing torch, onnx or Pillow is impossible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'onnx', 'onnxscript', 'torchvision', 'PIL'):
            raise ImportError(f'{name} is blocked in this test')
        return None
sys.meta_path.insert(0, Block())
"""


def run_blocked(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_torch_really_is_blocked(tmp_path: Path) -> None:
    result = run_blocked("import torch", tmp_path)
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_runtime_api_without_torch(tmp_path: Path, real_digits: np.ndarray) -> None:
    np.save(tmp_path / "digits.npy", real_digits[:8])
    code = """
import json, numpy as np
from edgevae.runtime import VAE
vae = VAE(device='auto')
s = vae.sample(8, seed=0)
r = vae.reconstruct(np.load('digits.npy'))
z = vae.encode_z(np.load('digits.npy'), seed=1)
print(json.dumps({'sample': list(s.shape), 'recon': list(r.shape), 'z': list(z.shape), 'device': vae.device,
                  'loaded': sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx'))}))
"""
    result = run_blocked(code, tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["sample"] == [8, 28, 28] and out["recon"] == [8, 28, 28] and out["z"] == [8, 20]
    assert out["loaded"] == []


def test_cli_without_torch(tmp_path: Path, real_digits: np.ndarray) -> None:
    np.save(tmp_path / "digits.npy", real_digits[:4])
    for args in (["sample", "-n", "16", "-o", "s.png"], ["reconstruct", "digits.npy", "-o", "r.png"], ["info"]):
        result = run_blocked(f"from edgevae.runtime.cli import main; sys.exit(main({args!r}))", tmp_path)
        assert result.returncode == 0, (args, result.stderr)
    assert (tmp_path / "s.png").stat().st_size > 0 and (tmp_path / "r.png").stat().st_size > 0


def test_selftest_score_and_likelihood_without_torch(tmp_path: Path, real_digits: np.ndarray) -> None:
    np.save(tmp_path / "digits.npy", real_digits[:6])
    for args in (["selftest"], ["score", "digits.npy", "-o", "s.csv", "--threshold", "p99"]):
        result = run_blocked(f"from edgevae.runtime.cli import main; sys.exit(main({args!r}))", tmp_path)
        assert result.returncode == 0, (args, result.stderr)
    assert (
        "selftest on CPUExecutionProvider: pass"
        in run_blocked("from edgevae.runtime.cli import main; sys.exit(main(['selftest']))", tmp_path).stdout
    )
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 7
    code = """
import json, numpy as np
from edgevae.runtime import VAE
vae = VAE()
x = np.load('digits.npy')
print(json.dumps({'elbo': vae.elbo(x, seed=0).tolist(), 'll': vae.log_likelihood(x, k=8, seed=0).tolist(),
                  'loaded': sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx'))}))
"""
    result = run_blocked(code, tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["loaded"] == [] and len(out["ll"]) == 6
    assert all(-200 < v < 0 for v in out["elbo"] + out["ll"])  # values; parity is test_likelihood.py


def test_runtime_sources_do_not_import_torch_or_training_code() -> None:
    runtime = Path(__file__).resolve().parents[1] / "runtime"
    for source in runtime.glob("*.py"):
        text = source.read_text()
        for forbidden in (
            "import torch",
            "from torch",
            "import onnx\n",
            "from onnx ",
            "edgevae.train",
            "edgevae.export",
        ):
            assert forbidden not in text, f"{source.name} contains {forbidden!r}"


def test_training_and_export_without_torch_name_the_extra(tmp_path: Path) -> None:
    for module, argv in (
        ("edgevae.train.__main__", ["--out", "o"]),
        ("edgevae.export.__main__", ["--out", "o"]),
        ("edgevae.train.convert", ["o"]),
    ):
        result = run_blocked(f"from {module} import main; sys.exit(main({argv!r}))", tmp_path)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert "torch" in result.stderr and "pip install 'edgevae[train]'" in result.stderr
        help_text = run_blocked(f"from {module} import main; sys.exit(main(['--help']))", tmp_path)
        assert help_text.returncode == 0 and "--device" in help_text.stdout  # help needs no torch
    assert not (tmp_path / "o").exists()
