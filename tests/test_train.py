"""The training loop on real MNIST slices: learns, is reproducible, resumes, reports."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import need

need("torch")

import torch

from edgevae.train import checkpoint, loop
from edgevae.train.config import TrainConfig, VAEConfig

SMALL = dict(train_limit=1000, test_limit=200, batch_size=50, iw_samples=0)


def run(config: TrainConfig, data_dir: Path, out: Path, **kwargs: object) -> dict:
    return loop.run_training(config, data_dir, out, device="cpu", progress=False, **kwargs)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_short_run_on_real_mnist_lowers_the_loss(data_dir: Path, tmp_path: Path, likelihood: str) -> None:
    config = TrainConfig(model=VAEConfig(likelihood=likelihood), epochs=3, **SMALL)
    metrics = run(config, data_dir, tmp_path)
    losses = [h["train_loss"] for h in metrics["history"]]
    elbos = [h["test_elbo"] for h in metrics["history"]]
    assert losses[-1] < losses[0] * 0.9, losses
    assert elbos[-1] > elbos[0], elbos
    for name in (*checkpoint.FILES, checkpoint.RECORD_FILE, "metrics.json", "loss_curve.png", "samples.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["complete"] and on_disk["history"] == metrics["history"]


def test_same_seed_gives_the_same_losses_and_weights(data_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, **SMALL)
    a = run(config, data_dir, tmp_path / "a")
    b = run(config, data_dir, tmp_path / "b")
    for ha, hb in zip(a["history"], b["history"], strict=True):
        for key in ("train_loss", "test_elbo"):
            assert ha[key] == pytest.approx(hb[key], abs=1e-6)
    for name in (checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE):
        sa = checkpoint.read_file(tmp_path / "a" / name)["state_dict"]
        sb = checkpoint.read_file(tmp_path / "b" / name)["state_dict"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("stage", ["fresh", "fine-tuning", "vamp prior"])
def test_interrupted_then_resumed_run_matches_uninterrupted(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    config = TrainConfig(epochs=3, **SMALL)
    if stage == "vamp prior":  # the pseudo-inputs and their optimizer state resume with the rest
        config = TrainConfig(model=VAEConfig(prior="vamp", prior_components=20), epochs=3, **SMALL)
    if stage == "fine-tuning":  # a stage of a staged model (config.STAGES) resumes bit for bit too
        run(TrainConfig(epochs=1, **SMALL), data_dir, tmp_path / "source")
        config = TrainConfig(epochs=3, objective="iwae", k=2, init_from=str(tmp_path / "source"), **SMALL)
    whole = run(config, data_dir, tmp_path / "whole")

    real_evaluate = loop.evaluate_elbo
    calls = {"n": 0}

    def interrupt_in_third_epoch(*args: object, **kwargs: object) -> dict:
        calls["n"] += 1
        if calls["n"] == 3:  # Ctrl-C at the end of epoch 3, before it is saved
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_elbo", interrupt_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(config, data_dir, tmp_path / "split")
    state = checkpoint.load_train_state(tmp_path / "split" / checkpoint.STATE_FILE)
    assert state["epoch"] == 2  # only the current epoch was lost
    monkeypatch.setattr(loop, "evaluate_elbo", real_evaluate)
    resumed = run(config, data_dir, tmp_path / "split", resume=True)

    assert len(resumed["history"]) == 3
    for hw, hr in zip(whole["history"], resumed["history"], strict=True):
        assert hw["train_loss"] == pytest.approx(hr["train_loss"], abs=1e-6)
        assert hw["test_elbo"] == pytest.approx(hr["test_elbo"], abs=1e-6)
    names = [checkpoint.ENCODER_FILE, checkpoint.DECODER_FILE]
    if stage == "vamp prior":
        names.append(checkpoint.PRIOR_FILE)
    assert (tmp_path / "split" / checkpoint.PRIOR_FILE).exists() == (stage == "vamp prior")
    for name in names:
        sw = checkpoint.read_file(tmp_path / "whole" / name)["state_dict"]
        sr = checkpoint.read_file(tmp_path / "split" / name)["state_dict"]
        assert all(torch.equal(sw[k], sr[k]) for k in sw)
        assert ("pseudo_inputs" in sw) == (name == checkpoint.PRIOR_FILE)


def test_resume_with_a_different_config_is_refused(data_dir: Path, tmp_path: Path) -> None:
    run(TrainConfig(epochs=1, **SMALL), data_dir, tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match="different config"):
        run(TrainConfig(epochs=1, lr=5e-4, **SMALL), data_dir, tmp_path, resume=True)


def test_fine_tuning_starts_from_the_source_run_and_records_it(data_dir: Path, tmp_path: Path) -> None:
    source = run(TrainConfig(epochs=2, **SMALL), data_dir, tmp_path / "source")
    tuned_config = TrainConfig(epochs=1, objective="iwae", k=3, init_from=str(tmp_path / "source"), **SMALL)
    tuned = run(tuned_config, data_dir, tmp_path / "tuned")
    fresh = run(dataclasses.replace(tuned_config, init_from=""), data_dir, tmp_path / "fresh")
    # the source's weights carry over: its first epoch starts where the source ended, far below a fresh start
    assert tuned["history"][0]["train_loss"] < source["history"][0]["train_loss"]
    assert tuned["history"][0]["train_loss"] < fresh["history"][0]["train_loss"] - 5.0
    src = tuned["init_from"]
    enc = checkpoint.read_file(tmp_path / "source" / checkpoint.ENCODER_FILE)
    assert (src["run"], src["epochs"]) == (enc["run"], 2)
    assert src["train_config"] == TrainConfig(epochs=2, **SMALL).to_dict()
    assert src["train_minutes"] == pytest.approx(sum(h["seconds"] for h in source["history"]) / 60)
    assert tuned["config"]["init_from"] == str(tmp_path / "source")
    stages = tuned["stages"]  # every stage the weights went through, oldest first, with its minutes
    assert [(st["objective"], st["k"], st["epochs"]) for st in stages] == [("elbo", 1, 2), ("iwae", 3, 1)]
    assert stages[1]["minutes"] == pytest.approx(sum(h["seconds"] for h in tuned["history"]) / 60)
    again = run(dataclasses.replace(tuned_config, init_from=str(tmp_path / "tuned")), data_dir, tmp_path / "again")
    assert [st["epochs"] for st in again["stages"]] == [2, 1, 1]
    assert "init_from" not in TrainConfig().to_dict()  # saved configs without it stay as they were


def test_fine_tuning_refuses_another_network(data_dir: Path, tmp_path: Path) -> None:
    run(TrainConfig(epochs=1, **SMALL), data_dir, tmp_path / "source")
    config = TrainConfig(model=VAEConfig(latent=10), epochs=1, init_from=str(tmp_path / "source"), **SMALL)
    with pytest.raises(checkpoint.CheckpointError, match="model config .* differs"):
        run(config, data_dir, tmp_path / "tuned")


@pytest.mark.parametrize(
    ("model", "wanted", "folder"),
    [
        ("large", ["large-vamp", "large-vamp-iwae5"], "artifacts/checkpoints-large"),
        ("default", ["default", "default-iwae20"], "artifacts/checkpoints"),
    ],
)
def test_make_train_runs_each_stage_from_the_one_before(
    tmp_path: Path, model: str, wanted: list[str], folder: str
) -> None:
    """`make train MODEL=large` (or default) runs the presets of config.STAGES in order, each --init-from the last
    one's folder, the final stage into the model's checkpoints folder (a stand-in python logs the runs)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "runs.log"
    fake = venv / "bin" / "python"
    fake.write_text(
        f'#!/bin/sh\nif [ "$1" = -m ]; then shift 2; echo "$@" >> {log}; else exec {sys.executable} "$@"; fi\n'
    )
    fake.chmod(0o755)
    (venv / "bin" / ".installed").touch()  # newer than pyproject.toml: make does not build this venv
    repo = Path(__file__).resolve().parents[1]
    made = subprocess.run(
        ["make", "-s", "train", f"MODEL={model}", "DATA_DIR=/mnist", f"VENV={venv}", "TRAIN_ARGS=--overwrite"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    runs = [line.split() for line in log.read_text().splitlines()]
    from edgevae.train.config import stages

    presets = [r[r.index("--preset") + 1] for r in runs]
    assert presets == list(stages(model)) == wanted
    outs = [r[r.index("--out") + 1].strip('"') for r in runs]
    assert outs[-1] == folder
    assert "--init-from" not in runs[0]
    for before, r in zip(outs[:-1], runs[1:], strict=True):
        assert r[r.index("--init-from") + 1] == before and "--overwrite" in r


def test_importance_weighted_metric_is_written(data_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, train_limit=500, test_limit=50, batch_size=50, iw_samples=20)
    metrics = run(config, data_dir, tmp_path)
    assert metrics["iw_samples"] == 20 and metrics["test_images_binarized"] is True
    assert metrics["test_iw_log_likelihood"] >= metrics["test_elbo"] - 1.0  # a tighter bound, up to noise
    assert metrics["test_iw_nll"] == -metrics["test_iw_log_likelihood"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgevae.train", *args], capture_output=True, text=True, timeout=300)


def test_cli_missing_data_exits_with_one_clear_line(tmp_path: Path) -> None:
    result = cli("--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--device", "cpu")
    assert result.returncode == 2
    assert f"error: data folder {tmp_path / 'nowhere'} does not exist" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_trains_and_reports_device(data_dir: Path, tmp_path: Path) -> None:
    result = cli(
        "--data-dir",
        str(data_dir),
        "--out",
        str(tmp_path),
        "--epochs",
        "1",
        "--train-limit",
        "300",
        "--test-limit",
        "50",
        "--iw-samples",
        "5",
        "--device",
        "auto",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert "device: auto -> cpu" in result.stderr
    assert "importance-weighted log p(x)" in result.stdout


def test_cli_help_states_defaults_read_from_the_presets() -> None:
    from edgevae.train.config import PRESETS

    result = cli("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())  # argparse wraps lines anywhere

    def shown(get: object) -> str:  # the default preset's value, then each other preset's that differs
        values = {name: get(cfg) for name, cfg in PRESETS.items()}  # type: ignore[operator]
        base = values.pop("default")
        return f"(default: {base}" + "".join(f"; {n}: {v}" for n, v in values.items() if v != base) + ")"

    for want in (
        shown(lambda c: c.epochs),
        shown(lambda c: c.batch_size),
        shown(lambda c: c.lr),
        shown(lambda c: c.lr_schedule),
        shown(lambda c: c.model.likelihood),
        shown(lambda c: c.model.block),
        shown(lambda c: c.objective),
        "(default: 250; large: 240; large-iwae5: 60; large-iwae20: 40; large-vamp: 240; large-vamp-iwae5: 60; "
        "default-iwae20: 30; book: 30; conv32: 20; conv28: 30)",
        shown(lambda c: c.model.prior),
        "default: auto",
        "--resume",
        "--overwrite",
        "--no-binarize",
    ):
        assert want in text, want


def test_every_config_field_has_exactly_one_flag() -> None:
    import dataclasses

    from edgevae.train.__main__ import build_parser
    from edgevae.train.config import TrainConfig, VAEConfig

    dests = {a.dest for a in build_parser()._actions}
    fields = {f.name for cls in (TrainConfig, VAEConfig) for f in dataclasses.fields(cls)} - {"model"}
    assert fields <= dests, fields - dests


@pytest.mark.parametrize(
    "argv, changed",
    [
        ([], {}),
        (["--lr", "0.01"], {"lr": 0.01}),  # lr alone: lr_final and the schedule stay the preset's
        (["--preset", "book", "--lr", "0.01"], {"lr": 0.01}),
        (["--no-binarize", "--latent", "8"], {"binarize": False, "model.latent": 8}),
        (["--image-shape", "14", "14"], {"model.image_shape": (14, 14)}),
    ],
)
def test_flags_change_exactly_the_fields_they_name(argv: list[str], changed: dict[str, object]) -> None:
    import dataclasses

    from edgevae.train.__main__ import build_parser, config_from_args
    from edgevae.train.config import PRESETS

    args = build_parser().parse_args(argv)
    got, base = config_from_args(args), PRESETS[args.preset]

    def flat(c: TrainConfig) -> dict[str, object]:
        return {
            **{k: v for k, v in dataclasses.asdict(c).items() if k != "model"},
            **{f"model.{k}": v for k, v in dataclasses.asdict(c.model).items()},
        }

    diff = {k: v for k, v in flat(got).items() if flat(base)[k] != v}
    assert diff == changed


def test_a_run_in_out_is_not_replaced_without_asking(data_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, train_limit=200, test_limit=50, batch_size=50, iw_samples=0)
    run(config, data_dir, tmp_path)
    before = (tmp_path / checkpoint.ENCODER_FILE).read_bytes()
    with pytest.raises(checkpoint.CheckpointError, match="already holds a finished run .*--resume.*--overwrite"):
        run(config, data_dir, tmp_path)
    assert (tmp_path / checkpoint.ENCODER_FILE).read_bytes() == before
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    (tmp_path / "metrics.json").write_text(json.dumps({**metrics, "complete": False}))
    with pytest.raises(checkpoint.CheckpointError, match="already holds an unfinished run"):
        run(config, data_dir, tmp_path)
    result = cli("--data-dir", str(data_dir), "--out", str(tmp_path), "--epochs", "1", "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "--overwrite" in result.stderr
    run(dataclasses.replace(config, seed=1), data_dir, tmp_path, overwrite=True)
    assert (tmp_path / checkpoint.ENCODER_FILE).read_bytes() != before


def test_kl_warm_up_reaches_beta_at_the_stated_epoch(data_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(model=VAEConfig(beta=0.9), epochs=5, warmup_epochs=3, **SMALL)
    assert [loop.kl_weight(config, e) for e in range(5)] == pytest.approx([0.3, 0.6, 0.9, 0.9, 0.9])
    metrics = run(dataclasses.replace(config, epochs=4, train_limit=200, test_limit=50), data_dir, tmp_path)
    assert [h["kl_weight"] for h in metrics["history"]] == pytest.approx([0.3, 0.6, 0.9, 0.9])


def test_iwae_objective_trains_and_exports_within_budget(data_dir: Path, tmp_path: Path) -> None:
    from edgevae.export.convert import build_graphs
    from edgevae.export.validate import measure_parity, validate_parity

    config = TrainConfig(objective="iwae", k=5, epochs=3, **SMALL)
    metrics = run(config, data_dir, tmp_path)
    losses = [h["train_loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0] * 0.9, losses
    assert metrics["config"]["objective"] == "iwae" and metrics["config"]["k"] == 5
    _, blobs = build_graphs(tmp_path)  # the same contract: training options never change the graphs
    encoder, decoder = checkpoint.load_pair(tmp_path)
    summary = validate_parity(measure_parity(encoder, decoder, blobs, batch_sizes=(1, 64)))
    assert max(summary["max_abs_diff"].values()) <= summary["tolerance"]


@pytest.mark.parametrize("block", ["gated", "resnet"])
def test_gated_and_resnet_blocks_export_every_variant_within_budget(data_dir: Path, tmp_path: Path, block: str) -> None:
    """Deeper blocks go through the same contract: export_model checks fp32 parity with PyTorch and
    every variant (int8, fp16, b1, ort) against its own budget, raising on any miss."""
    from edgevae.export.convert import export_model
    from edgevae.runtime import VAE
    from edgevae.runtime.contract import VARIANTS

    model = VAEConfig(hidden=64, latent=8, layers=2, block=block)
    config = TrainConfig(model=model, epochs=2, warmup_epochs=2, **SMALL)
    run(config, data_dir, tmp_path / "ckpt")
    export_model(tmp_path / "ckpt", tmp_path / "onnx")
    vae = VAE(tmp_path / "onnx", device="cpu")
    assert vae.files.config["block"] == block and vae.files.config["layers"] == 2
    assert set(vae.files.variants) == set(VARIANTS)
    for name, variant in vae.files.variants.items():
        change = variant["log_likelihood_change"]["nats"]
        assert abs(change) <= variant["budget"]["log_likelihood_change_nats"], (name, change)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"objective": "elbo", "k": 5}, "k must be >= 1 for objective iwae and 1 for elbo"),
        ({"objective": "iwae", "k": 0}, "k must be >= 1"),
        ({"objective": "vimco"}, "objective must be one of"),
        ({"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
    ],
)
def test_bad_training_options_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)  # type: ignore[arg-type]
