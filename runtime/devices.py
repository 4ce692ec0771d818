"""The one definition of devices for every stage: names, the `--device` flag, and resolution.

"auto" means CUDA when it is there, else the CPU; "cuda" without CUDA is a `DeviceError`. The
runtime resolves against onnxruntime's providers, training against `torch.cuda.is_available()`,
export validates on the providers that "auto"/"cuda" name; all three call `resolve_device`.
Nothing here imports onnxruntime or torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import DeviceError

if TYPE_CHECKING:  # argparse is imported by the CLIs that use the flag, not at every load (cold start)
    import argparse

AUTO, CPU_DEVICE, CUDA_DEVICE = "auto", "cpu", "cuda"
DEVICES = (AUTO, CPU_DEVICE, CUDA_DEVICE)
PROVIDERS = {CPU_DEVICE: "CPUExecutionProvider", CUDA_DEVICE: "CUDAExecutionProvider"}
ORT_DEVICES = {CPU_DEVICE: "cpu", CUDA_DEVICE: "cuda"}  # -> onnxruntime's device names (OrtValue, IOBinding)


def check_device(device: object) -> str:
    """The device name, or a ValueError that lists the accepted ones."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    return str(device)


def resolve_device(
    device: str,
    cuda_available: bool,
    missing: str = "CUDA is not available here",
    remedy: str = "install the GPU build on a machine with CUDA",
) -> str:
    """'cpu' or 'cuda': auto -> cuda when available, else cpu; cuda without CUDA -> DeviceError.

    missing and remedy complete the error, e.g. "onnxruntime 1.23 has no CUDAExecutionProvider (it
    lists ...)" and "install edgevae[gpu] on a machine with CUDA".
    """
    device = check_device(device)
    if device == CUDA_DEVICE and not cuda_available:
        raise DeviceError(f"device 'cuda' was asked for, but {missing}; {remedy}, or use device 'cpu'")
    if device == AUTO:
        return CUDA_DEVICE if cuda_available else CPU_DEVICE
    return device


def add_device_argument(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """The `--device {auto,cpu,cuda}` flag every CLI takes (each prints what it resolved to)."""
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default=AUTO,
        help=help or "auto: CUDA when available, else the CPU (default: auto)",
    )
