"""The one error model of edgevae, and how every command line reports it.

Every domain error (a model folder, a device, a dataset, a checkpoint, an export check) is an
`EdgeVAEError`. The three CLIs (`edgevae`, and the training and export stages' `python -m`
commands) print those, and `ValueError` for bad input, as one line and exit 2; anything else is a bug or an
environment failure (out of memory, a torch error) and keeps its traceback. `--debug` shows the
traceback of domain errors too.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class EdgeVAEError(Exception):
    """Base of every error edgevae raises on purpose."""


class ModelError(EdgeVAEError):
    """A model folder is missing, incomplete, tampered with or inconsistent with the contract."""


class DeviceError(EdgeVAEError):
    """The requested device is not available, or its execution provider did not load."""


class RunError(EdgeVAEError):
    """onnxruntime failed while running a graph (a kernel or device failure, not bad input)."""


class InputError(EdgeVAEError, ValueError):
    """An input file cannot be read or an output cannot be written (also a ValueError: bad input)."""


class MissingDependencyError(EdgeVAEError, ImportError):
    """An optional package is needed for this feature; the message names the extra to install."""


class SelftestError(EdgeVAEError):
    """Golden vectors did not replay within tolerance on this device (`edgevae selftest` and `info`,
    and the export's own replay of them); CLIs print the report and exit 1, not 2."""

    exit_code = 1


SelftestFailed = SelftestError  # its name in 0.1.0


EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def run_cli(body: Callable[[], int], prog: str, debug: bool = False, interrupted: str = "interrupted") -> int:
    """Run a CLI's body: domain errors and ValueError become one line on stderr and exit 2
    (SelftestError prints its report and exits 1); anything else propagates with its traceback.
    With debug=True domain errors propagate too."""
    try:
        return body()
    except SelftestError as exc:
        if debug:
            raise
        print(exc)
        return exc.exit_code
    except (EdgeVAEError, ValueError) as exc:
        if debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
