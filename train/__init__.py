"""edgevae.train: PyTorch training of an MLP or convolutional VAE on MNIST-format data or your own
images (a folder of pictures or an .npy array: imagedata.py).

Run `python -m edgevae.train --help`. The model, the loss terms and the checkpoint format live
in `model.py`, `config.py` and `checkpoint.py`; nothing here runs at import, and importing this
package (or its config) does not import torch.
"""

from __future__ import annotations

import importlib.util

from edgevae.runtime.errors import MissingDependencyError

TRAIN_EXTRA_HINT = (
    "pip install 'edgevae[train]' (in a clone: .venv/bin/pip install -e '.[train]', "
    "or `make venv`); the runtime alone (edgevae[cpu]) cannot train or export"
)


def is_importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a broken half-installed package
        return False


def require_torch(purpose: str, modules: tuple[str, ...] = ("torch",)) -> None:
    """MissingDependencyError naming the extra to install when a module `purpose` needs is absent."""
    missing = [m for m in modules if not is_importable(m)]
    if missing:
        raise MissingDependencyError(
            f"{purpose} needs {' and '.join(missing)}, which is not installed: {TRAIN_EXTRA_HINT}"
        )
