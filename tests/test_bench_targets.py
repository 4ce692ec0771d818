"""bench/run.py's verdicts: each target is a ratio taken within one round, judged by the median over
rounds, with the spread shown (no timings here: these feed it made-up per-round medians)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest

from conftest import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("run")


def test_ratios_pair_rounds_and_skip_a_round_either_side_missed(bench: ModuleType) -> None:
    by = {"torch": {"decoder/1": [100.0, None, 90.0, 80.0]}, "runtime-fp32": {"decoder/1": [40.0, 50.0, None, 20.0]}}
    assert bench.per_round_ratios(by, ("torch", "decoder/1"), ("runtime-fp32", "decoder/1")) == [2.5, 4.0]
    assert bench.per_round_ratios(by, ("torch", "decoder/1"), ("bare", "decoder/1")) == []


def test_gemm_fraction_uses_each_rounds_faster_gemm(bench: ModuleType) -> None:
    by = {
        "gemm": {"numpy-decoder-gemms": [4.0, 3.0, None], "onnxruntime-decoder-gemms": [3.0, 6.0, 2.0]},
        "runtime-fp32": {"decoder/1024": [6.0, 4.0, 4.0]},
    }
    assert bench.gemm_fractions(by) == [0.5, 0.75, 0.5]


@pytest.mark.parametrize(
    ("values", "bound", "op", "met", "inside"),
    [
        ([2.0, 2.5, 3.0], 2.5, ">=", True, True),  # the median meets it; the noise could flip it
        ([2.6, 2.7, 2.8], 2.5, ">=", True, False),
        ([1.7, 1.8, 1.9], 2.5, ">=", False, False),
        ([0.3, 0.39, 0.4], 0.25, "<", False, False),
        ([0.24, 0.25, 0.26], 0.25, "<", False, True),  # strictly under: 0.25 itself fails
        ([1.1, 1.3], 1.2, "<=", False, True),  # two rounds: the median is their mean
    ],
)
def test_verdict_reads_the_median_and_flags_a_bound_inside_the_spread(
    bench: ModuleType, values: list[float], bound: float, op: str, met: bool, inside: bool
) -> None:
    got = bench.target("t", "1", values, bound, op, "x")
    assert (got["met"], got["bound_within_spread"], got["rounds"]) == (met, inside, len(values))
    assert got["p10"] <= got["value"] <= got["p90"]
    assert f"{len(values)} rounds" in got["measured"]


def test_a_target_no_round_measured_is_not_met(bench: ModuleType) -> None:
    got = bench.target("t", "1", [], 2.5, ">=", "x")
    assert got["met"] is False and got["measured"] == "not measured"


def test_targets_from_a_report(bench: ModuleType) -> None:
    rounds = {
        "torch": {"decoder/1": [100.0, 100.0, 100.0], "sample/1": [90.0, 90.0, 90.0], "decoder/1024": [5e3] * 3},
        "runtime-fp32": {"decoder/1": [50.0, 40.0, 30.0], "sample/1": [45.0] * 3, "decoder/1024": [5e3] * 3},
        "runtime-int8": {"decoder/1024": [2.5e3] * 3},
        "bare": {"decoder/1": [40.0, 40.0, 30.0]},
        "gemm": {"numpy-decoder-gemms": [4e3] * 3, "onnxruntime-decoder-gemms": [4.6e3] * 3},
    }
    cold = {"process_wall_s": {"values": [0.2, 0.21, 0.3]}, "peak_rss_mib": {"values": [66.0, 67.0, 68.0]}}
    report: dict[str, Any] = {"timing": {"rounds": {"1": rounds}}, "cold_start": {"runtime": cold}}
    got = {t["target"]: t for t in bench.targets(report)}
    assert len(got) == 9
    heavy = got["log_likelihood k=1000 >= 75% of the GEMM rate"]  # not timed in this report
    assert heavy["measured"] == "not measured" and heavy["met"] is False
    assert got["decode(z) batch 1 >= 2.5x faster than torch eager"]["value"] == pytest.approx(2.5)
    assert got["decode(z) batch 1 >= 2.5x faster than torch eager"]["met"] is True
    assert got["decode(z) batch 1 <= 1.2x a bare session.run"]["value"] == pytest.approx(1.0)
    assert got["sample(1, seed) >= 1.5x faster than torch eager"]["value"] == pytest.approx(2.0)
    assert got["int8 decoder batch 1024 >= 2.5x faster than torch fp32"]["met"] is False
    fraction = got["fp32 decoder batch 1024 >= 90% of the best same-shape GEMM rate"]
    assert fraction["value"] == pytest.approx(0.8) and fraction["measured"].startswith("80% ")
    assert got["cold start < 0.25 s (process wall)"]["met"] is True
    assert got["cold start peak RSS < 80 MiB"]["measured"].startswith("67 MiB")


def test_int8_gemm_ratios_pair_rounds(bench: ModuleType) -> None:
    by = {
        "gemm": {"onnxruntime-int8-decoder-gemms": [1.0, 2.0, None]},
        "runtime-int8": {"decoder/1024": [2.0, 2.5, 3.0]},
        "torch": {"decoder/1024": [5.0, 5.0, 5.0]},
    }
    got = bench.int8_gemm_ratios(by)
    assert got == {"int8_decoder_gemm_share": [0.5, 0.8], "torch_over_int8_gemms": [5.0, 2.5]}
    assert bench.median_or_none(got["torch_over_int8_gemms"]) == pytest.approx(3.75)
    assert bench.median_or_none([]) is None


def test_heavy_shares_compare_decoder_flops_with_the_same_rounds_gemm_rate(bench: ModuleType) -> None:
    # the GEMM cell does DECODER_FLOP in g seconds; log_likelihood/20 does 20 * 1000 decoder rows
    gemm = bench.DECODER_FLOP / 100e9  # a 100 GFLOP/s round
    flop = 20 * 1000 * bench.DECODER_FLOP_PER_ROW
    by = {
        "gemm": {"numpy-decoder-gemms": [gemm, gemm, None], "onnxruntime-decoder-gemms": [2 * gemm, None, None]},
        "runtime-fp32": {"log_likelihood/20": [flop / 50e9, flop / 75e9, 1.0]},
    }
    assert bench.heavy_shares(by, "log_likelihood/20") == pytest.approx([0.5, 0.75])  # round 3: no GEMM ran
    assert bench.heavy_shares(by, "score/256") == []
    assert bench.DECODER_FLOP_PER_ROW == 2 * (20 * 200 + 200 * 784)  # 160,800 multiply-adds per latent
