"""edgevae.export: encoder/decoder checkpoints -> two ONNX graphs, validated against PyTorch.

Run `python -m edgevae.export --help`. Graph names, axes, opset and tolerances come from
`edgevae.runtime.contract`. Your own PyTorch VAE goes through the same gates with
`edgevae.export.export_pair(encoder, decoder, out_dir, ...)` (export/pair.py); importing this
package imports neither torch nor onnx until that is called.
"""

from __future__ import annotations

from typing import Any

__all__ = ["export_pair", "ContractError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import pair

        return getattr(pair, name)
    raise AttributeError(f"module 'edgevae.export' has no attribute {name!r}")
