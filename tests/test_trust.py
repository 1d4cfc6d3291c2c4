"""What the workflow trusts, as a user meets it through Snakemake: a row's numbers come from the
artifact its build recorded, its labels from its spec, its build and its CPU; a damaged record
is one line naming it; what decides a job's record is a parameter of that job."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import dry_run_jobs, snakemake
from reidquant.devices import cpu_has_bf16


@pytest.fixture(scope="module")
def project(finished, tmp_path_factory):
    copy = tmp_path_factory.mktemp("trust") / "project"
    subprocess.run(["cp", "-a", str(finished[0]), str(copy)], check=True)
    return copy


def one_error_line(result) -> str:
    """The job's one line (which the profile prints again from the failed job's log); no traceback."""
    assert result.returncode == 1, result.stderr[-3000:]
    errors = {line for line in result.stderr.splitlines() if line.startswith("reidquant: error: ")}
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors.pop()


TIMING = "results/int8_seed/cpu/timing.json"
REBUILD = "rebuild it (python -m reidquant quantize; in the workflow: snakemake --cores 4 results/summary.csv " \
          "--forcerun results/ov_int8/quantize.json)"


# The label checks one by one: tests/test_summary.py; here, as the summary job meets them.
@pytest.mark.parametrize("path, edit, message", [
    # half of the int8 weights: not the file its build wrote
    ("results/ov_int8/model/model.bin", lambda text: text[:len(text) // 2],
     "results/ov_int8/model/model.bin: not the file its build recorded in results/ov_int8/quantize.json (sha256 "),
    (TIMING, lambda text: text.replace(b'"precision": "int8 eager per-tensor"', b'"precision": "fp16 (tampered)"'),
     f"{TIMING}: precision 'fp16 (tampered)' is not what its spec, its build (results/int8_seed/quantize.json) and "
     f"its recorded CPU give ('int8 eager per-tensor'); it was edited or comes from another run"),
    (TIMING, lambda text: text[:len(text) // 2], f"{TIMING}: not a readable JSON record ("),
], ids=["swapped-weights", "edited-label", "truncated-record"])
def test_a_row_not_made_as_its_records_say_is_refused_by_the_summary(project, path, edit, message):
    target = project / path
    original, stat = target.read_bytes(), target.stat()
    target.write_bytes(edit(original))
    try:
        result = snakemake(project, "results/summary.csv", "--forcerun", "summary")
    finally:
        target.write_bytes(original)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert message in one_error_line(result)
    assert not (project / "results" / "summary.csv").exists() and not (project / "results" / "summary.md").exists()


def test_an_artifact_swapped_after_its_extraction_is_refused_before_it_is_timed(project):
    target = project / "results/ov_int8/model/model.bin"
    original, stat = target.read_bytes(), target.stat()
    target.write_bytes(original[::-1])
    try:
        result = snakemake(project, "results/ov_int8/cpu/timing.json", "--forcerun", "extract_features")
    finally:
        target.write_bytes(original)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    line = one_error_line(result)
    assert line.endswith(REBUILD) and "model.bin: not the file its build recorded" in line
    assert not (project / "results/ov_int8/cpu/timing.json").exists()
    assert not (project / "results/ov_int8/cpu/features.mat").exists()


def test_hidden_hardware_is_a_parameter_of_the_jobs_it_decides(project):
    """A not-run record written while bfloat16 was hidden is made again once it is not."""
    hidden = {**os.environ, "REIDQUANT_HIDE_HARDWARE": "bf16"}
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "results/bf16/cpu/timing.json",
                             "--forcerun", "extract_features"], cwd=project, env=hidden, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not_run" in (project / "results/bf16/cpu/timing.json").read_text()
    assert dry_run_jobs(project, "results/bf16/cpu/timing.json") == {"extract_features": 1}
    if cpu_has_bf16():  # where hiding it made a difference: the rerun measures it
        result = snakemake(project, "results/bf16/cpu/timing.json")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "not_run" not in (project / "results/bf16/cpu/timing.json").read_text()


def test_an_interrupted_build_is_rebuilt_with_what_it_feeds(finished, tmp_path):
    """Ctrl-C during a forced build: Snakemake removes the half-written artifact; the build had
    already removed what was made from the old one, so the next run rebuilds all of it."""
    copy = tmp_path / "project"
    subprocess.run(["cp", "-a", str(finished[0]), str(copy)], check=True)
    timing = copy / "results/ov_int8/cpu/timing.json"
    run = subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "results/summary.csv",
                            "--forcerun", "results/ov_int8/quantize.json"], cwd=copy,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while timing.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run.poll() is None, "the build ended before it could be interrupted"
    os.killpg(run.pid, signal.SIGINT)  # as a Ctrl-C in the terminal reaches the whole group
    run.wait(timeout=120)
    assert not (copy / "results/ov_int8/quantize.json").exists()
    assert not (copy / "results/summary.csv").exists()
    jobs = dry_run_jobs(copy)
    # OpenVINO runs on the CPU only: one extraction.
    assert jobs == {"quantize": 1, "extract_features": 1, "evaluate": 1, "summary": 1, "all": 1}
