"""The comparison table: side-by-side speedups, bootstrap intervals, paired deltas, rows not run."""

import numpy as np
import pytest
import torch

import reidquant.features as features
from reidquant.features import Runner, model_throughput
from reidquant.jsonio import write_json
from reidquant.stats import bootstrap_interval
from reidquant.summary import COLUMNS, EXTRA, markdown, rows


def test_bootstrap_interval_is_seeded_and_covers_the_mean(rng):
    values = rng.random(500)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high and high - low < 0.1
    assert bootstrap_interval(values) == (low, high)
    # a paired difference of correlated per-query values is far narrower than the values' own
    other = values + rng.normal(0, 0.01, 500)
    paired = bootstrap_interval(other - values)
    assert paired[1] - paired[0] < (high - low) / 10
    with pytest.raises(ValueError):
        bootstrap_interval([])


def test_reference_is_timed_in_alternating_rounds(monkeypatch):
    clock, calls = [0.0], []

    def runner_taking(seconds, name):
        def forward(x):
            calls.append(name)
            clock[0] += seconds
            return x.flatten(1)
        return Runner(forward)

    monkeypatch.setattr(features.time, "perf_counter", lambda: clock[0])
    timing = model_throughput(runner_taking(1.0, "variant"), torch.zeros(4, 3, 2, 2), warmup=2, repeats=4,
                              reference=runner_taking(3.0, "fp32"))
    assert calls[-8:] == ["variant", "fp32", "fp32", "variant", "variant", "fp32", "fp32", "variant"]
    assert timing["speedup"] == timing["speedup_lo"] == timing["speedup_hi"] == 3.0
    assert timing["round_speedups"] == [3.0] * 4 and timing["model_img_per_s"] == 4.0
    assert timing["reference_img_per_s"] == pytest.approx(4 / 3)
    alone = model_throughput(runner_taking(1.0, "variant"), torch.zeros(4, 3, 2, 2), warmup=2, repeats=3)
    assert "speedup" not in alone


def write_job(root, variant, ap, rank1, speedup=None, num_query=None, weights="trained"):
    folder = root / variant
    write_json(folder / "quantize.json", {"type": "fp32" if variant == "fp32" else "pt2e_int8",
                                          "size_bytes": 1000 if variant == "fp32" else 250, "quantize_s": 1.0,
                                          "weights": weights, "dataset": "synthetic", "arch": "ft_net"})
    timing = {"precision": variant, "runtime": "torch", "model_img_per_s": 10.0, "extract_img_per_s": 5.0,
              "device_name": "cpu", "threads": 2, "torch": "x", "dataset": "synthetic"}
    if speedup:
        timing.update(speedup=speedup, speedup_lo=speedup - 0.5, speedup_hi=speedup + 0.5)
    write_json(folder / "timing.json", timing)
    metrics = {"rank1": float(np.mean(rank1)), "rank5": 1.0, "rank10": 1.0, "mAP": float(np.mean(ap)),
               "mAP_noninterp": 0.5, "mINP": 0.5, "num_query": num_query or len(ap), "num_valid_query": len(ap),
               "cos_mean": 0.99, "cos_min": 0.9, "top1_agreement": 0.9, "top10_overlap": 0.9,
               "per_query": {"ap": list(map(float, ap)), "rank1": list(map(int, rank1))}}
    write_json(folder / "metrics.json", metrics)
    return folder


def test_rows_carry_intervals_and_paired_deltas(tmp_path, rng):
    ap = rng.random(300)
    rank1 = (ap > 0.3).astype(int)
    worse = np.clip(ap - 0.05 + rng.normal(0, 0.005, 300), 0, 1)  # a small, consistent loss
    folders = [write_job(tmp_path, "fp32", ap, rank1, num_query=310),
               write_job(tmp_path, "int8", worse, rank1, speedup=6.0, num_query=310)]
    jobs = [("fp32", "cpu"), ("int8", "cpu")]
    table = rows(jobs, *([f / name for f in folders] for name in ("quantize.json", "timing.json", "metrics.json")),
                 "synthetic", "trained")
    assert list(table.columns) == COLUMNS + EXTRA
    fp32, int8 = table.iloc[0], table.iloc[1]
    assert (fp32["speedup"], fp32["speedup_lo"], fp32["size_ratio"]) == (1.0, 1.0, 1.0)
    assert (int8["speedup"], int8["speedup_lo"], int8["speedup_hi"], int8["size_ratio"]) == (6.0, 5.5, 6.5, 0.25)
    assert int8["mAP_lo"] < int8["mAP"] < int8["mAP_hi"]
    assert int8["mAP_delta"] == pytest.approx((worse.mean() - ap.mean()) * 100)
    assert int8["mAP_delta_lo"] < int8["mAP_delta"] < int8["mAP_delta_hi"] < 0  # paired: clearly a loss
    assert (int8["mAP_hi"] - int8["mAP_lo"]) * 100 > 5 * (int8["mAP_delta_hi"] - int8["mAP_delta_lo"])
    assert int8["rank1_delta"] == int8["rank1_delta_lo"] == int8["rank1_delta_hi"] == 0.0
    text = markdown(table, [("bf16", "cpu", "this CPU has no AVX512-BF16 or AMX"),
                            ("*", "cuda", "no CUDA device on this machine")])
    assert "| int8 | cpu |" in text and "6.00 [5.50, 6.50]" in text
    int8_line = next(line for line in text.splitlines() if line.startswith("| int8 |"))
    assert int8_line.count(" *") == 1  # the mAP loss is marked, the zero rank-1 change is not
    assert "- bf16 / cpu: this CPU has no AVX512-BF16 or AMX" in text and "- * / cuda: no CUDA device" in text
    assert "10 of 310 queries have no true match" in text
    assert text.startswith("dataset: synthetic, weights: trained, arch: ft_net, ") and set(table["arch"]) == {"ft_net"}


def test_rows_of_different_images_are_refused(tmp_path, rng):
    from reidquant.errors import ReidQuantError

    folders = [write_job(tmp_path, "fp32", rng.random(30), np.ones(30)),
               write_job(tmp_path, "int8", rng.random(29), np.ones(29), speedup=2.0)]
    with pytest.raises(ReidQuantError, match="29 valid queries but .* has 30"):
        rows([("fp32", "cpu"), ("int8", "cpu")],
             *([f / name for f in folders] for name in ("quantize.json", "timing.json", "metrics.json")),
             "synthetic", "trained")


def test_a_row_made_from_other_weights_is_refused(tmp_path, rng):
    from reidquant.errors import ReidQuantError

    folders = [write_job(tmp_path, "fp32", rng.random(30), np.ones(30)),
               write_job(tmp_path, "int8", rng.random(30), np.ones(30), speedup=2.0, weights="model/old")]
    paths = [[f / name for f in folders] for name in ("quantize.json", "timing.json", "metrics.json")]
    with pytest.raises(ReidQuantError, match=r"int8/quantize.json: made from weights 'model/old', but this "
                                             r"run's weights is 'trained'"):
        rows([("fp32", "cpu"), ("int8", "cpu")], *paths, "synthetic", "trained")
    with pytest.raises(ReidQuantError, match=r"fp32/quantize.json: made from dataset 'synthetic', but this "
                                             r"run's dataset is 'market1501'"):
        rows([("fp32", "cpu"), ("int8", "cpu")], *paths, "market1501", "trained")
