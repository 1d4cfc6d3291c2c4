"""Input the schema's types let through, each run as a user runs it: through Snakemake with a
config, or on the command line. Each ends in one line naming what and where and a non-zero
exit (or, for infinity where a bound is optional, means "no limit"), with nothing half-written."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import yaml

from conftest import TINY, make_project, market_like, run_cli, snakemake, synthetic_prepared, write_mat
from reidquant.model import save_untrained


def one_line_error(result, text):
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert result.returncode != 0, result.stderr[-2000:]
    assert len(lines) == 1 and text in lines[0], result.stderr[-2000:]
    assert 'File "' not in result.stderr  # no Python frames


def planned(tmp_path, edit, *args):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    edit(config)
    return snakemake(make_project(tmp_path, config), "-n", *args)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(select={"min_cos": float("nan")}), "config field select.min_cos: NaN is not a number"),
    (lambda c: c["extract"].update(ms=[float("nan")]), "config field extract.ms.0: NaN is not a number"),
    (lambda c: c["extract"].update(ms=[float("inf")]), "config field extract.ms.0: inf is not a finite number"),
    (lambda c: c["variants"].update(int8={"type": "pt2e_int8", "float_modules": "auto", "accuracy_control": {
        "metric": "cos_mean", "max_drop": float("nan")}}),
     "config field variants.int8.accuracy_control.max_drop: NaN is not a number"),
    (lambda c: c.update(select={"min_cos": float("-inf")}), "config field select.min_cos: -inf is not a finite"),
    (lambda c: c["benchmark"].update(latency_batches=[100_000_000]),
     "config field benchmark.latency_batches.0: 100000000 is greater than the maximum of 4096"),
    (lambda c: c["extract"].update(batch_size=5000), "config field extract.batch_size: 5000 is greater than"),
])
def test_numbers_the_schema_lets_through_are_one_line(tmp_path, edit, message):
    one_line_error(planned(tmp_path, edit), message)


def test_nan_and_infinity_on_the_command_line_are_one_line(tmp_path):
    for value, message in (("nan", "field ms.0: NaN is not a number"), ("inf", "field ms.0: inf is not a finite")):
        result = run_cli("extract", "--artifact", tmp_path, "--spec", '{"type": "fp32"}', "--data", tmp_path,
                         "--out", tmp_path / "f.mat", "--timing", tmp_path / "t.json", "--ms", value)
        one_line_error(result, message)
    result = run_cli("extract", "--artifact", tmp_path, "--spec", '{"type": "fp32"}', "--data", tmp_path,
                     "--out", tmp_path / "f.mat", "--timing", tmp_path / "t.json", "--latency-batches", 1, 5000)
    one_line_error(result, "latency_batches.1: 5000 is greater than the maximum of 4096")
    assert not (tmp_path / "f.mat").exists() and not (tmp_path / "t.json").exists()


def test_an_infinite_budget_means_no_limit(finished, tmp_path):
    project, _ = finished
    copy = tmp_path / "project"
    subprocess.run(["cp", "-a", str(project), str(copy)], check=True)
    result = snakemake(copy, "results/summary.csv", "--config", "select={max_mAP_drop: .inf}")
    assert result.returncode == 0, result.stderr[-3000:]
    text = (copy / "results" / "summary.md").read_text()
    assert "Budget: worst cosine to fp32 `cos_min` >= 0.995 and no mAP limit; speeds timed in at least" in text
    assert (copy / "results" / "plots" / "latency_vs_accuracy.png").stat().st_size > 10_000
    assert (copy / "results" / "summary.csv").read_text().count("\n") == (project / "results" / "summary.csv") \
        .read_text().count("\n")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("opts")
    save_untrained(root / "dense", nclasses=4)
    save_untrained(root / "resnet", nclasses=4, arch="ft_net")
    return root


@pytest.mark.parametrize("line, message", [
    ("droprate: null", "opts.yaml: droprate must be a number from 0 to below 1"),
    ("droprate: abc", "opts.yaml: droprate must be a number from 0 to below 1 (the dropout before the classifier), "
                      "got 'abc'"),
    ("droprate: 1.5", "opts.yaml: droprate must be a number from 0 to below 1"),
    ("nclasses: true", "opts.yaml: nclasses must be a positive integer, got True"),
    ("stride: true", "opts.yaml: stride must be 1 or 2, got True"),
])
def test_bad_opts_values_are_one_line_naming_the_key(checkpoints, tmp_path, line, message):
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints / "dense", folder)
    key = line.split(":")[0]
    opts = [entry for entry in (folder / "opts.yaml").read_text().splitlines() if not entry.startswith(f"{key}:")]
    (folder / "opts.yaml").write_text("\n".join([*opts, line]) + "\n")
    result = run_cli("quantize", "--name", "fp32", "--spec", '{"type": "fp32"}', "--weights", folder, "--data",
                     tmp_path, "--out", tmp_path / "m")
    one_line_error(result, message)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("weights, opts_of, held, asked, flag", [
    ("dense", "resnet", "ft_net_dense", "ft_net", "true"),
    ("resnet", "dense", "ft_net", "ft_net_dense", "false"),
])
def test_opts_of_another_network_than_the_weights_point_at_use_dense(checkpoints, tmp_path, weights, opts_of, held,
                                                                     asked, flag):
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoints / weights, folder)
    shutil.copy2(checkpoints / opts_of / "opts.yaml", folder / "opts.yaml")
    result = run_cli("quantize", "--name", "fp32", "--spec", '{"type": "fp32"}', "--weights", folder, "--data",
                     tmp_path, "--out", tmp_path / "m")
    one_line_error(result, f"net_last.pth: holds {held} weights, but {folder}/opts.yaml asks for {asked}; set "
                           f"use_dense: {flag} in {folder}/opts.yaml")


@pytest.mark.parametrize("scale", [1e20, 1e-7])
def test_features_of_any_scale_are_scored_as_normalised(rng, tmp_path, scale):
    data = market_like(rng)
    scaled = (data[0] * scale, *data[1:3], data[3] * scale, *data[4:])
    write_mat(tmp_path / "plain.mat", data)
    write_mat(tmp_path / "scaled.mat", [np.asarray(part, dtype=np.float32) if i in (0, 3) else part
                                         for i, part in enumerate(scaled)])
    plain = run_cli("evaluate", tmp_path / "plain.mat", "--json", tmp_path / "plain.json")
    result = run_cli("evaluate", tmp_path / "scaled.mat", "--reference", tmp_path / "plain.mat", "--json",
                     tmp_path / "scaled.json")
    assert plain.returncode == 0 and result.returncode == 0, result.stderr
    ours, reference = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("scaled", "plain"))
    assert ours["rank1"] == reference["rank1"] and ours["mAP"] == pytest.approx(reference["mAP"])
    assert ours["cos_min"] == pytest.approx(1.0, abs=1e-5)


def test_evaluate_into_a_folder_is_one_line(rng, tmp_path):
    write_mat(tmp_path / "f.mat", market_like(rng))
    (tmp_path / "out").mkdir()
    one_line_error(run_cli("evaluate", tmp_path / "f.mat", "--json", tmp_path / "out"), "out: is a folder")


def test_untrained_weights_follow_train_arch(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["train"] = {"arch": "ft_net"}
    project = make_project(tmp_path, config)
    result = snakemake(project, "results/untrained/synthetic/opts.yaml")
    assert result.returncode == 0, result.stderr[-2000:]
    assert yaml.safe_load((project / "results/untrained/synthetic/opts.yaml").read_text())["use_dense"] is False


def test_train_settings_that_nothing_uses_are_said(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["train"] = {"arch": "ft_net", "epochs": 3}
    result = snakemake(make_project(tmp_path, config), "-n")
    assert result.returncode == 0
    assert ("config field train: epochs not used: model.weights is untrained, so nothing is trained"
            in result.stdout + result.stderr)


def test_a_misspelt_dataset_is_refused(tmp_path):
    result = run_cli("train", "--data", tmp_path, "--out", tmp_path / "w", "--dataset", "Market1501")
    assert result.returncode == 2 and "invalid choice: 'Market1501'" in result.stderr
    assert not (tmp_path / "w").exists()


def test_a_timing_batch_larger_than_the_gallery_says_so(tmp_path):
    data = synthetic_prepared(tmp_path, train_ids=2, test_ids=2, images_per_camera=1, cameras_per_id=2,
                              distractors=0, junk=0, multi_query_per_query=0)
    save_untrained(tmp_path / "weights", nclasses=2)
    sizes = ["--height", 64, "--width", 32]
    assert run_cli("quantize", "--name", "fp32", "--spec", '{"type": "fp32"}', "--weights", tmp_path / "weights",
                   "--data", data, "--out", tmp_path / "fp32", *sizes).returncode == 0
    result = run_cli("extract", "--artifact", tmp_path / "fp32", "--spec", '{"type": "fp32"}', "--data", data,
                     "--out", tmp_path / "f.mat", "--timing", tmp_path / "t.json", "--batch-size", 2,
                     "--latency-batches", 1, 10, "--latency-rounds", 1, "--workers", 0, *sizes)
    assert result.returncode == 0, result.stderr
    assert "note: the gallery has 4 images; the timing batch of 10 is filled with 6 copies of the last one" \
        in result.stderr
    assert json.loads((tmp_path / "t.json").read_text())["timing_copies"] == 6
