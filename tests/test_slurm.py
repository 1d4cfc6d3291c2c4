"""The tiny config on a real one-node SLURM cluster, through profiles/slurm, as the README says.

`tests/slurm/start.sh` installs and starts the cluster (Debian's slurm-wlm and munge; root).
Without a cluster the test is skipped, unless REIDQUANT_SLURM=required (as in .ci/run).
"""

import json
import os
import shutil
import subprocess

import pytest

from conftest import TINY, make_project, read_summary, snakemake

ACCURACY = ["rank1", "rank5", "rank10", "mAP", "mAP_noninterp", "mINP", "cos_mean", "cos_min", "top1_agreement"]


def cluster_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return states.returncode == 0 and bool({"idle", "mixed", "allocated"} & set(states.stdout.split()))


@pytest.fixture(scope="module")
def cluster():
    if not cluster_is_up():
        message = "no SLURM cluster here (start one with: sudo bash tests/slurm/start.sh)"
        if os.environ.get("REIDQUANT_SLURM") == "required":
            pytest.fail(message)
        pytest.skip(message)


def on_slurm(project, *targets):
    """The README's command without --sdm conda (no conda here; tests/test_readme.py dry-runs it
    as written), with this cluster's partition and a size that fits its one node: the timed jobs
    (extraction, search) take both its CPUs, so they run alone and get every core; the others
    one CPU each, two side by side, as the profile's builds share a node. No --cores."""
    result = snakemake(
        project, "--workflow-profile", "profiles/slurm", *targets,
        "--default-resources", "slurm_partition=test", "mem_mb=2000", "cpus_per_task=1", "runtime=30",
        # This cluster has no GPU partition: the cuda rows' jobs go to the CPU node, which decides.
        "--set-resources", "extract_features:slurm_partition=test", "extract_features:gpu=0",
        "extract_features:cpus_per_task=2", "search:cpus_per_task=2",
        "distractor_shard:slurm_partition=test", "distractor_shard:gpu=0",
        "--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "1",
        cores=None)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


# Two of the tiny config's rows (every job goes through the cluster's queue and its status
# checks: the fewer, the shorter), on both devices, and the gallery side: the int8 row's
# distractors embedded in 2 shards, each a job of the cluster's.
CONFIG = {**TINY, "variants": {name: TINY["variants"][name] for name in ("fp32", "int8_seed")},
          "search": {"variants": ["int8_seed"], "shards": 2, "k": 50, "distractors": {"count": 40},
                     "indexes": ["Flat", "SQ8"]}}


def test_tiny_config_on_slurm_matches_a_local_run(cluster, finished, tmp_path):
    local, _ = finished
    project = make_project(tmp_path, CONFIG)
    output = on_slurm(project, "results/summary.csv", "results/search/summary.csv")
    assert "SLURM jobid" in output  # the jobs really went through sbatch
    on_cluster = {(r["variant"], r["device"]): r for r in read_summary(project)}
    here = {(r["variant"], r["device"]): r for r in read_summary(local)}
    assert on_cluster.keys() == {key for key in here if key[0] in CONFIG["variants"]}
    # The jobs that this node could not run were planned all the same and said so from the node.
    text = (project / "results" / "summary.md").read_text()
    node = subprocess.run(["sinfo", "-h", "-o", "%n"], capture_output=True, text=True).stdout.split()[0]
    assert f"- fp32 / cuda: no CUDA device (decided on node {node}, " in text
    for key, row in on_cluster.items():
        assert row["threads"] == "2", key  # the cores the job was given
        for column in ACCURACY:
            assert float(row[column]) == pytest.approx(float(here[key][column]), abs=1e-6), (key, column)
    shards = {line for line in output.splitlines() if "distractor_shard" in line and "SLURM jobid" in line}
    assert len(shards) == 2, output[-3000:]
    record = json.loads((project / "results/int8_seed/cpu/distractors.json").read_text())
    assert record["per_shard"] == [20, 20]
    assert "| SQ8 |" in (project / "results/search/summary.md").read_text()
