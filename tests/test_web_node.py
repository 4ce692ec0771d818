"""The JavaScript package under Node.js (onnxruntime-node): the example, the self-test of every variant,
the seeded noise against an independent implementation, the file checks and the input checks.
Skips, saying what is missing, without node or web/node_modules (.ci/run installs them)."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgevae.runtime import contract
from edgevae.runtime.model import seal_manifest

from conftest import SHIPPED_MODEL
from web_support import WEB, cells, is_digit, need_node, run_node

EXAMPLE = WEB / "examples" / "sample.mjs"


def example(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need_node(), str(EXAMPLE), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("n, scale", [(10, 2), (16, 1)])
def test_the_example_self_tests_and_writes_a_png_of_the_right_size(tmp_path: Path, n: int, scale: int) -> None:
    pil = pytest.importorskip("PIL.Image", reason="Pillow reads the PNG: pip install pillow")
    done = example("-n", str(n), "--seed", "3", "--scale", str(scale), "-o", "grid.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "selftest fp32 (onnxruntime-node 1.30.0): pass" in done.stdout
    cols = math.ceil(math.sqrt(n))
    width, height = (cols * 30 + 2) * scale, (math.ceil(n / cols) * 30 + 2) * scale
    with pil.open(tmp_path / "grid.png") as image:
        assert image.format == "PNG" and image.mode == "L" and image.size == (width, height)
        grid = np.asarray(image)[::scale, ::scale]
    found = cells(grid)
    assert [is_digit(c) for c in found] == [True] * n + [False] * (len(found) - n)
    assert f"wrote grid.png ({n} samples, seed 3, {width} x {height} pixels)" in done.stdout
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("variant", sorted(contract.VARIANTS))
def test_every_variant_passes_its_selftest_in_node(variant: str) -> None:
    report = run_node(
        f"""import {{ loadVAE, DEFAULT_MODEL }} from './node.js';
        const vae = await loadVAE(DEFAULT_MODEL, {{ variant: '{variant}', threads: 1 }});
        console.log(JSON.stringify(await vae.selftest()));"""
    )
    assert report["passed"] and report["variant"] == variant, report["lines"]
    assert all(0 <= c["maxDiff"] <= c["tolerance"] for c in report["checks"])
    assert len(report["checks"]) == (5 if contract.VARIANTS[variant].exact else 4)


def xoshiro128ss(seed: int, count: int) -> list[int]:
    """An independent xoshiro128** seeded by SplitMix64, from the papers' C (see web/noise.js)."""
    mask64, mask32, state, x = (1 << 64) - 1, (1 << 32) - 1, [], seed
    for _ in range(2):
        x = (x + 0x9E3779B97F4A7C15) & mask64
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
        z ^= z >> 31
        state += [z & mask32, z >> 32]

    def rotl(v: int, k: int) -> int:
        return ((v << k) | (v >> (32 - k))) & mask32

    out = []
    for _ in range(count):
        s0, s1, s2, s3 = state
        out.append((rotl((s1 * 5) & mask32, 7) * 9) & mask32)
        t = (s1 << 9) & mask32
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        state = [s0, s1, s2, rotl(s3, 11)]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2**53 - 1])
def test_the_noise_is_xoshiro128ss_and_box_muller(seed: int) -> None:
    got = run_node(
        f"""import {{ seedState, nextUint32, standardNormal }} from './noise.js';
        const s = seedState({seed}n);
        const ints = Array.from({{ length: 8 }}, () => nextUint32(s));
        console.log(JSON.stringify({{ ints, normals: Array.from(standardNormal({seed}n, 1001)),
                                      prefix: Array.from(standardNormal({seed}n, 7)) }}));"""
    )
    ints = xoshiro128ss(seed, 1002)
    assert got["ints"] == ints[:8]  # integer arithmetic: bit for bit
    u1 = (np.asarray(ints[0::2], np.float64) + 1) / 2**32
    u2 = np.asarray(ints[1::2], np.float64) / 2**32
    r = np.sqrt(-2 * np.log(u1))
    want = np.stack([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)], 1).reshape(-1)[:1001]
    normals = np.asarray(got["normals"])
    assert np.abs(normals - want.astype(np.float32)).max() <= 1e-6  # libm's log/cos may differ in the last bit
    assert got["prefix"] == got["normals"][:7]  # the first m draws do not depend on how many are asked for
    assert abs(normals.mean()) < 0.15 and abs(normals.std() - 1) < 0.1


def test_same_seed_same_samples_other_seed_other_samples() -> None:
    got = run_node(
        """import { loadVAE, DEFAULT_MODEL } from './node.js';
        const vae = await loadVAE(DEFAULT_MODEL, { threads: 1 });
        const a = await vae.sample(4, 5), b = await vae.sample(4, 5), c = await vae.sample(4, 6);
        const diff = (x, y) => Math.max(...x.data.map((v, i) => Math.abs(v - y.data[i])));
        console.log(JSON.stringify({ same: diff(a, b), other: diff(a, c), shape: [a.rows, a.cols] }));"""
    )
    assert got["same"] <= contract.TOLERANCE["cpu"] and got["other"] > 0.5 and got["shape"] == [4, 784]


def load_error(folder: Path, variant: str = "fp32", selftest: bool = False) -> str:
    """The error loadVAE (and with selftest, vae.selftest()) throws for a folder, as 'Name: message'."""
    return run_node(
        f"""import {{ loadVAE }} from './node.js';
        try {{ const vae = await loadVAE({json.dumps(str(folder))}, {{ variant: '{variant}' }});
               if ({str(selftest).lower()}) await vae.selftest(); console.log(JSON.stringify('no error')); }}
        catch (err) {{ console.log(JSON.stringify(`${{err.name}}: ${{err.message}}`)); }}"""
    )


def test_a_flipped_byte_in_a_graph_is_refused_naming_the_file(tmp_path: Path) -> None:
    model = shutil.copytree(SHIPPED_MODEL, tmp_path / "model")
    blob = bytearray((model / "encoder.int8.onnx").read_bytes())
    blob[100] ^= 0x40
    (model / "encoder.int8.onnx").write_bytes(bytes(blob))
    assert load_error(model) == "no error"  # fp32 does not read the int8 graph
    message = load_error(model, "int8")
    assert message.startswith(f"ModelError: model file {model}/encoder.int8.onnx is corrupt (modified): sha256 ")
    done = example("--model", str(model), "--variant", "int8", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "encoder.int8.onnx is corrupt" in done.stderr


def test_a_changed_manifest_is_refused_by_its_own_checksum(tmp_path: Path) -> None:
    model = shutil.copytree(SHIPPED_MODEL, tmp_path / "model")
    text = (model / contract.MANIFEST_FILE).read_text()
    (model / contract.MANIFEST_FILE).write_text(text.replace('"latent": 20', '"latent": 21', 1))
    assert "does not match its own sha256" in load_error(model)
    (model / contract.MANIFEST_FILE).write_text(text.replace("\n", "\r\n"))  # whitespace only: still intact
    assert load_error(model) == "no error"


@pytest.mark.parametrize(
    "how, expected",
    [
        ({"offset": 10**9}, "does not fit the file's 78464 bytes"),
        ({"bytes": 4}, "does not fit the file's 78464 bytes"),
        ({"dtype": "float64"}, "must be dtype 'float32'"),
    ],
)
def test_an_inconsistent_golden_index_is_refused_naming_golden_bin(tmp_path: Path, how: dict, expected: str) -> None:
    model = shutil.copytree(SHIPPED_MODEL, tmp_path / "model")
    spec = json.loads((model / contract.GOLDEN_SPEC_FILE).read_text())
    spec["tensors"]["decoder.mean"].update(how)
    blob = json.dumps(spec).encode()
    (model / contract.GOLDEN_SPEC_FILE).write_bytes(blob)
    manifest = json.loads((model / contract.MANIFEST_FILE).read_text())
    manifest["files"][contract.GOLDEN_SPEC_FILE].update(sha256=hashlib.sha256(blob).hexdigest(), size=len(blob))
    manifest.pop("manifest_sha256")
    (model / contract.MANIFEST_FILE).write_bytes(seal_manifest(manifest))
    message = load_error(model, selftest=True)
    assert message.startswith(f"ModelError: {model}/golden.bin: index entry 'decoder.mean'") and expected in message


BAD_CALLS = {
    "vae.sample(0, 1)": "RangeError: n must be an integer from 1 to 16384; got 0",
    "vae.sample(2, -1)": "RangeError: seed must be an integer in [0, 2**64); got -1",
    "vae.sample(2, 0.5)": "RangeError: seed must be an integer in [0, 2**64); got 0.5",
    "vae.decode(new Float32Array(30))": "RangeError: z: expected 1 to 16384 rows of 20 values; got 30 values",
    "vae.decode([1, 2])": "RangeError: z: expected 1 to 16384 rows of 20 values; got 2 values",
    "vae.decode(new Float32Array(20).fill(NaN))": "RangeError: z: expected finite values; got NaN in row 0",
    "vae.decode('z')": "TypeError: z: expected a Float32Array, an array of numbers or {data, rows, cols}; got string",
    "vae.reconstruct(new Float32Array(784).fill(2))": "RangeError: x: expected finite values in [0, 1]; got 2 in row 0",
    "vae.interpolate(new Float32Array(784), new Float32Array(784), 1)": "RangeError: steps must be an integer",
    "vae.interpolate(new Float32Array(1568), new Float32Array(784))": "RangeError: a, b: expected one image each",
    "loadVAE(DEFAULT_MODEL, { variant: 'int4' })": "RangeError: variant 'int4' is not in",
}


def test_bad_input_is_one_line_saying_what_was_expected() -> None:
    got = run_node(
        f"""import {{ loadVAE, DEFAULT_MODEL }} from './node.js';
        const vae = await loadVAE(DEFAULT_MODEL, {{ threads: 1 }});
        const out = {{}};
        for (const call of {json.dumps(list(BAD_CALLS))}) {{
          try {{ await eval(call); out[call] = 'no error'; }}
          catch (err) {{ out[call] = `${{err.name}}: ${{err.message}}`; }}
        }}
        console.log(JSON.stringify(out));"""
    )
    for call, expected in BAD_CALLS.items():
        assert got[call].startswith(expected) and "\n" not in got[call], (call, got[call])


def test_reconstruct_and_interpolate_follow_the_latent_means(real_digits: np.ndarray) -> None:
    """reconstruct(x) = decode(mu(x)); interpolate's ends are the reconstructions of a and b."""
    from edgevae.runtime import VAE

    x = (np.asarray(real_digits[:2], np.float32) / 255).tolist()
    got = run_node(
        f"""import {{ loadVAE, DEFAULT_MODEL }} from './node.js';
        const vae = await loadVAE(DEFAULT_MODEL, {{ threads: 1 }});
        const x = {json.dumps(x)};
        const rec = await vae.reconstruct([...x[0], ...x[1]]);
        const walk = await vae.interpolate(x[0], x[1], 5);
        console.log(JSON.stringify({{ rec: Array.from(rec.data), walk: Array.from(walk.data), rows: walk.rows }}));"""
    )
    vae = VAE(SHIPPED_MODEL, device="cpu")
    rec = vae.reconstruct(np.asarray(x, np.float32)).reshape(2, -1)
    walk = vae.interpolate(np.asarray(x[0], np.float32), np.asarray(x[1], np.float32), 5).reshape(5, -1)
    assert got["rows"] == 5
    assert np.abs(np.asarray(got["rec"]).reshape(2, -1) - rec).max() <= contract.TOLERANCE["cpu"]
    assert np.abs(np.asarray(got["walk"]).reshape(5, -1) - walk).max() <= contract.TOLERANCE["cpu"]
