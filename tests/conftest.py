import csv
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.io
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# The suite's two workers share the cores: OpenMP threads that spin while they wait take the
# other worker's turns (a training test: 111 s beside a busy process, 30 s with this).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Builds record each compiled package they make in a registry of the machine's
# (reidquant.safeload.built_here_path): the suite's go into one of its own, not the user's.
os.environ.setdefault("REIDQUANT_BUILT_HERE", str(Path(tempfile.mkdtemp(prefix="reidquant-suite-")) / "built_here"))


def market_like(rng, n_ids=30, n_query=60, n_gallery=400, dim=32, noise=0.6):
    """Random Market-shaped features: identities with a centre, cameras 1-6, distractors and junk."""
    centres = rng.normal(size=(n_ids + 1, dim))
    q_label = rng.integers(1, n_ids + 1, n_query)
    q_cam = rng.integers(1, 7, n_query)
    g_label = np.concatenate([rng.integers(1, n_ids + 1, n_gallery - 40), np.zeros(25, int), -np.ones(15, int)])
    g_cam = rng.integers(1, 7, n_gallery)
    # one query whose only matches share its camera, one whose identity is absent
    q_label[0], q_cam[0] = n_ids + 5, 1
    g_label[:3], g_cam[:3] = n_ids + 5, 1
    q_label[1] = n_ids + 9

    def feats(labels):
        base = np.where(labels[:, None] > 0, centres[np.clip(labels, 0, n_ids)], 0.0)
        f = base + noise * rng.normal(size=(len(labels), dim))
        return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)

    return feats(q_label), q_label, q_cam, feats(g_label), g_label, g_cam


def synthetic_prepared(root, **sizes):
    """A generated Market-format dataset of ``sizes`` in root/raw, prepared into root/pytorch (returned)."""
    from reidquant.market import prepare
    from reidquant.synth import SynthSizes, generate

    generate(root / "raw", SynthSizes.from_settings(sizes), progress=False)
    prepare(root / "raw", root / "pytorch")
    return root / "pytorch"


def write_mat(path, data, **extra):
    qf, ql, qc, gf, gl, gc = data
    mat = {"query_f": qf, "query_label": ql, "query_cam": qc, "gallery_f": gf, "gallery_label": gl,
           "gallery_cam": gc, **extra}
    scipy.io.savemat(path, mat)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "reidquant", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env)


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


def snakemake(project, *args, cores=2):
    """The real snakemake in ``project``; ``cores=None`` runs it without --cores, as on a cluster."""
    cores_args = ["--cores", str(cores)] if cores else []
    return subprocess.run([sys.executable, "-m", "snakemake", *cores_args, *args], cwd=project,
                          capture_output=True, text=True)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """The tiny configuration's default target, run once for the whole suite: the first
    pytest-xdist worker to ask runs it, the others wait for it and read what it left. Tests
    only read it or copy it (``cp -a``, ``copied``), never run in it."""
    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker of this run
    with open(shared / "finished.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        project, record = shared / "finished" / "project", shared / "finished.json"
        if not record.exists():
            (shared / "finished").mkdir(exist_ok=True)
            make_project(shared / "finished")
            result = snakemake(project, "results/summary.csv")
            record.write_text(json.dumps({"returncode": result.returncode, "stdout": result.stdout,
                                          "stderr": result.stderr}))
    result = subprocess.CompletedProcess(["snakemake"], **json.loads(record.read_text()))
    assert result.returncode == 0, result.stderr[-3000:]
    return project, result


@pytest.fixture(scope="session")
def finished(finished_run):
    """The finished tiny run, to read (a file whose tests run snakemake in it or edit it
    overrides this with ``copied``)."""
    return finished_run


def copied(run, tmp_path_factory):
    """A finished run (project, result) copied into a folder of its own."""
    project, result = run
    copy = tmp_path_factory.mktemp("finished") / "project"
    subprocess.run(["cp", "-a", str(project), str(copy)], check=True)
    return copy, result


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups
def pytest_collection_modifyitems(items):
    """One pytest-xdist group per test file, so that a file's module fixtures are built once."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def record_build(folder, **fields):
    """``folder``'s build record beside it (``<folder>.quantize.json``), with the sha256 of each
    file it holds now: what a crafted or moved artifact brings along, since the record is plain
    JSON too."""
    import json

    from reidquant.variants import folder_sha256

    path = Path(f"{folder}.quantize.json")
    record = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**record, **fields, "files_sha256": folder_sha256(folder)}))
    return path


def read_summary(project):
    with open(project / "results" / "summary.csv") as handle:
        return list(csv.DictReader(handle))


def dry_run_jobs(project, *args):
    """Rule -> number of jobs a dry run would execute."""
    result = snakemake(project, "-n", *args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:")[1].split("\ntotal")[0]
    jobs = {}
    for line in table.splitlines()[3:]:
        name, count = line.split()
        jobs[name] = int(count)
    return jobs
