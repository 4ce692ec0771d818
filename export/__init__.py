"""edgevae.export: encoder/decoder checkpoints -> two ONNX graphs, validated against PyTorch.

Run `python -m edgevae.export --help`. Graph names, axes, opset and tolerances come from
`edgevae.runtime.contract`.
"""
