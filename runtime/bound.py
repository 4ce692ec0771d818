"""Device-resident runs: a graph's inputs and outputs stay where the VAE's session runs, no host copy.

    z = torch.randn(65536, 20, device="cuda")        # or a CuPy / JAX array, or an onnxruntime OrtValue
    mean = vae.decode_on_device(z)                    # an ort.OrtValue on the GPU, (N, pixels)
    pixels = torch.from_dlpack(to_dlpack(mean))      # still on the GPU

Inputs are taken as onnxruntime `OrtValue`s, as any tensor that speaks DLPack (`__dlpack__`: torch,
CuPy, JAX, numpy), zero-copy, or as numpy arrays (copied to the device once). They are checked for
dtype, shape and device, never for their values: reading them would cost the copy this path avoids,
so a NaN in gives NaN out. The session runs with an IOBinding whose outputs are allocated on the
session's device; only the outputs asked for are bound and returned.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from .devices import ORT_DEVICES
from .sessions import ORT_ERRORS, run_error


def as_ortvalue(value: Any, name: str, columns: int, device: str, batch: int | None = None) -> ort.OrtValue:
    """`value` as a float32 (N, columns) OrtValue on `device` ("cpu" or "cuda"), without a copy when
    it is an OrtValue or a DLPack tensor there already; a TypeError/ValueError naming what arrived."""
    if isinstance(value, ort.OrtValue):
        ov = value
    elif isinstance(value, np.ndarray):
        if value.dtype != np.float32:
            raise TypeError(f"{name}: expected float32 values; got a numpy array of {value.dtype}")
        ov = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(value), ORT_DEVICES[device], 0)
    elif hasattr(value, "__dlpack__"):
        try:
            ov = ort.OrtValue.from_dlpack(value)
        except Exception as exc:  # noqa: BLE001 - onnxruntime's message says why (dtype, strides, device)
            raise ValueError(f"{name}: onnxruntime cannot take this DLPack tensor: {exc}") from exc
    else:
        raise TypeError(
            f"{name}: expected an onnxruntime OrtValue, a DLPack tensor (torch, CuPy, JAX) or a numpy "
            f"array; got {type(value).__name__}"
        )
    if ov.data_type() != "tensor(float)":
        raise TypeError(f"{name}: expected float32 values; got {ov.data_type()}")
    shape = tuple(ov.shape())
    if len(shape) != 2 or shape[1] != columns or shape[0] < 1 or (batch is not None and shape[0] != batch):
        rows = "N >= 1" if batch is None else str(batch)
        raise ValueError(f"{name}: expected shape ({rows}, {columns}); got {shape}")
    where = ov.device_name().lower()
    if where != ORT_DEVICES[device]:
        raise ValueError(f"{name}: expected a tensor on {device} (this VAE's device); got one on {where}")
    return ov


def run_bound(
    session: ort.InferenceSession, graph: str, device: str, feeds: dict[str, ort.OrtValue], outputs: list[str]
) -> list[ort.OrtValue]:
    """One run of `session` with `feeds` bound as they are and `outputs` allocated on `device`."""
    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_ortvalue_input(name, value)
    for name in outputs:
        binding.bind_output(name, ORT_DEVICES[device], 0)
    binding.synchronize_inputs()  # a tensor written on another stream (torch, CuPy) is complete before the run
    try:
        session.run_with_iobinding(binding)
    except ORT_ERRORS as exc:
        raise run_error(graph, session.get_providers()[0], exc) from exc
    return list(binding.get_outputs())


def to_dlpack(value: ort.OrtValue) -> Any:
    """An object with `__dlpack__` sharing `value`'s memory: `torch.from_dlpack(to_dlpack(v))`,
    `cupy.from_dlpack(...)`, `np.from_dlpack(...)` for a value on the CPU."""
    return value._get_c_value()
