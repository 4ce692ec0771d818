"""Which device a variant runs on, and what an onnxruntime failure looks like.

Without a GPU, CUDA is faked the way onnxruntime-gpu behaves on a machine without one: the CUDA
provider is listed, and a session asked for it runs on the CPU (the runtime calls that "did not
load"). Every session start is recorded, so a test can prove that none was asked of CUDA.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from edgevae.runtime import VAE, DeviceError, contract
from edgevae.runtime.cli import main
from edgevae.runtime.errors import RunError
from edgevae.runtime.model import CPU, CUDA, ModelFiles, run_error

from conftest import REAL_SESSION, SHIPPED_MODEL

ORT_GRAPHS = {
    hashlib.sha256((SHIPPED_MODEL / contract.VARIANTS["ort"].file(g)).read_bytes()).hexdigest() for g in contract.GRAPHS
}


def test_ort_on_cuda_is_refused_before_any_session_starts(fake_cuda: list) -> None:
    with pytest.raises(DeviceError) as refused:
        VAE(device="cuda", variant="ort")
    message = str(refused.value)
    assert "variant 'ort' is not for device 'cuda' (it runs on cpu)" in message and "\n" not in message
    assert "kernels chosen for the CPU provider; on CUDA use variant fp32 or fp16" in message
    assert fake_cuda == []  # refused from the manifest and contract alone


def test_cli_refusal_is_one_line_and_starts_nothing(
    fake_cuda: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.png"
    assert main(["sample", "-n", "2", "--device", "cuda", "--variant", "ort", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgevae: error: variant 'ort' is not for device 'cuda'")
    assert fake_cuda == [] and not out.exists()


def test_auto_runs_ort_on_the_cpu_and_says_so(fake_cuda: list, tmp_path: Path, capsys) -> None:
    vae = VAE(device="auto", variant="ort")
    assert vae.providers == [CPU] and vae.device == "cpu"
    assert fake_cuda and all(providers == [CPU] for _, providers in fake_cuda)
    assert main(["sample", "-n", "2", "--variant", "ort", "-o", str(tmp_path / "s.png")]) == 0
    assert "device: auto -> cpu (CPUExecutionProvider); variant: ort (built for cpu only)" in capsys.readouterr().out


def test_info_reports_ort_as_not_for_cuda_and_never_starts_it_there(
    fake_cuda: list, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", "--device", "cpu"]) == 0  # CUDA "did not load" is not run, not a failure
    out = capsys.readouterr().out
    assert "selftest cuda ort: not for CUDA (variant 'ort' is not for device 'cuda'" in out
    assert "selftest cuda fp32: not run (" in out and "selftest cpu ort (CPUExecutionProvider): pass" in out
    asked_cuda = [sha for sha, providers in fake_cuda if CUDA in providers]
    assert asked_cuda and not set(asked_cuda) & ORT_GRAPHS


@pytest.mark.parametrize("variant, devices", [("fp32", ("cpu", "cuda")), ("ort", ("cpu",))])
def test_the_rule_is_data_from_the_manifest(variant: str, devices: tuple[str, ...]) -> None:
    files = ModelFiles(SHIPPED_MODEL, {"variants": {variant: {}}}, {}, variant=variant)
    assert files.devices == devices == contract.VARIANTS[variant].devices  # no record: the contract's
    recorded = ModelFiles(SHIPPED_MODEL, {"variants": {variant: {"devices": ["cpu"]}}}, {}, variant=variant)
    assert recorded.devices == ("cpu",) and recorded.session_device("auto") == "cpu"
    with pytest.raises(DeviceError, match=f"variant '{variant}' is not for device 'cuda'"):
        recorded.session_device("cuda")


class FailingRun:
    """Stands in for a session's compiled core: every run raises onnxruntime's own Fail."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def run(self, *args: Any) -> Any:
        fail = ort.capi.onnxruntime_pybind11_state.Fail
        raise fail("[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700: an illegal memory access was encountered")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.fixture
def failing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    def session(*args: Any, **kw: Any) -> Any:
        real = REAL_SESSION(*args, **kw)
        real._sess = FailingRun(real._sess)
        return real

    monkeypatch.setattr(ort, "InferenceSession", session)


@pytest.mark.parametrize("command", [["sample", "-n", "3"], ["selftest"], ["info"]])
def test_an_onnxruntime_failure_is_one_line_and_exit_2_from_the_cli(
    failing_runs: None, command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["-o", str(tmp_path / "s.png")] if command[0] == "sample" else []
    code = main(command + ["--device", "cpu"] + extra)
    captured = capsys.readouterr()
    if command[0] == "info":  # info runs every check and reports each failure, then exits 1
        assert code == 1 and "FAIL (onnxruntime failed running encoder.onnx on CPUExecutionProvider" in captured.out
        return
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Traceback" not in captured.err
    assert err[0].startswith("edgevae: error: onnxruntime failed running ")
    assert ".onnx on CPUExecutionProvider: [ONNXRuntimeError] : 1 : FAIL : CUDA failure 700" in err[0]


def test_an_api_failure_is_a_run_error_naming_graph_and_provider(failing_runs: None) -> None:
    vae = VAE(device="cpu", variant="int8")
    with pytest.raises(RunError, match=r"onnxruntime failed running decoder\.int8\.onnx on CPUExecutionProvider"):
        vae.decode(np.zeros((2, 20), np.float32))


def test_after_a_cuda_failure_the_message_says_to_start_a_new_process() -> None:
    cause = ort.capi.onnxruntime_pybind11_state.Fail("CUDA failure 700:\n an illegal memory access")
    message = str(run_error("decoder.onnx", CUDA, cause))
    assert message.startswith("onnxruntime failed running decoder.onnx on CUDAExecutionProvider: CUDA failure 700:")
    assert "\n" not in message and message.endswith("CUDA context may now be unusable: start a new process")
    assert "new process" not in str(run_error("decoder.onnx", CPU, cause))
