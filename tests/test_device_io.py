"""Device-resident runs (runtime/bound.py): decode and sample with inputs and outputs left on the VAE's
device, taken as OrtValues, DLPack tensors or numpy arrays, checked for dtype, shape and device."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgevae.runtime import VAE
from edgevae.runtime.bound import as_ortvalue, to_dlpack

from conftest import DEVICES, need

TOLERANCE = 1e-6  # the same graph on the same device: equal but for the summation order of a bigger run


def kinds(z: np.ndarray, device: str) -> dict[str, object]:
    """z as each accepted kind of input on `device`."""
    out: dict[str, object] = {"numpy": z, "ortvalue": ort.OrtValue.ortvalue_from_numpy(z, device, 0)}
    try:
        import torch

        out["torch"] = torch.from_numpy(z).to(device)
    except ImportError:  # torch is optional for the runtime: its kind is tested where it is installed
        pass
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [1, 7, 300])
def test_decode_on_device_equals_decode_for_every_kind_of_input(device: str, batch: int) -> None:
    vae = VAE(device=device)
    z = vae.sample_latent(batch, seed=batch)
    want = vae.decode(z).reshape(batch, -1)
    for kind, value in kinds(z, device).items():
        got = vae.decode_on_device(value)
        assert isinstance(got, ort.OrtValue) and got.device_name().lower() == device, kind
        assert got.shape() == [batch, vae.pixels]
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=TOLERANCE, err_msg=kind)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [1, 64])
def test_sample_on_device_is_sample(device: str, batch: int) -> None:
    vae = VAE(device=device)
    got = vae.sample_on_device(batch, seed=3).numpy().reshape(batch, *vae.output_shape)
    np.testing.assert_allclose(got, vae.sample(batch, seed=3), rtol=0, atol=TOLERANCE)


def test_the_output_goes_to_torch_without_a_copy() -> None:
    need("torch")
    import torch

    out = VAE(device="cpu").sample_on_device(4, seed=0)
    shared = torch.from_dlpack(to_dlpack(out))
    assert shared.data_ptr() == out.data_ptr() and tuple(shared.shape) == tuple(out.shape())


def test_a_dlpack_input_is_read_in_place() -> None:
    need("torch")
    import torch

    z = torch.zeros((2, 20))
    bound = as_ortvalue(z, "z", 20, "cpu")
    assert bound.data_ptr() == z.data_ptr()


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (np.zeros((3, 20), np.float64), TypeError, "z: expected float32 values; got a numpy array of float64"),
        (np.zeros((3, 19), np.float32), ValueError, "z: expected shape (N >= 1, 20); got (3, 19)"),
        (np.zeros((20,), np.float32), ValueError, "z: expected shape (N >= 1, 20); got (20,)"),
        (np.zeros((0, 20), np.float32), ValueError, "got (0, 20)"),
        ([[0.0] * 20], TypeError, "expected an onnxruntime OrtValue, a DLPack tensor (torch, CuPy, JAX) or a numpy"),
        (ort.OrtValue.ortvalue_from_numpy(np.zeros((2, 20), np.int32)), TypeError, "got tensor(int32)"),
    ],
)
def test_bad_device_inputs_say_what_was_expected(value: object, error: type, message: str) -> None:
    with pytest.raises(error) as info:
        VAE(device="cpu").decode_on_device(value)
    assert message in str(info.value)


def test_a_fixed_batch_build_takes_its_batch_only() -> None:
    vae = VAE(device="cpu", variant="b1")
    assert vae.decode_on_device(np.zeros((1, 20), np.float32)).shape() == [1, vae.pixels]
    with pytest.raises(ValueError, match=r"z: expected shape \(1, 20\); got \(2, 20\)"):
        vae.decode_on_device(np.zeros((2, 20), np.float32))


def test_a_tensor_on_another_device_is_refused_before_any_run() -> None:
    on_cpu = ort.OrtValue.ortvalue_from_numpy(np.zeros((2, 20), np.float32))
    with pytest.raises(ValueError, match="z: expected a tensor on cuda .this VAE's device.; got one on cpu"):
        as_ortvalue(on_cpu, "z", 20, "cuda")


def test_big_cpu_batches_go_to_the_all_cores_session() -> None:
    from edgevae.runtime.sessions import WIDE_ROWS

    vae = VAE(device="cpu")  # threads=None: small batches on single-thread sessions
    assert vae.loaded.wide is not None
    vae.decode_on_device(np.zeros((WIDE_ROWS - 1, 20), np.float32))
    assert "decoder" not in vae.loaded.wide.sessions
    vae.decode_on_device(np.zeros((WIDE_ROWS, 20), np.float32))
    assert "decoder" in vae.loaded.wide.sessions
    assert VAE(device="cpu", threads=1).loaded.wide is None


def test_sample_on_device_is_bounded_like_sample() -> None:
    vae = VAE(device="cpu", memory_budget=2_000_000)
    for call in (vae.sample, vae.sample_on_device):
        with pytest.raises(ValueError, match="n=5,000 is over its bound of"):
            call(5000, seed=0)
