"""Exceptions raised by the runtime. Bad arguments raise plain ValueError."""


class ModelError(RuntimeError):
    """A model folder is missing, incomplete, tampered with or inconsistent with the contract."""


class DeviceError(RuntimeError):
    """The requested execution provider is not available or did not load."""
