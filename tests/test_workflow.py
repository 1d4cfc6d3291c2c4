"""The real ``snakemake`` on a tiny configuration, in a copy of the repository."""

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from reidquant.summary import COLUMNS

TINY = yaml.safe_load((ROOT / "tests" / "tiny_config.yaml").read_text())


def make_project(tmp_path, config=TINY):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Snakefile", "workflow", "reidquant", "envs", "profiles"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, project / name)
    (project / "config").mkdir()
    (project / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return project


def snakemake(project, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", *args], cwd=project,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("wf"))
    result = snakemake(project, "results/summary.csv", "results/plots/accuracy_vs_speed.png")
    assert result.returncode == 0, result.stderr[-3000:]
    return project, result


def read_summary(project):
    with open(project / "results" / "summary.csv") as handle:
        return list(csv.DictReader(handle))


def test_summary_has_contract_columns_and_rows(finished):
    project, result = finished
    header = (project / "results" / "summary.csv").read_text().splitlines()[0].split(",")
    assert header[: len(COLUMNS)] == COLUMNS
    rows = {(r["variant"], r["device"]): r for r in read_summary(project)}
    assert ("fp32", "cpu") in rows and ("int8_seed", "cpu") in rows
    assert not any(device == "cuda" for _, device in rows) or shutil.which("nvidia-smi")
    fp32 = rows[("fp32", "cpu")]
    assert fp32["dataset"] == "synthetic" and fp32["weights"] == "untrained"
    assert float(fp32["speedup"]) == 1.0 and float(fp32["size_ratio"]) == 1.0
    int8 = rows[("int8_seed", "cpu")]
    assert float(int8["size_ratio"]) < 0.35
    assert 0 <= float(int8["mAP"]) <= 1 and 0 < float(int8["cos_mean"]) <= 1.0001
    assert (project / "results" / "fp32" / "cpu" / "features.mat").exists()
    assert (project / "results" / "summary.md").read_text().count("| fp32 | cpu |") == 1
    assert "EMBEDDED SYNTHETIC" not in result.stderr  # source: synthetic was asked for explicitly
    for plot in ("accuracy_vs_speed", "size", "fidelity"):
        assert (project / "results" / "plots" / f"{plot}.png").stat().st_size > 1000


def test_nothing_to_do_after_a_complete_run(finished):
    project, _ = finished
    result = snakemake(project, "-n", "results/summary.csv")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["extract"].update(batch_size="eight"), "batch_size"),
    (lambda c: c.update(colour="red"), "colour"),
    (lambda c: c.update(devices=["tpu"]), "tpu"),
    (lambda c: c["dataset"]["synthetic"].update(cameras_per_id=9), "cameras_per_id"),
    (lambda c: c["variants"].update(int4={"type": "int4"}), "int4"),
    (lambda c: c["variants"]["int8_seed"].update(observer="histogram"), "observer"),
])
def test_bad_config_names_the_field(tmp_path, edit, message):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    edit(config)
    result = snakemake(make_project(tmp_path, config), "-n")
    assert result.returncode != 0
    assert f"config field" in result.stdout + result.stderr and message in result.stdout + result.stderr


def test_market1501_requested_but_absent(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["dataset"]["source"] = "market1501"
    result = snakemake(make_project(tmp_path, config), "-n")
    assert result.returncode != 0
    assert "Market/Market-1501-v15.09.15.zip" in result.stdout + result.stderr


def test_auto_source_says_it_uses_the_synthetic_set(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["dataset"]["source"] = "auto"
    result = snakemake(make_project(tmp_path, config), "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "EMBEDDED SYNTHETIC" in result.stderr + result.stdout
